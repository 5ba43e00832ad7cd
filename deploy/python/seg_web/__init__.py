"""A local web page over exported models: images, videos, and two models side by side.

Started by ``deploy/python/serve.py`` (or ``tools/serve.py``), flags in :func:`app.parse_args`.
A client of ``seg_runtime`` like any other: ``models`` (the model entries, image encoding),
``jobs`` (the video queue), ``app`` (the Flask application and its command line).
The page (``static/``: plain HTML, CSS and JavaScript, no build step, nothing fetched from
the network) uses this JSON API; errors answer ``{"error": message}`` with a 4xx/5xx status:

- ``GET /api/models``: the model picker's entries (name, input size, backend, classes), the
  upload limits, the bundled samples and whether post-processing can be toggled.
- ``POST /api/segment``, multipart: ``image`` (a file) or ``sample`` (a sample's name);
  ``model`` once, or twice to compare; ``alpha`` (overlay opacity, 0..1, default 0.5);
  ``postprocess`` (``1``: apply ``--postprocess``). Answers the decoded input and, per model,
  the labels (a class-id PNG), the colour-coded labels, the overlay, the legend (classes
  present and their pixel share) and the latency (median of ``--repeats`` runs); with two
  models their label agreement (share of equal labels at the input's size).
- ``POST /api/video``, multipart: ``video``, ``model``, ``alpha``, ``postprocess``. Starts a
  job (202); ``GET /api/video/JOB`` reports its progress, then its result: the mean latency
  per frame and the overlay, ``GET /api/video/JOB/overlay.webm`` (VP8, played by the
  page's ``<video>``) or, where this OpenCV cannot write VP8, one JPEG per frame at
  ``GET /api/video/JOB/frames/N.jpg``, played by the page's script.

Uploads are refused over their size limit (``--max_image_mb``, ``--max_video_mb``), images
over the pixel limit of :func:`~seg_runtime.media.read_image` (``$SEG_RUNTIME_MAX_PIXELS``)
from their header, before they are decoded. They are written only to a folder made by
:func:`tempfile.mkdtemp`, under a name chosen here, and deleted once read; a video's overlay
is kept there for playback until newer jobs replace it, and the folder goes when the server
stops.

Flask is the one package needed beyond the runtime's. Only the server imports this package,
so ``infer.py``, ``benchmark.py`` and a packaged solution run without it.
"""
