"""Local web demo of exported models: the Paddle-free ``deploy/python/serve.py``.

python tools/serve.py --model_dir output/demo/export [--model_dir EXPORT2 ...] --port 8000

Same flags as ``deploy/python/serve.py`` (``--help``); imports no Paddle package.
"""

from seg_runtime.cli import run
from seg_web.app import main

if __name__ == "__main__":
    run(main)
