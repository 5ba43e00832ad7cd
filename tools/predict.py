"""Segment images: raw label, pseudo-colour and overlay PNGs per image.

python tools/predict.py --config X.yml --model_path P --image_path FILE_OR_DIR --save_dir D

Images are read as by ``deploy/python/infer.py`` (``seg_runtime.read_image``). A single image
that cannot be read: one ``error: PATH: reason`` line, exit status 2. In a folder, an
unreadable image is skipped with one ``skipped: PATH: reason`` line on stderr, the others are
segmented, and the run ends with an ``error:`` line counting the skipped images and exit
status 2.
"""

from __future__ import annotations

import argparse
import os

from seg_runtime import InputError, SkipReport, list_images

import paddleseg_ext  # noqa: F401
from paddleseg_ext.cli import add_config_args, add_postprocess_arg, run, setup_device
from paddleseg_ext.config import ConfigError, build, build_postprocess, dataset_info, load_config
from paddleseg_ext.core import predict
from paddleseg_ext.core.checkpoint import load_weights


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_config_args(parser)
    parser.add_argument("--model_path", required=True, help="model.pdparams or its folder")
    parser.add_argument("--image_path", required=True, help="An image or a folder of images")
    parser.add_argument("--save_dir", default="output/result", help="Where PNGs are written")
    add_postprocess_arg(parser)
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> list[str]:
    args = parse_args(argv)
    setup_device(args.device)
    cfg = load_config(args.config, "predict", opts=args.opts)
    images = list_images(args.image_path)
    postprocess = build_postprocess(cfg, args.postprocess)
    builder = build(cfg)
    model = builder.model
    load_weights(model, args.model_path)
    num_classes, _, _ = dataset_info(cfg, "val")
    # Imported after paddleseg_ext, which silences Paddle's import-time ccache warning.
    from paddleseg.transforms import Compose  # noqa: PLC0415

    transforms = Compose(builder.val_transforms)
    skipped = SkipReport()
    written = predict(
        model,
        images,
        transforms,
        args.save_dir,
        num_classes,
        postprocess=postprocess,
        on_error=skipped if os.path.isdir(args.image_path) else None,
    )
    print(
        f"Wrote {len(written)} predictions under {args.save_dir} (labels/, pseudo_color/, overlay/)"
    )
    if skipped.count:
        raise InputError(skipped.summary(len(written)))
    return written


if __name__ == "__main__":
    run(main, errors=(ConfigError, FileNotFoundError, InputError))
