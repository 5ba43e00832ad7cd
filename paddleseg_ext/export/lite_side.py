"""Paddle Lite conversion: legacy ``.pdmodel`` export and ``paddle_lite_opt`` to ``model.nb``.

Runs in the Python 3.10 side environment made by ``make lite-env`` (``paddlepaddle==2.6.2``,
``paddlelite==2.13rc0``, this package installed there); :mod:`.lite` starts it for
``--formats lite``. Paddle Lite's ``opt`` reads only
the legacy program format, which Paddle 3.x no longer writes for these models.

python -m paddleseg_ext.export.lite_side JOBS.json

``JOBS.json`` is a list of jobs, each a dict with ``config`` (YAML path), ``save_dir``,
``input_shape`` (N, 3, H, W; -1 for dynamic), ``output_op`` (``argmax``, ``softmax``,
``exact`` or ``none``), and optionally ``file`` (the ``.nb`` name, ``model.nb`` by
default), ``weights`` (a state dict of the config's model; random weights without it),
``check`` (compare the legacy program with the dygraph model on random values) and
``valid_targets`` (opt's target, ``arm`` by default; ``x86`` gives a ``.nb`` that runs on
this machine). One JSON
line per job is printed to stdout: ``{"save_dir", "ok", "file", "label_agreement"}`` or
``{"save_dir", "ok": false, "error"}``. Exit status 1 when a job failed.

A job with ``quantize`` (a dict: ``calib`` an ``.npy`` of calibration batches (B, N, 3, H,
W), ``algo`` PaddleSlim's activation-range algorithm, ``file`` the INT8 ``.nb`` name, and
optionally ``eval_inputs`` (an ``.npy`` of (M, N, 3, H, W) inputs) with ``eval_outputs``
(an ``.npz`` to write)) also runs PaddleSlim's post-training quantization
(``quant_post_static``) on the legacy program and converts the result with opt. Its result
line adds ``int8_file``, ``int8_kernels`` (the precision opt chose for each op type:
``{"int8": {"conv2d": 52, ...}, "float": {...}}``) and ``int8_label_agreement`` (INT8 vs
float program on the calibration batches); ``eval_outputs`` receives the labels of both
programs on ``eval_inputs`` (``float``, ``int8``: (M, N, H, W)).

What this adds over a plain ``paddle.jit.save``:

- valid-class interpolation (VIM) is switched off: its dynamic class subset (``where_index``
  + ``gather``) makes opt 2.13rc0 crash, and full bilinear upsampling + argmax gives the same
  labels as VIM's default ``exact`` class set;
- the program is patched where Paddle 2.6 writes attributes that opt 2.13rc0 reads
  differently: ``relu6`` lost its ``threshold`` (added back as 6.0) and ``reduce_*`` ops
  write ``dim`` as int64 (converted to int32);
- opt runs in a child process (it aborts on an error); a failure names the ops without an
  arm kernel, or opt's failed check (which names the op).
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import traceback

import numpy as np
import paddle
from paddle.base.proto import framework_pb2
from seg_runtime import ExportFiles

from ..config import build, load_config
from ..core.checkpoint import load_weights
from ..models.vim import LogitsUpsample
from .graph import INPUT_NAME, ExportModel, outputs_labels

OPT_TIMEOUT = 600
# Ops given int8 kernels. Paddle Lite 2.13rc0 has no int8 matmul_v2 kernel: quantizing the
# attention's matmuls makes opt abort ("No kernels found for matmul_v2").
QUANT_OPS = ["conv2d", "depthwise_conv2d"]
# Paddle Lite's PrecisionType values, as opt writes them into each op's kernel type.
PRECISIONS = {1: "float", 2: "int8", 3: "int32", 4: "any", 5: "fp16", 6: "bool", 7: "int64"}
KERNEL_TYPE_ATTR = "__@kernel_type_attr@__"
LITE_OUTPUT_OPS = ("argmax", "softmax", "none", "exact")


def build_layer(job: dict) -> paddle.nn.Layer:
    """The config's model with the job's weights and output op, VIM off, in eval mode."""
    cfg = load_config(job["config"], "predict", opts=job.get("opts"))
    model = build(cfg).model
    if job.get("weights"):
        load_weights(model, job["weights"])
    output_op = job.get("output_op", "argmax")
    for layer in model.sublayers(include_self=True):
        if isinstance(layer, LogitsUpsample):
            layer.use_vim = False
            layer.passthrough = output_op == "exact"  # as graph.prepare_model does
    if output_op not in LITE_OUTPUT_OPS:
        raise ValueError(f"output op {output_op!r} cannot be converted; use {LITE_OUTPUT_OPS}")
    model.eval()
    layer = ExportModel(model, output_op, outputs_labels(model))
    layer.eval()
    return layer


def save_legacy(layer: paddle.nn.Layer, input_shape: list[int], prefix: str) -> None:
    """``paddle.jit.save`` to ``prefix.pdmodel`` + ``prefix.pdiparams`` (Paddle 2.6 format)."""
    spec = [paddle.static.InputSpec(list(input_shape), "float32", INPUT_NAME)]
    paddle.jit.save(paddle.jit.to_static(layer, input_spec=spec, full_graph=True), prefix)


def patch_program(model_file: str) -> dict[str, int]:
    """Rewrites the attributes opt 2.13rc0 reads differently; returns the op counts."""
    program = framework_pb2.ProgramDesc()
    with open(model_file, "rb") as f:
        program.ParseFromString(f.read())
    counts: dict[str, int] = {}
    for block in program.blocks:
        for op in block.ops:
            counts[op.type] = counts.get(op.type, 0) + 1
            names = {attr.name for attr in op.attrs}
            if op.type == "relu6" and "threshold" not in names:
                attr = op.attrs.add()
                attr.name, attr.type, attr.f = "threshold", framework_pb2.AttrType.FLOAT, 6.0
            if op.type.startswith("reduce_"):
                for attr in op.attrs:
                    if attr.name == "dim" and attr.type == framework_pb2.AttrType.LONGS:
                        values = list(attr.longs)
                        attr.ClearField("longs")
                        attr.type = framework_pb2.AttrType.INTS
                        attr.ints.extend(values)
    with open(model_file, "wb") as f:
        f.write(program.SerializeToString())
    return counts


def opt_binary() -> str:
    """``paddle_lite_opt`` next to this interpreter (installed by the paddlelite wheel)."""
    path = os.path.join(os.path.dirname(sys.executable), "paddle_lite_opt")
    if not os.path.isfile(path):
        raise FileNotFoundError(f"paddle_lite_opt not found next to {sys.executable}")
    return path


def ops_without_kernel(model_file: str, params_file: str, targets: str) -> list[str]:
    """Ops of the program that opt lists with no kernel for ``targets`` nor the host."""
    cmd = [opt_binary(), "--print_model_ops=true", f"--valid_targets={targets}"]
    cmd += [f"--model_file={model_file}", f"--param_file={params_file}"]
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=OPT_TIMEOUT).stdout
    missing = []
    for line in out.splitlines():
        fields = line.split()
        # Rows look like "conv2d Y" (one column per target; a blank where there is no kernel).
        if len(fields) == 1 and re.fullmatch(r"[a-z0-9_]+", fields[0]):
            missing.append(fields[0])
    return missing


def run_opt(model_file: str, params_file: str, out_prefix: str, targets: str = "arm") -> str:
    """Converts the legacy program to ``out_prefix.nb`` for ``targets`` (opt's names).

    Raises:
        RuntimeError: opt failed; the message names the ops without a kernel for the
            target, or the failed check from opt's log.
    """
    nb_file = f"{out_prefix}.nb"
    if os.path.exists(nb_file):
        os.remove(nb_file)
    cmd = [opt_binary(), f"--model_file={model_file}", f"--param_file={params_file}"]
    cmd += [f"--valid_targets={targets}", "--optimize_out_type=naive_buffer"]
    cmd += [f"--optimize_out={out_prefix}"]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=OPT_TIMEOUT)
    if proc.returncode == 0 and os.path.isfile(nb_file) and os.path.getsize(nb_file) > 0:
        return nb_file
    missing = ops_without_kernel(model_file, params_file, targets)
    log = (proc.stdout + proc.stderr).splitlines()
    checks = [line.split("] ", 1)[-1] for line in log if "Check failed" in line]
    reason = f"ops without a {targets} kernel: {', '.join(missing)}" if missing else ""
    if checks:
        reason = "; ".join(filter(None, [reason, checks[-1]]))
    if not reason:
        status = "crashed (signal)" if proc.returncode < 0 else f"exit code {proc.returncode}"
        reason = f"paddle_lite_opt {status}; last output: {' | '.join(log[-3:])}"
    raise RuntimeError(f"Paddle Lite opt could not convert the model: {reason}")


class _Batches(paddle.io.DataLoader):
    """Precomputed batches as Paddle 2.6's post-training quantization wants its data: it
    accepts only a ``paddle.io.DataLoader`` and calls it for ``{feed name: batch}`` dicts."""

    def __init__(self, batches: np.ndarray) -> None:  # no DataLoader machinery is used
        self.batches = batches

    def __call__(self):
        for batch in self.batches:
            yield {INPUT_NAME: batch}

    def __len__(self) -> int:
        return len(self.batches)


def quantize_program(float_dir: str, int8_dir: str, batches: np.ndarray, algo: str) -> None:
    """PaddleSlim ``quant_post_static`` of ``float_dir/model.pdmodel`` into ``int8_dir``."""
    from paddleslim.quant import quant_post_static

    paddle.enable_static()
    try:
        quant_post_static(
            paddle.static.Executor(paddle.CPUPlace()),
            float_dir,
            int8_dir,
            data_loader=_Batches(batches),
            model_filename=ExportFiles.PADDLE_LEGACY_MODEL,
            params_filename=ExportFiles.PADDLE_PARAMS,
            batch_nums=len(batches),
            algo=algo,
            quantizable_op_type=QUANT_OPS,
            onnx_format=False,  # fake-quant ops, which opt turns into int8 kernels
        )
    finally:
        paddle.disable_static()


def kernel_report(model_file: str, params_file: str, targets: str) -> dict[str, dict[str, int]]:
    """The kernels opt picks: ``{precision: {op type: count}}`` (calib ops excluded)."""
    with tempfile.TemporaryDirectory(prefix="lite_report_") as tmp:
        out = os.path.join(tmp, "optimized")
        cmd = [opt_binary(), f"--model_file={model_file}", f"--param_file={params_file}"]
        cmd += [f"--valid_targets={targets}", "--optimize_out_type=protobuf"]
        subprocess.run(cmd + [f"--optimize_out={out}"], capture_output=True, timeout=OPT_TIMEOUT)
        program = framework_pb2.ProgramDesc()
        with open(os.path.join(out, "model"), "rb") as f:
            program.ParseFromString(f.read())
    report: dict[str, dict[str, int]] = {}
    for op in program.blocks[0].ops:
        kernel = next((a.s for a in op.attrs if a.name == KERNEL_TYPE_ATTR), "")
        fields = kernel.split("/")  # op/alias/target/precision/layout
        if op.type in ("calib", "feed", "fetch") or len(fields) != 5:
            continue
        precision = PRECISIONS.get(int(fields[3]), fields[3])
        report.setdefault(precision, {})
        report[precision][op.type] = report[precision].get(op.type, 0) + 1
    return report


def run_program(program_dir: str, inputs: np.ndarray) -> np.ndarray:
    """Labels (argmax over classes for score outputs) of a saved legacy program per input."""
    paddle.enable_static()
    try:
        exe = paddle.static.Executor(paddle.CPUPlace())
        prefix = os.path.join(program_dir, ExportFiles.PREFIX)
        program, feeds, fetches = paddle.static.load_inference_model(prefix, exe)
        outputs = [exe.run(program, feed={feeds[0]: x}, fetch_list=fetches)[0] for x in inputs]
    finally:
        paddle.disable_static()
    out = np.stack(outputs)
    if np.issubdtype(out.dtype, np.floating) and out.shape[2] > 1:
        return out.argmax(axis=2)
    return out.reshape(*out.shape[:2], *out.shape[-2:])


def quantize_job(job: dict, float_dir: str, tmp: str, targets: str) -> dict:
    """The INT8 part of a job: PTQ, opt, kernel report, agreement, optional evaluation."""
    spec = job["quantize"]
    batches = np.load(spec["calib"])
    int8_dir = os.path.join(tmp, "int8")
    quantize_program(float_dir, int8_dir, batches, spec.get("algo", "abs_max"))
    model_file = os.path.join(int8_dir, ExportFiles.PADDLE_LEGACY_MODEL)
    params_file = os.path.join(int8_dir, ExportFiles.PADDLE_PARAMS)
    patch_program(model_file)
    result = {"int8_kernels": kernel_report(model_file, params_file, targets)}
    float_labels, int8_labels = run_program(float_dir, batches), run_program(int8_dir, batches)
    result["int8_label_agreement"] = float((float_labels == int8_labels).mean())
    if spec.get("eval_inputs"):
        inputs = np.load(spec["eval_inputs"])
        np.savez(spec["eval_outputs"], float=run_program(float_dir, inputs),
                 int8=run_program(int8_dir, inputs))  # fmt: skip
    nb_file = run_opt(model_file, params_file, os.path.join(tmp, "int8_out"), targets)
    target = os.path.join(job["save_dir"], spec.get("file", ExportFiles.LITE_INT8))
    shutil.move(nb_file, target)
    result["int8_file"] = os.path.basename(target)
    return result


def check_input(input_shape: list[int]) -> paddle.Tensor:
    """Random values of ``input_shape`` (a dynamic size taken as 128)."""
    shape = [v if v > 0 else 128 for v in input_shape]
    return paddle.to_tensor(np.random.default_rng(0).standard_normal(shape).astype("float32"))


def label_agreement(reference: np.ndarray, prefix: str, x: paddle.Tensor) -> float:
    """Fraction of equal labels between the saved legacy program and ``reference``."""
    output = paddle.jit.load(prefix)(x).numpy()
    if np.issubdtype(reference.dtype, np.floating) and reference.shape[1] > 1:
        reference, output = reference.argmax(1), output.argmax(1)
    return float((reference == output).mean())


def run_job(job: dict) -> dict:
    """Writes ``save_dir/model.nb`` for one job; returns the result line."""
    layer = build_layer(job)
    save_dir = job["save_dir"]
    os.makedirs(save_dir, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="lite_legacy_") as tmp:
        prefix = os.path.join(tmp, ExportFiles.PREFIX)
        if job.get("check"):  # before to_static, which replaces the layer's forward
            x = check_input(job["input_shape"])
            with paddle.no_grad():
                reference = layer(x).numpy()
        save_legacy(layer, job["input_shape"], prefix)
        patch_program(f"{prefix}.pdmodel")
        result = {"save_dir": save_dir, "ok": True}
        if job.get("check"):
            result["label_agreement"] = label_agreement(reference, prefix, x)
        targets = job.get("valid_targets", "arm")
        if job.get("quantize"):
            result.update(quantize_job(job, tmp, tmp, targets))
        nb_file = run_opt(f"{prefix}.pdmodel", f"{prefix}.pdiparams", os.path.join(tmp, "out"),
                          targets)  # fmt: skip
        target = os.path.join(save_dir, job.get("file", ExportFiles.LITE))
        shutil.move(nb_file, target)
    result["file"] = os.path.basename(target)
    return result


def main(argv: list[str]) -> int:
    if len(argv) != 1:
        print(__doc__, file=sys.stderr)
        return 2
    with open(argv[0]) as f:
        jobs = json.load(f)
    paddle.set_device("cpu")
    failed = False
    for job in jobs:
        try:
            result = run_job(job)
        except Exception as err:  # report each job's failure and go on with the others
            traceback.print_exc(file=sys.stderr)
            result = {"save_dir": job.get("save_dir"), "ok": False, "error": str(err)}
            failed = True
        print(json.dumps(result), flush=True)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
