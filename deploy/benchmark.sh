#!/usr/bin/env bash
# Latency of an exported model, printed in the layout of Paddle Lite's benchmark tool
# (init, first, min, max, avg in ms) after a "machine:" line (architecture, CPU, cores,
# runtime and version), and appended to a results file with the same facts.
#
#   bash deploy/benchmark.sh MODEL_DIR [--backend paddle|onnxruntime|lite|tensorrt|trtexec]
#        [--threads N] [--warmup 20] [--repeats 50] [--input_shape 1,3,H,W]
#        [--out results.txt] [--benchmark_bin PATH] [--lite_backend arm|x86|opencl]
#        [--trtexec PATH] [--save_engine FILE]
#
# paddle / onnxruntime / tensorrt: deploy/python/benchmark.py (no PaddleSeg needed; Paddle
#   only for the paddle backend; tensorrt: seg_runtime's engine, built from model.onnx and
#   cached beside it) under $PYTHON, else .venv/bin/python of this repository, else python3.
# lite: Paddle Lite's benchmark_bin (--benchmark_bin PATH) on MODEL_DIR/*.nb; without it,
#   deploy/python/benchmark.py with the paddlelite Python API ($PYTHON, else .venv-lite).
# trtexec: runs TensorRT's trtexec (--trtexec PATH or on PATH) on MODEL_DIR/model.onnx;
#   --save_engine FILE keeps the engine it builds (run it with --trt_engine FILE).
set -euo pipefail

usage() {
    sed -n '2,15p' "$0" | sed 's/^# \{0,1\}//'
    exit 2
}
fail() {
    echo "error: $*" >&2
    exit 2
}

[[ $# -ge 1 ]] || usage
case "$1" in -h | --help) usage ;; esac
MODEL_DIR=$1
shift
BACKEND=paddle
THREADS=1
WARMUP=20
REPEATS=50
INPUT_SHAPE=""
OUT=""
BENCHMARK_BIN=""
LITE_BACKEND=arm
TRTEXEC=""
SAVE_ENGINE=""
while [[ $# -gt 0 ]]; do
    [[ $# -ge 2 ]] || fail "option $1 needs a value"
    case "$1" in
        --backend) BACKEND=$2 ;;
        --threads) THREADS=$2 ;;
        --warmup) WARMUP=$2 ;;
        --repeats) REPEATS=$2 ;;
        --input_shape) INPUT_SHAPE=$2 ;;
        --out) OUT=$2 ;;
        --benchmark_bin) BENCHMARK_BIN=$2 ;;
        --lite_backend) LITE_BACKEND=$2 ;;
        --trtexec) TRTEXEC=$2 ;;
        --save_engine) SAVE_ENGINE=$2 ;;
        *) fail "unknown option $1 (see --help)" ;;
    esac
    shift 2
done
[[ -d "$MODEL_DIR" ]] || fail "model directory not found: $MODEL_DIR"
for value in "$THREADS" "$WARMUP" "$REPEATS"; do
    [[ "$value" =~ ^[0-9]+$ ]] || fail "--threads/--warmup/--repeats take integers, got $value"
done
if [[ -n "$INPUT_SHAPE" && ! "$INPUT_SHAPE" =~ ^-?[0-9]+,[0-9]+,-?[0-9]+,-?[0-9]+$ ]]; then
    fail "--input_shape must look like 1,3,512,512, got $INPUT_SHAPE"
fi

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
LOG=$(mktemp)
trap 'rm -f "$LOG"' EXIT

# "1,3,512,512" from deploy.yaml's input_shape when --input_shape is not given.
deploy_shape() {
    local line
    line=$(grep -E '^ *input_shape:' "$MODEL_DIR/deploy.yaml" 2>/dev/null | head -n 1) ||
        fail "no input_shape in $MODEL_DIR/deploy.yaml; pass --input_shape"
    line=${line#*[}
    line=${line%]*}
    echo "${line// /}"
}

# Usable cores (nproc itself would report OMP_NUM_THREADS where it is set).
cores() { env -u OMP_NUM_THREADS -u OMP_THREAD_LIMIT nproc; }
# The line deploy/python/benchmark.py prints first: "machine: ARCH, CPU, N cores; backend: $1".
machine_line() {
    local cpu
    cpu=$(grep -m 1 -E '^(model name|Model|Hardware|CPU part)[[:space:]]*:' /proc/cpuinfo \
        2>/dev/null | sed -E 's/^[^:]*:[[:space:]]*//') || true
    echo "machine: $(uname -m), ${cpu:-unknown CPU}, $(cores) cores; backend: $1"
}

python_bench() {
    local py=${PYTHON:-}
    if [[ -z "$py" ]]; then
        py=python3
        if [[ "$BACKEND" == lite && -x "$ROOT/.venv-lite/bin/python" ]]; then
            py="$ROOT/.venv-lite/bin/python"
        elif [[ "$BACKEND" != lite && -x "$ROOT/.venv/bin/python" ]]; then
            py="$ROOT/.venv/bin/python"
        fi
    fi
    local args=("$MODEL_DIR" --backend "$BACKEND" --threads "$THREADS" --warmup "$WARMUP"
        --repeats "$REPEATS")
    [[ -n "$INPUT_SHAPE" ]] && args+=(--input_shape "$INPUT_SHAPE")
    "$py" "$ROOT/deploy/python/benchmark.py" "${args[@]}" | tee "$LOG"
}

case "$BACKEND" in
    paddle | onnxruntime | tensorrt) python_bench ;;
    lite)
        if [[ -z "$BENCHMARK_BIN" ]]; then
            python_bench # Paddle Lite's Python API (paddlelite), on this machine's .nb
        else
            [[ -x "$BENCHMARK_BIN" ]] || fail "benchmark_bin not executable: $BENCHMARK_BIN"
            shopt -s nullglob
            nb_files=("$MODEL_DIR"/*.nb)
            shopt -u nullglob
            [[ ${#nb_files[@]} -ge 1 ]] ||
                fail "no .nb model in $MODEL_DIR: convert the model with Paddle Lite's opt" \
                    "(paddle_lite_opt --model_file ... --optimize_out_type naive_buffer)"
            [[ -n "$INPUT_SHAPE" ]] || INPUT_SHAPE=$(deploy_shape)
            {
                machine_line "lite (benchmark_bin, $LITE_BACKEND)"
                echo "model: ${nb_files[0]}  backend: lite ($LITE_BACKEND)  threads: $THREADS"
                echo "input_shape: $INPUT_SHAPE  warmup: $WARMUP  repeats: $REPEATS"
                "$BENCHMARK_BIN" --optimized_model_file="${nb_files[0]}" \
                    --input_shape="$INPUT_SHAPE" --threads="$THREADS" --warmup="$WARMUP" \
                    --repeats="$REPEATS" --backend="$LITE_BACKEND"
            } | tee "$LOG"
        fi
        ;;
    trtexec)
        if [[ -z "$TRTEXEC" ]]; then
            TRTEXEC=$(command -v trtexec || true)
        fi
        [[ -n "$TRTEXEC" && -x "$TRTEXEC" ]] ||
            fail "--backend trtexec needs trtexec: install TensorRT (JetPack on Jetson) and" \
                "put trtexec on PATH or pass --trtexec PATH"
        [[ -f "$MODEL_DIR/model.onnx" ]] ||
            fail "no model.onnx in $MODEL_DIR (export with --formats onnx)"
        [[ -n "$INPUT_SHAPE" ]] || INPUT_SHAPE=$(deploy_shape)
        shape_x=${INPUT_SHAPE//,/x}
        echo "model: $MODEL_DIR/model.onnx  backend: trtexec"
        echo "input_shape: $INPUT_SHAPE  warmup: $WARMUP  repeats: $REPEATS" | tee "$LOG.shape"
        trt_args=(--onnx="$MODEL_DIR/model.onnx" --shapes="x:$shape_x" --warmUp="$WARMUP"
            --iterations="$REPEATS" --avgRuns=1)
        [[ -n "$SAVE_ENGINE" ]] && trt_args+=(--saveEngine="$SAVE_ENGINE")
        "$TRTEXEC" "${trt_args[@]}" >"$LOG.trt" 2>&1 ||
            { cat "$LOG.trt" >&2; rm -f "$LOG.trt"; fail "trtexec failed"; }
        # trtexec: "Latency: min = a ms, max = b ms, mean = c ms, median = ..." (per query).
        latency=$(grep -E 'Latency: min = ' "$LOG.trt" | tail -n 1)
        trt_version=$(grep -m 1 -oE 'TensorRT v[0-9]+' "$LOG.trt" | sed 's/TensorRT //') || true
        rm -f "$LOG.trt"
        machine_line "tensorrt ${trt_version:-(version not printed by trtexec)}" | tee "$LOG.machine"
        [[ -n "$latency" ]] || fail "could not read the latency from trtexec's output"
        read -r tmin tmax tmean < <(echo "$latency" |
            sed -E 's/.*min = ([0-9.]+).*max = ([0-9.]+).*mean = ([0-9.]+).*/\1 \2 \3/')
        {
            echo "======= Perf Info ======="
            echo "Time(unit: ms):"
            echo "init  = n/a" # trtexec reports neither the engine load nor the first run alone
            echo "first = n/a"
            printf 'min   = %.3f\n' "$tmin"
            printf 'max   = %.3f\n' "$tmax"
            printf 'avg   = %.3f\n' "$tmean"
        } | cat "$LOG.machine" "$LOG.shape" - >"$LOG"
        rm -f "$LOG.shape" "$LOG.machine"
        tail -n 7 "$LOG"
        ;;
    *) fail "unknown backend $BACKEND; choose paddle, onnxruntime, lite, tensorrt or trtexec" ;;
esac

value() {
    grep -E "^$1 *= *[0-9a-z/.]+" "$LOG" | tail -n 1 | sed -E 's/.*= *([0-9a-z/.]+).*/\1/'
}
INIT=$(value init)
FIRST=$(value first)
MIN=$(value min)
MAX=$(value max)
AVG=$(value avg)
[[ "$AVG" =~ ^[0-9.]+$ ]] || fail "no Perf Info (init/first/min/max/avg) in the $BACKEND output"

if [[ -n "$OUT" ]]; then
    # The shape actually run, as the benchmark printed it.
    RUN_SHAPE=$(grep -E '^input_shape: ' "$LOG" | head -n 1 | awk '{print $2}')
    INPUT_SHAPE=${RUN_SHAPE:-${INPUT_SHAPE:-$(deploy_shape)}}
    if [[ ! -s "$OUT" ]]; then
        echo "# date model_dir backend threads input_shape warmup repeats init_ms first_ms min_ms max_ms avg_ms arch cores runtime" >>"$OUT"
    fi
    # runtime: the backend and its version from the machine line, e.g. onnxruntime-1.17.3.
    RUNTIME=$(grep -m 1 -E '^machine: ' "$LOG" | sed -E 's/.*; backend: ([^ ]+) ?([^ (]*).*/\1-\2/')
    RUNTIME=${RUNTIME%-}
    echo "$(date -u +%Y-%m-%dT%H:%M:%SZ) $MODEL_DIR $BACKEND $THREADS $INPUT_SHAPE $WARMUP $REPEATS $INIT $FIRST $MIN $MAX $AVG $(uname -m) $(cores) ${RUNTIME:-$BACKEND}" >>"$OUT"
    echo "appended to $OUT"
fi
