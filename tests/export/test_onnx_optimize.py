"""The offline ONNX optimisation: folded BatchNorm, no unused initializers, the label head and
small resizes as MatMuls, and the same outputs as the graph before it."""

from __future__ import annotations

import os

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from onnx import TensorProto, helper, numpy_helper
from seg_runtime import ExportFiles

from paddleseg_ext.config import load_config
from paddleseg_ext.export import export
from paddleseg_ext.export.onnx_optimize import (
    INTERPOLATION_MATMUL,
    optimize_onnx,
    remove_unused,
    rewrite_small_resizes,
)
from paddleseg_ext.models.interpolation import interpolation_matrix

MODES = ["half_pixel", "pytorch_half_pixel", "align_corners", "asymmetric"]
REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def run(path: str, x: np.ndarray) -> np.ndarray:
    options = ort.SessionOptions()
    options.log_severity_level = 3
    session = ort.InferenceSession(path, options, providers=["CPUExecutionProvider"])
    return session.run(None, {"x": x})[0]


def segmentation_graph(
    path: str, head: str, side: int = 64, classes: int = 5, mode: str = "half_pixel"
) -> None:
    """Saves a paddle2onnx-like graph: Conv+BN+ReLU at 1/8 (stride 8), a Conv to class
    logits, a small Resize of a 1x1 global branch added back, then the head (``labels``:
    Resize to the input size + ArgMax + Cast to int32; ``logits``: Resize only). It also
    holds an unused Constant and an Identity, as paddle2onnx writes them."""
    rng = np.random.default_rng(0)
    low = side // 8
    arrays = {
        "w1": rng.standard_normal((8, 3, 8, 8)).astype(np.float32) * 0.1,
        "scale": rng.uniform(0.5, 1.5, 8).astype(np.float32),
        "bias": rng.standard_normal(8).astype(np.float32),
        "mean": rng.standard_normal(8).astype(np.float32) * 0.1,
        "var": rng.uniform(0.5, 1.5, 8).astype(np.float32),
        "w2": rng.standard_normal((classes, 8, 1, 1)).astype(np.float32),
        "empty": np.zeros(0, np.float32),
        "small_size": np.array([1, classes, low, low], np.int64),
        "out_size": np.array([1, classes, side, side], np.int64),
        "pool_axes": np.array([2, 3], np.int64),
    }
    inits = [numpy_helper.from_array(v, k) for k, v in arrays.items()]
    unused = numpy_helper.from_array(np.ones(3, np.float32), "unused_value")
    nodes = [
        helper.make_node("Constant", [], ["unused"], value=unused),
        helper.make_node("Conv", ["x", "w1"], ["c1"], strides=[8, 8]),
        helper.make_node(
            "BatchNormalization", ["c1", "scale", "bias", "mean", "var"], ["bn"], epsilon=1e-5
        ),
        helper.make_node("Relu", ["bn"], ["r"]),
        helper.make_node("Identity", ["r"], ["r_id"]),
        helper.make_node("Conv", ["r_id", "w2"], ["feat"]),
        helper.make_node("ReduceMean", ["feat"], ["pooled"], axes=[2, 3], keepdims=1),
        helper.make_node(
            "Resize",
            ["pooled", "empty", "empty", "small_size"],
            ["spread"],
            mode="linear",
            coordinate_transformation_mode=mode,
        ),
        helper.make_node("Add", ["feat", "spread"], ["logits"]),
        helper.make_node(
            "Resize",
            ["logits", "empty", "empty", "out_size"],
            ["up"] if head == "labels" else ["y"],
            mode="linear",
            coordinate_transformation_mode=mode,
        ),
    ]
    if head == "labels":
        nodes += [
            helper.make_node("ArgMax", ["up"], ["am"], axis=1, keepdims=1),
            helper.make_node("Cast", ["am"], ["y"], to=TensorProto.INT32),
        ]
    out_type = TensorProto.INT32 if head == "labels" else TensorProto.FLOAT
    out_shape = [1, 1, side, side] if head == "labels" else [1, classes, side, side]
    graph = helper.make_graph(
        nodes,
        "seg",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 3, side, side])],
        [helper.make_tensor_value_info("y", out_type, out_shape)],
        initializer=inits,
    )
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)]), path)


def unused_initializers(model: onnx.ModelProto) -> list[str]:
    read = {name for node in model.graph.node for name in node.input}
    return [t.name for t in model.graph.initializer if t.name not in read]


# 64 output rows: three bands of 24, 24 and 16 rows, or one band.
@pytest.mark.parametrize(
    ("mode", "band_rows", "bands"), [("half_pixel", 24, 3), ("align_corners", 64, 1)]
)
def test_label_graph_is_folded_rewritten_and_equal(tmp_path, mode, band_rows, bands) -> None:
    path = str(tmp_path / "model.onnx")
    segmentation_graph(path, "labels", mode=mode)
    x = np.random.default_rng(1).standard_normal((1, 3, 64, 64)).astype(np.float32)
    before = run(path, x)

    stats = optimize_onnx(path, band_rows=band_rows)

    model = onnx.load(path)
    onnx.checker.check_model(model, full_check=True)
    ops = [node.op_type for node in model.graph.node]
    assert "BatchNormalization" not in ops and "Identity" not in ops and "Constant" not in ops
    assert "Resize" not in ops and ops.count("ArgMax") == ops.count("Cast") == bands
    assert unused_initializers(model) == []
    assert [o.domain for o in model.opset_import] == [""]
    assert stats["label_heads"] == 1 and stats["resizes"] == 1
    after = run(path, x)
    assert after.dtype == before.dtype == np.int32 and after.shape == before.shape
    assert (after == before).mean() >= 0.999


def test_logits_graph_keeps_its_values(tmp_path) -> None:
    path = str(tmp_path / "model.onnx")
    segmentation_graph(path, "logits")
    x = np.random.default_rng(2).standard_normal((1, 3, 64, 64)).astype(np.float32)
    before = run(path, x)

    stats = optimize_onnx(path)

    model = onnx.load(path)
    ops = [node.op_type for node in model.graph.node]
    assert "BatchNormalization" not in ops and unused_initializers(model) == []
    # The full-size Resize has no ArgMax after it, and at 8 -> 64 it is cheap enough as
    # MatMuls: only the label head keeps a Resize when it is read by anything else.
    assert stats["label_heads"] == 0 and stats["resizes"] == 2
    np.testing.assert_allclose(run(path, x), before, rtol=1e-5, atol=1e-5)


def test_switches_leave_the_resizes(tmp_path) -> None:
    path = str(tmp_path / "model.onnx")
    segmentation_graph(path, "labels")
    stats = optimize_onnx(path, label_head=False, small_resizes=False)
    ops = [node.op_type for node in onnx.load(path).graph.node]
    assert ops.count("Resize") == 2 and "ArgMax" in ops and "BatchNormalization" not in ops
    assert stats["label_heads"] == stats["resizes"] == 0


@pytest.mark.parametrize(
    "mode", ["half_pixel", "pytorch_half_pixel", "align_corners", "asymmetric"]
)
@pytest.mark.parametrize(("size_in", "size_out"), [(5, 36), (36, 512), (9, 4), (7, 1)])
def test_interpolation_matrix_matches_onnxruntime_resize(mode, size_in, size_out) -> None:
    row = np.random.default_rng(3).standard_normal((1, 1, 1, size_in)).astype(np.float32)
    graph = helper.make_graph(
        [
            helper.make_node(
                "Resize",
                ["x", "", "", "size"],
                ["y"],
                mode="linear",
                coordinate_transformation_mode=mode,
            )
        ],
        "resize",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 1, 1, size_in])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)],
        initializer=[numpy_helper.from_array(np.array([1, 1, 1, size_out], np.int64), "size")],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    session = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    expected = session.run(None, {"x": row})[0].reshape(-1)
    matrix = interpolation_matrix(size_in, size_out, mode)
    np.testing.assert_allclose(matrix @ row.reshape(-1), expected, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(matrix.sum(axis=1), 1.0, rtol=1e-6)


def test_remove_unused_keeps_graph_outputs() -> None:
    graph = helper.make_graph(
        [helper.make_node("Add", ["x", "one"], ["y"])],
        "g",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1])],
        [
            helper.make_tensor_value_info("y", TensorProto.FLOAT, [1]),
            helper.make_tensor_value_info("const_out", TensorProto.FLOAT, [1]),
        ],
        initializer=[
            numpy_helper.from_array(np.ones(1, np.float32), name)
            for name in ("one", "const_out", "dead")
        ],
    )
    model = helper.make_model(
        graph, opset_imports=[helper.make_opsetid("", 13), helper.make_opsetid("com.microsoft", 1)]
    )
    assert remove_unused(model) == {"initializers": 1, "opsets": 1}
    assert [t.name for t in model.graph.initializer] == ["one", "const_out"]


def test_export_writes_the_optimised_graph(tmp_path, make_weights) -> None:
    """The export's model.onnx is optimised by default and passes the export check; with
    ``optimize_onnx=False`` it is paddle2onnx's graph, with the same labels."""
    config = os.path.join(REPO, "configs", "demo", "topformer_tiny_shapes.yml")
    weights = make_weights(config, str(tmp_path / "model.pdparams"))
    cfg = load_config(config, "val")
    shape = [1, 3, 64, 64]
    fast = export(cfg, str(tmp_path / "fast"), model_path=weights, input_shape=shape)
    export(
        cfg,
        str(tmp_path / "plain"),
        model_path=weights,
        input_shape=shape,
        formats="onnx",
        optimize_onnx=False,
        verify=False,
    )
    assert fast.passed and fast.checks["onnxruntime"]["label_agreement"] >= 0.999
    optimised = onnx.load(str(tmp_path / "fast" / ExportFiles.ONNX))
    original = onnx.load(str(tmp_path / "plain" / ExportFiles.ONNX))
    ops = [node.op_type for node in optimised.graph.node]
    assert "BatchNormalization" not in ops and unused_initializers(optimised) == []
    assert "BatchNormalization" in [node.op_type for node in original.graph.node]
    assert len(optimised.graph.node) < len(original.graph.node)
    x = np.random.default_rng(4).standard_normal(shape).astype(np.float32)
    labels = run(str(tmp_path / "fast" / ExportFiles.ONNX), x)
    reference = run(str(tmp_path / "plain" / ExportFiles.ONNX), x)
    assert (labels == reference).mean() >= 0.999


def test_integer_upsampling_of_conv_output_stays_a_resize() -> None:
    """onnxruntime runs an integer-factor Resize of a Conv's (channel-blocked) output as MLAS's
    upsampling: it stays. A non-integer one, or one of a MatMul's output, becomes MatMuls."""
    rng = np.random.default_rng(5)
    inits = [
        numpy_helper.from_array(rng.standard_normal((16, 3, 1, 1)).astype(np.float32), "w"),
        numpy_helper.from_array(np.zeros(0, np.float32), "empty"),
        numpy_helper.from_array(np.array([1, 16, 16, 16], np.int64), "double"),
        numpy_helper.from_array(np.array([1, 16, 14, 14], np.int64), "odd"),
        numpy_helper.from_array(np.eye(8, dtype=np.float32), "eye"),
    ]
    resize = {"mode": "linear", "coordinate_transformation_mode": "half_pixel"}
    nodes = [
        helper.make_node("Conv", ["x", "w"], ["c"]),
        helper.make_node("Resize", ["c", "empty", "empty", "double"], ["a"], **resize),
        helper.make_node("Resize", ["c", "empty", "empty", "odd"], ["b"], **resize),
        helper.make_node("MatMul", ["c", "eye"], ["m"]),
        helper.make_node("Resize", ["m", "empty", "empty", "double"], ["d"], **resize),
    ]
    graph = helper.make_graph(
        nodes,
        "g",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 3, 8, 8])],
        [helper.make_tensor_value_info(n, TensorProto.FLOAT, None) for n in "abd"],
        initializer=inits,
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    assert rewrite_small_resizes(model) == 2
    kept = [n for n in model.graph.node if n.op_type == "Resize"]
    assert [n.output[0] for n in kept] == ["a"]


def test_int8_quantization_leaves_interpolations_float(tmp_path) -> None:
    """``quantize_onnx`` puts the convolutions in int8 and keeps the interpolation MatMuls
    of the rewritten head and resizes float: their weights are interpolation coefficients."""
    from paddleseg_ext.quant import quantize_onnx  # noqa: PLC0415

    path, int8 = str(tmp_path / "model.onnx"), str(tmp_path / "int8.onnx")
    segmentation_graph(path, "labels")
    optimize_onnx(path, band_rows=24)
    rng = np.random.default_rng(2)
    batches = [rng.standard_normal((1, 3, 64, 64)).astype(np.float32) for _ in range(4)]
    settings = quantize_onnx(path, int8, batches)

    model = onnx.load(int8)
    producers = {out: n.op_type for n in model.graph.node for out in n.output}
    convs = [n for n in model.graph.node if n.op_type == "Conv"]
    assert convs and all(producers.get(n.input[1]) == "DequantizeLinear" for n in convs)
    interpolations = [n for n in model.graph.node if INTERPOLATION_MATMUL in n.name]
    # The resize's two MatMuls, the head's column MatMul and one per band of 24 rows (3).
    assert len(interpolations) == settings["float_interpolation_matmuls"] == 6
    for node in interpolations:
        assert all(producers.get(name) != "DequantizeLinear" for name in node.input), node.name
    assert (run(int8, batches[0]) == run(path, batches[0])).mean() > 0.9
