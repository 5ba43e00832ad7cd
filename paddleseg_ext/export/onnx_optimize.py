"""Offline optimisation of the ONNX graph paddle2onnx writes, in standard ONNX operators.

paddle2onnx (``optimize_tool="none"``) writes every weight as a ``Constant`` node, one
``BatchNormalization`` per norm layer, shape arithmetic (``Shape`` -> ``Slice`` -> ``Concat``)
in front of each ``Resize``, ``Identity`` nodes, and constants that no node reads (onnxruntime
warns about each of those when it opens the file). :func:`optimize_onnx` rewrites the file:

1. onnxruntime's basic-level offline optimisation, which keeps to standard ONNX operators:
   constants folded (with a static input size the shape arithmetic becomes constant
   ``Resize`` sizes), ``BatchNormalization`` and constant ``Mul``/``Add`` folded into the
   ``Conv`` before them, ``Identity`` and other no-op nodes removed;
2. the label head (:func:`rewrite_label_head`): ``Resize`` (bilinear) of the logits to the
   input size followed by ``ArgMax`` over the classes becomes a bilinear interpolation by
   matrix products and an ``ArgMax`` over the contiguous class axis, in bands of output rows.
   onnxruntime runs ``Resize`` and a channel-strided ``ArgMax`` as scalar loops, and these
   two nodes took most of the LPCVC student's time; ``MatMul`` runs on MLAS's vectorised
   GEMM (docs/performance.md);
3. small resizes (:func:`rewrite_small_resizes`): the other bilinear ``Resize`` nodes of a
   static size that cost few multiply-adds per output value as two interpolation MatMuls
   (TopFormer's and PP-MobileSeg's upsampled global branches);
4. clean-up: initializers that no node reads and opset imports of domains that no node
   uses (onnxruntime's writer lists every domain it knows), so that the file stays a plain
   ONNX model for other runtimes (TensorRT).

The labels of the rewritten head equal those of ``Resize`` + ``ArgMax`` up to float
rounding at near-ties; the export check (:mod:`.verify`) compares the result with the
dygraph model as before.
"""

from __future__ import annotations

import os
import tempfile
from collections import Counter

import numpy as np
import onnx
from onnx import helper, numpy_helper

from ..models.interpolation import (
    COORDINATE_MODES,
    RESIZE_MAX_MACS,
    interpolation_matrix,
    resize_macs,
)

# Output rows per band of the label head. On the LPCVC student (512 x 512, 14 classes), bands
# of 32, 64 and 128 rows measured alike, and one band of all 512 rows (14.7 MB of scores
# written by the MatMul, then read by the ArgMax) was slower.
LABEL_HEAD_BAND_ROWS = 64
# onnxruntime's CPU provider runs these in MLAS's channel-blocked layout (NCHWc), and keeps
# that layout through the second group when all their inputs have it (:func:`_blocked_layout`).
_NCHWC_SOURCES = ("Conv", "MaxPool", "AveragePool", "GlobalAveragePool", "GlobalMaxPool")
_NCHWC_KEEPERS = ("Add", "Sum", "Mul", "Concat", "Relu", "Clip", "Sigmoid", "HardSigmoid", "Resize")
# Marks the names of the MatMul nodes that interpolate (quantization leaves them in float:
# their weights are interpolation coefficients, and int8 would move the labels' borders).
INTERPOLATION_MATMUL = "/interpolation_matmul"


def _attributes(node: onnx.NodeProto) -> dict:
    values = {a.name: helper.get_attribute_value(a) for a in node.attribute}
    return {k: v.decode() if isinstance(v, bytes) else v for k, v in values.items()}


def _static_shape(value: onnx.ValueInfoProto | None) -> list[int] | None:
    if value is None or not value.type.tensor_type.HasField("shape"):
        return None
    dims = value.type.tensor_type.shape.dim
    if not all(d.HasField("dim_value") and d.dim_value > 0 for d in dims):
        return None
    return [d.dim_value for d in dims]


def _resize_output_size(
    resize: onnx.NodeProto, shape: list[int], constants: dict[str, np.ndarray]
) -> list[int] | None:
    """The static output shape of a 4-D ``Resize`` (from ``sizes``, else ``scales``)."""
    inputs = list(resize.input) + [""] * (4 - len(resize.input))
    sizes = constants.get(inputs[3]) if inputs[3] else None
    if sizes is not None and sizes.size == 4:
        return [int(v) for v in sizes]
    scales = constants.get(inputs[2]) if inputs[2] else None
    if scales is not None and scales.size == 4:
        return [int(np.floor(d * s)) for d, s in zip(shape, scales.astype(np.float64), strict=True)]
    return None


def _interpolation_matmul(a: str, b: str, out: str) -> onnx.NodeProto:
    """``out = a @ b`` where one side is an interpolation matrix, named as such."""
    return helper.make_node("MatMul", [a, b], [out], name=f"{out}{INTERPOLATION_MATMUL}")


def _label_head_nodes(
    prefix: str,
    logits: str,
    labels: str,
    shape: list[int],
    out_hw: tuple[int, int],
    mode: str,
    band_rows: int,
    cast_to: int | None = None,
) -> tuple[list[onnx.NodeProto], list[onnx.TensorProto]]:
    """Nodes and initializers computing ``labels`` (1, 1, H, W) from ``logits``.

    The labels are ArgMax's int64, or ``cast_to`` (an ONNX data type) cast band by band,
    which halves the bytes the bands' Concat copies for int32.
    """
    _, c, h, w = shape
    out_h, out_w = out_hw
    rows = interpolation_matrix(h, out_h, mode)  # (H, h)
    inits = [
        numpy_helper.from_array(interpolation_matrix(w, out_w, mode), f"{prefix}/cols"),
        numpy_helper.from_array(np.array([h, out_w * c], np.int64), f"{prefix}/shape_h_wc"),
        numpy_helper.from_array(np.array([0], np.int64), f"{prefix}/axis0"),
    ]
    # The small logits go to (1, h, w, C); the columns' interpolation, (W, w) x (w, C) for
    # each low-resolution row, gives (1, h, W, C), seen as (h, W*C). Each band of output rows
    # reads only the low-resolution rows its weights touch, so that its product is laid out
    # (rows, W, C) and its ArgMax runs over the contiguous class axis; the bands' labels are
    # (1, 1, rows, W), concatenated straight into the output.
    nodes = [
        helper.make_node("Transpose", [logits], [f"{prefix}/hwc"], perm=[0, 2, 3, 1]),
        _interpolation_matmul(f"{prefix}/cols", f"{prefix}/hwc", f"{prefix}/wide"),
        helper.make_node("Reshape", [f"{prefix}/wide", f"{prefix}/shape_h_wc"], [f"{prefix}/rows"]),
    ]
    starts = range(0, out_h, band_rows)
    bands = []
    for start in starts:
        stop = min(start + band_rows, out_h)
        used = np.flatnonzero(rows[start:stop].any(axis=0))
        low, high = int(used[0]), int(used[-1]) + 1
        name = f"{prefix}/band{start}"
        source = f"{prefix}/rows"
        if (low, high) != (0, h):
            inits += [
                numpy_helper.from_array(np.array([low], np.int64), f"{name}/start"),
                numpy_helper.from_array(np.array([high], np.int64), f"{name}/stop"),
            ]
            source = f"{name}/rows"
            nodes.append(
                helper.make_node(
                    "Slice",
                    [f"{prefix}/rows", f"{name}/start", f"{name}/stop", f"{prefix}/axis0"],
                    [source],
                )
            )
        band_shape = np.array([1, 1, stop - start, out_w, c], np.int64)
        inits += [
            numpy_helper.from_array(np.ascontiguousarray(rows[start:stop, low:high]), f"{name}/w"),
            numpy_helper.from_array(band_shape, f"{name}/shape"),
        ]
        band = labels if len(starts) == 1 else f"{name}/labels"
        argmax = band if cast_to is None else f"{name}/argmax"
        nodes += [
            _interpolation_matmul(f"{name}/w", source, f"{name}/scores"),
            helper.make_node("Reshape", [f"{name}/scores", f"{name}/shape"], [f"{name}/hwc"]),
            helper.make_node("ArgMax", [f"{name}/hwc"], [argmax], axis=4, keepdims=0),
        ]
        if cast_to is not None:
            nodes.append(helper.make_node("Cast", [argmax], [band], to=cast_to))
        bands.append(band)
    if len(bands) > 1:
        nodes.append(helper.make_node("Concat", bands, [labels], axis=2))
    return nodes, inits


def _graph_facts(model: onnx.ModelProto) -> tuple[dict, dict[str, np.ndarray]]:
    """Inferred value infos (inputs included) and initializer values, by name."""
    inferred = onnx.shape_inference.infer_shapes(model)
    values = {v.name: v for v in inferred.graph.value_info}
    values.update({v.name: v for v in inferred.graph.input})
    constants = {t.name: numpy_helper.to_array(t) for t in model.graph.initializer}
    return values, constants


def _resize_pattern(
    resize: onnx.NodeProto,
    values: dict[str, onnx.ValueInfoProto],
    constants: dict[str, np.ndarray],
) -> tuple[list[int], list[int], str] | None:
    """(input shape, output shape, coordinate mode) of a Resize the rewrites handle, else None.

    That is a 4-D bilinear Resize without antialiasing, in one of ``COORDINATE_MODES``, of
    a static batch-1 input to a static size, scaling H and W only.
    """
    if resize.op_type != "Resize" or resize.domain not in ("", "ai.onnx"):
        return None
    attrs = _attributes(resize)
    mode = attrs.get("coordinate_transformation_mode", "half_pixel")
    shape = _static_shape(values.get(resize.input[0]))
    if (
        attrs.get("mode") != "linear"
        or mode not in COORDINATE_MODES
        or attrs.get("antialias", 0)
        or shape is None
        or len(shape) != 4
        or shape[0] != 1
    ):
        return None
    size = _resize_output_size(resize, shape, constants)
    if size is None or size[:2] != shape[:2]:
        return None
    return shape, size, mode


def _resize_matmul_nodes(
    prefix: str, x: str, y: str, shape: list[int], size: list[int], mode: str
) -> tuple[list[onnx.NodeProto], list[onnx.TensorProto]]:
    """Nodes and initializers computing ``y`` = the bilinear resize of ``x`` by MatMuls."""
    _, c, h, w = shape
    out_h, out_w = size[2], size[3]
    inits = [numpy_helper.from_array(np.array(size, np.int64), f"{prefix}/shape_out")]
    nodes = []
    current = x
    if w != out_w:  # columns: (C*h, w) x (w, W)
        inits += [
            numpy_helper.from_array(np.array([c * h, w], np.int64), f"{prefix}/shape_rows"),
            numpy_helper.from_array(
                np.ascontiguousarray(interpolation_matrix(w, out_w, mode).T), f"{prefix}/cols_t"
            ),
        ]
        nodes += [
            helper.make_node("Reshape", [current, f"{prefix}/shape_rows"], [f"{prefix}/flat"]),
            _interpolation_matmul(f"{prefix}/flat", f"{prefix}/cols_t", f"{prefix}/wide"),
        ]
        current = f"{prefix}/wide"
    if h != out_h:  # rows: (H, h) x (C, h, W), broadcast over the channels
        inits += [
            numpy_helper.from_array(np.array([c, h, out_w], np.int64), f"{prefix}/shape_chw"),
            numpy_helper.from_array(interpolation_matrix(h, out_h, mode), f"{prefix}/rows"),
        ]
        nodes += [
            helper.make_node("Reshape", [current, f"{prefix}/shape_chw"], [f"{prefix}/chw"]),
            _interpolation_matmul(f"{prefix}/rows", f"{prefix}/chw", f"{prefix}/tall"),
        ]
        current = f"{prefix}/tall"
    nodes.append(helper.make_node("Reshape", [current, f"{prefix}/shape_out"], [y]))
    return nodes, inits


def _is_integer_upsample(shape: list[int], size: list[int]) -> bool:
    return all(o % i == 0 for i, o in zip(shape[2:], size[2:], strict=True))


def _blocked_layout(node: onnx.NodeProto, blocked: set[str], constants: dict) -> bool:
    """Whether onnxruntime may run ``node`` in MLAS's channel-blocked layout (NCHWc).

    Conv and pooling produce that layout; element-wise ops, Concat and activations keep it
    when all their tensor inputs have it, and so does a Resize by integer factors (run as
    MLAS's vectorised upsampling; :func:`rewrite_small_resizes` decides for the Resize nodes
    it knows). An over-estimate: a node it marks may still run NCHW.
    """
    if node.op_type in _NCHWC_SOURCES:
        return True
    if node.op_type not in _NCHWC_KEEPERS:
        return False
    data = [name for name in node.input if name and name not in constants]
    if node.op_type == "Resize":
        data = data[:1]
    return bool(data) and all(name in blocked for name in data)


def rewrite_small_resizes(model: onnx.ModelProto, max_macs: int = RESIZE_MAX_MACS) -> int:
    """Replaces small bilinear ``Resize`` nodes by interpolation MatMuls.

    A Resize of the form :func:`_resize_pattern` accepts becomes ``x @ cols^T`` then
    ``rows @ .`` when that costs at most ``max_macs`` multiply-adds per output value
    (about h + h*w/H for an (h, w) -> (H, W) resize). Large resizes (the input resize of
    TopFormer-288, the logits to full size) stay: their dense matrices would cost far more.
    So does an upsampling by integer factors of a tensor onnxruntime may hold in its
    channel-blocked layout (:func:`_blocked_layout`): it runs as MLAS's vectorised
    upsampling there, and MatMuls would break the layout for the nodes around it.

    Args:
        model: A model with inferable shapes; modified in place.
        max_macs: The cost limit per output value.

    Returns:
        The number of Resize nodes rewritten.
    """
    graph = model.graph
    values, constants = _graph_facts(model)
    blocked: set[str] = set()
    nodes = []
    rewritten = 0
    for node in graph.node:  # topologically sorted
        pattern = _resize_pattern(node, values, constants)
        if pattern is None:
            if _blocked_layout(node, blocked, constants):
                blocked.update(node.output)
            nodes.append(node)
            continue
        shape, size, mode = pattern
        (h, w), (out_h, out_w) = shape[2:], size[2:]
        macs = resize_macs(h, w, out_h, out_w)
        if _is_integer_upsample(shape, size) and node.input[0] in blocked:
            blocked.update(node.output)
            nodes.append(node)
        elif macs <= max_macs:
            new_nodes, inits = _resize_matmul_nodes(
                node.name or f"resize{rewritten}", node.input[0], node.output[0], shape, size, mode
            )
            nodes += new_nodes
            graph.initializer.extend(inits)
            rewritten += 1
        else:
            nodes.append(node)
    del graph.node[:]
    graph.node.extend(nodes)
    return rewritten


def rewrite_label_head(model: onnx.ModelProto, band_rows: int = LABEL_HEAD_BAND_ROWS) -> int:
    """Replaces ``Resize`` (bilinear) -> ``ArgMax`` (class axis) by banded interpolation products.

    The pattern: a Resize that :func:`_resize_pattern` accepts, read by nothing but an
    ``ArgMax`` over axis 1 with ``keepdims=1`` (first index on ties), and not a graph output.
    When the ArgMax is read by nothing but a ``Cast`` (to int32 in the export), that Cast
    moves into the bands. Anything else is left as it is.

    Args:
        model: A model with inferable shapes; modified in place.
        band_rows: Output rows per band.

    Returns:
        The number of heads rewritten.
    """
    graph = model.graph
    values, constants = _graph_facts(model)
    consumers = Counter(name for node in graph.node for name in node.input)
    outputs = {o.name for o in graph.output}
    nodes = list(graph.node)
    rewritten = 0
    for argmax in [n for n in nodes if n.op_type == "ArgMax"]:
        resize = next((n for n in nodes if argmax.input[0] in n.output), None)
        pattern = None if resize is None else _resize_pattern(resize, values, constants)
        am = _attributes(argmax)
        if (
            pattern is None
            or am.get("axis", 0) not in (1, -3)
            or am.get("keepdims", 1) != 1
            or am.get("select_last_index", 0)
            or consumers[resize.output[0]] != 1
            or resize.output[0] in outputs
        ):
            continue
        shape, size, mode = pattern
        readers = [n for n in nodes if argmax.output[0] in n.input]
        cast = None
        if len(readers) == 1 and readers[0].op_type == "Cast" and argmax.output[0] not in outputs:
            cast = readers[0]
        new_nodes, inits = _label_head_nodes(
            resize.name or f"label_head{rewritten}",
            resize.input[0],
            argmax.output[0] if cast is None else cast.output[0],
            shape,
            (size[2], size[3]),
            mode,
            band_rows,
            None if cast is None else _attributes(cast)["to"],
        )
        # The new nodes read only the logits, which exist before the Resize, so they take
        # its place in the (topologically sorted) node list.
        position = nodes.index(resize)
        for node in (resize, argmax, cast):
            if node is not None:
                nodes.remove(node)
        nodes[position:position] = new_nodes
        graph.initializer.extend(inits)
        rewritten += 1
    if rewritten:
        del graph.node[:]
        graph.node.extend(nodes)
    return rewritten


def remove_unused(model: onnx.ModelProto) -> dict[str, int]:
    """Drops initializers no node reads and opset imports of domains no node uses.

    Returns:
        ``{"initializers": removed, "opsets": removed}``.
    """
    graph = model.graph
    used = {name for node in graph.node for name in node.input}
    used |= {o.name for o in graph.output}
    kept = [t for t in graph.initializer if t.name in used]
    removed = len(graph.initializer) - len(kept)
    del graph.initializer[:]
    graph.initializer.extend(kept)
    domains = {node.domain or "" for node in graph.node} | {""}
    opsets = [o for o in model.opset_import if (o.domain or "") in domains]
    dropped = len(model.opset_import) - len(opsets)
    del model.opset_import[:]
    model.opset_import.extend(opsets)
    return {"initializers": removed, "opsets": dropped}


def ort_basic_optimize(onnx_file: str, output_file: str) -> None:
    """Writes onnxruntime's basic-level offline optimisation of ``onnx_file``.

    Basic-level graph transformers only produce standard ONNX operators, so the result
    stays portable; the extended and layout levels would write onnxruntime's own
    operators and are left to the session that runs the model.
    """
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_BASIC
    options.optimized_model_filepath = output_file
    # paddle2onnx's unused constants would each log a warning here.
    options.log_severity_level = 3
    ort.InferenceSession(onnx_file, options, providers=["CPUExecutionProvider"])


def optimize_onnx(
    onnx_file: str,
    label_head: bool = True,
    small_resizes: bool = True,
    band_rows: int = LABEL_HEAD_BAND_ROWS,
) -> dict[str, int]:
    """Optimises ``onnx_file`` in place (see the module docstring).

    Args:
        onnx_file: The model written by paddle2onnx.
        label_head: Rewrite ``Resize`` + ``ArgMax`` label heads (:func:`rewrite_label_head`).
        small_resizes: Rewrite small bilinear resizes (:func:`rewrite_small_resizes`).
        band_rows: Output rows per band of the label head.

    Returns:
        Counts: ``nodes_before``, ``nodes_after``, ``label_heads`` and ``resizes``
        rewritten, and the removed
        ``initializers`` and ``opsets``.

    Raises:
        RuntimeError: The optimised graph holds a non-standard operator or fails the ONNX
            checker (the original file is then left as it was).
    """
    before = onnx.load(onnx_file, load_external_data=False)
    directory = os.path.dirname(os.path.abspath(onnx_file))
    with tempfile.TemporaryDirectory(prefix="onnx_opt_", dir=directory) as tmp:
        basic = os.path.join(tmp, "basic.onnx")
        ort_basic_optimize(onnx_file, basic)
        model = onnx.load(basic)
    foreign = sorted(
        {n.op_type for n in model.graph.node if (n.domain or "") not in ("", "ai.onnx")}
    )
    if foreign:
        raise RuntimeError(f"onnxruntime's basic optimisation wrote non-standard ops {foreign}")
    heads = rewrite_label_head(model, band_rows) if label_head else 0
    resizes = rewrite_small_resizes(model) if small_resizes else 0
    stats = remove_unused(model)
    try:
        onnx.checker.check_model(model, full_check=True)
    except onnx.checker.ValidationError as err:
        raise RuntimeError(f"the optimised ONNX graph is invalid: {err}") from err
    # Written to a sibling file first, so that a failure leaves the original whole.
    partial = onnx_file + ".partial"
    onnx.save(model, partial)
    os.replace(partial, onnx_file)
    return {
        "nodes_before": len(before.graph.node),
        "nodes_after": len(model.graph.node),
        "label_heads": heads,
        "resizes": resizes,
        **stats,
    }
