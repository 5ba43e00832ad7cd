"""A local web page to try exported models on images and videos, without PaddlePaddle.

python deploy/python/serve.py --model_dir output/export [--model_dir output/teacher] \
    --port 8000

Open http://127.0.0.1:8000/ in a browser: pick a model (or two, to compare them), upload an
image or pick a sample, see the labels, the overlay and the latency; upload a short video
to get it back as an overlay video. Needs the runtime's packages (``requirements-deploy.txt``)
and Flask. Listens on 127.0.0.1 unless ``--host`` says otherwise. The page, its API and its
limits: the ``seg_web`` package.
"""

from seg_runtime.cli import run
from seg_web.app import main

if __name__ == "__main__":
    run(main)
