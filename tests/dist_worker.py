"""Runs tools/train.py's main in one data-parallel rank, then saves that rank's weights.

Used by test_distributed.py under ``python -m paddle.distributed.launch``:
    dist_worker.py OUT_DIR <tools/train.py arguments...>
"""

import os
import sys

import paddle

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from helpers import load_tool  # noqa: E402

if __name__ == "__main__":
    out_dir, argv = sys.argv[1], sys.argv[2:]
    model = load_tool("train").main(argv)
    rank = paddle.distributed.get_rank()
    paddle.save(model.state_dict(), os.path.join(out_dir, f"rank{rank}.pdparams"))
