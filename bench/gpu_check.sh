#!/usr/bin/env bash
# TensorRT engines of our exports against onnxruntime's CPU provider, on one NVIDIA GPU
# (about 5 minutes on a desktop GPU; no PaddlePaddle needed there).
#
#   python bench/gpu_check.py prepare output/gpu_check     # first, on any machine
#   bash bench/gpu_check.sh output/gpu_check               # then, on the GPU machine
#
# Installs into .venv-gpu: numpy, opencv-python-headless, pyyaml, onnxruntime-gpu, tensorrt
# (10.x where the index has it: 11 removed the FP16 builder flag) and cuda-python (the GPU
# buffers), then runs `bench/gpu_check.py check` (with trtexec when it is on PATH) and
# prints REPORT.md.
set -euo pipefail
[[ $# -eq 1 && -d "$1" ]] || { echo "usage: bash bench/gpu_check.sh PREPARED_FOLDER" >&2; exit 2; }
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader
VENV="$ROOT/.venv-gpu"
[[ -x "$VENV/bin/python" ]] || python3 -m venv "$VENV"
PIP=("$VENV/bin/python" -m pip install -q)
"${PIP[@]}" numpy opencv-python-headless pyyaml onnxruntime-gpu cuda-python
"${PIP[@]}" "tensorrt>=10,<11" || "${PIP[@]}" tensorrt
EXTRA=()
command -v trtexec >/dev/null && EXTRA+=(--trtexec)
"$VENV/bin/python" "$ROOT/bench/gpu_check.py" check "$1" "${EXTRA[@]}"
