"""Paddle Lite conversion: legacy ``.pdmodel`` export and ``paddle_lite_opt`` to ``model.nb``.

Runs in the Python 3.10 side environment made by ``make lite-env`` (``paddlepaddle==2.6.2``,
``paddlelite==2.13rc0``), with the repository root on ``PYTHONPATH``;
``paddleseg_ext.export`` starts it for ``--formats lite``. Paddle Lite's ``opt`` reads only
the legacy program format, which Paddle 3.x no longer writes for these models.

python deploy/lite/export_legacy.py JOBS.json

``JOBS.json`` is a list of jobs, each a dict with ``config`` (YAML path), ``save_dir``,
``input_shape`` (N, 3, H, W; -1 for dynamic), ``output_op`` (``argmax``, ``softmax`` or
``none``) and optionally ``weights`` (a state dict of the config's model; random weights
without it) and ``check`` (compare the legacy program with the dygraph model on random
values). One JSON line per job is printed to stdout: ``{"save_dir", "ok", "file",
"label_agreement"}`` or ``{"save_dir", "ok": false, "error"}``. Exit status 1 when a job
failed.

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

from paddleseg_ext.config import build, load_config
from paddleseg_ext.export import INPUT_NAME, ExportModel, outputs_labels
from paddleseg_ext.models.vim import LogitsUpsample

MODEL_PREFIX = "model"
OPT_TIMEOUT = 600
LITE_OUTPUT_OPS = ("argmax", "softmax", "none")


def build_layer(job: dict) -> paddle.nn.Layer:
    """The config's model with the job's weights and output op, VIM off, in eval mode."""
    cfg = load_config(job["config"], "predict", opts=job.get("opts"))
    model = build(cfg).model
    if job.get("weights"):
        state = paddle.load(job["weights"])
        own = model.state_dict()
        if set(state) != set(own):
            raise ValueError(f"{job['weights']} does not match the model of {job['config']}")
        model.set_state_dict(state)
    for layer in model.sublayers(include_self=True):
        if isinstance(layer, LogitsUpsample):
            layer.use_vim = False
    output_op = job.get("output_op", "argmax")
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


def ops_without_kernel(model_file: str, params_file: str) -> list[str]:
    """Ops of the program that opt lists with neither an arm nor a host kernel."""
    cmd = [opt_binary(), "--print_model_ops=true", "--valid_targets=arm"]
    cmd += [f"--model_file={model_file}", f"--param_file={params_file}"]
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=OPT_TIMEOUT).stdout
    missing = []
    for line in out.splitlines():
        fields = line.split()
        # Rows look like "conv2d Y" (one column per target; a blank where there is no kernel).
        if len(fields) == 1 and re.fullmatch(r"[a-z0-9_]+", fields[0]):
            missing.append(fields[0])
    return missing


def run_opt(model_file: str, params_file: str, out_prefix: str) -> str:
    """Converts the legacy program to ``out_prefix.nb`` for the arm target.

    Raises:
        RuntimeError: opt failed; the message names the ops without an arm kernel, or the
            failed check from opt's log.
    """
    nb_file = f"{out_prefix}.nb"
    if os.path.exists(nb_file):
        os.remove(nb_file)
    cmd = [opt_binary(), f"--model_file={model_file}", f"--param_file={params_file}"]
    cmd += ["--valid_targets=arm", "--optimize_out_type=naive_buffer"]
    cmd += [f"--optimize_out={out_prefix}"]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=OPT_TIMEOUT)
    if proc.returncode == 0 and os.path.isfile(nb_file) and os.path.getsize(nb_file) > 0:
        return nb_file
    missing = ops_without_kernel(model_file, params_file)
    log = (proc.stdout + proc.stderr).splitlines()
    checks = [line.split("] ", 1)[-1] for line in log if "Check failed" in line]
    reason = f"ops without an arm kernel: {', '.join(missing)}" if missing else ""
    if checks:
        reason = "; ".join(filter(None, [reason, checks[-1]]))
    if not reason:
        status = "crashed (signal)" if proc.returncode < 0 else f"exit code {proc.returncode}"
        reason = f"paddle_lite_opt {status}; last output: {' | '.join(log[-3:])}"
    raise RuntimeError(f"Paddle Lite opt could not convert the model: {reason}")


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
        prefix = os.path.join(tmp, MODEL_PREFIX)
        if job.get("check"):  # before to_static, which replaces the layer's forward
            x = check_input(job["input_shape"])
            with paddle.no_grad():
                reference = layer(x).numpy()
        save_legacy(layer, job["input_shape"], prefix)
        patch_program(f"{prefix}.pdmodel")
        result = {"save_dir": save_dir, "ok": True}
        if job.get("check"):
            result["label_agreement"] = label_agreement(reference, prefix, x)
        nb_file = run_opt(f"{prefix}.pdmodel", f"{prefix}.pdiparams", os.path.join(tmp, "out"))
        target = os.path.join(save_dir, f"{MODEL_PREFIX}.nb")
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
