"""The main demo job: train, evaluate, predict and export on the embedded shapes data."""

from __future__ import annotations

import json
import os
import time

from paddleseg.transforms import Compose
from paddleseg.utils import logger

from .config import build, dataset_info, load_config
from .core import evaluate, predict, train
from .export import export

DEFAULT_CONFIG = os.path.join(
    os.path.dirname(os.path.dirname(os.path.abspath(__file__))),
    "configs",
    "demo",
    "topformer_tiny_shapes.yml",
)
TARGET_MIOU = 0.70


def run_demo(
    config: str = DEFAULT_CONFIG,
    save_dir: str = "output/demo",
    *,
    iters: int | None = None,
    opts: list[str] | None = None,
    num_predictions: int = 4,
    seed: int = 0,
) -> dict:
    """Trains the demo config, evaluates, predicts and exports it; returns the output paths.

    The export (Paddle inference model + ONNX, argmax output) is checked against the
    trained model with Paddle Inference and onnxruntime.

    Args:
        config: Demo config (default: TopFormer-Tiny on the synthetic shapes dataset).
        save_dir: Root of everything written.
        iters: Override of the config's iterations.
        opts: Config overrides (``key=value``).
        num_predictions: Val images segmented to PNGs.
        seed: Training seed.
    """
    start = time.time()
    cfg = load_config(config, "train", iters=iters, opts=opts)
    train_dir = os.path.join(save_dir, "train")
    model = train(
        cfg,
        save_dir=train_dir,
        save_interval=cfg.iters,
        log_iters=20,
        keep_checkpoint_max=1,
        seed=seed,
    )
    builder = build(cfg)
    val_set = builder.val_dataset
    num_classes, ignore_index, class_names = dataset_info(cfg, "val")
    metrics = evaluate(
        model, val_set, num_classes, ignore_index=ignore_index, class_names=class_names
    )
    metrics_path = os.path.join(save_dir, "metrics.json")
    with open(metrics_path, "w") as f:
        json.dump(metrics | {"class_names": class_names}, f, indent=2)

    images = [path for path, _ in val_set.file_list[:num_predictions]]
    pred_dir = os.path.join(save_dir, "predictions")
    predict(model, images, Compose(builder.val_transforms), pred_dir, num_classes)

    checkpoint = os.path.join(train_dir, f"iter_{cfg.iters}", "model.pdparams")
    size = cfg.dic["val_dataset"].get("image_size", 128)
    exported = export(
        load_config(config, "val", opts=opts),
        os.path.join(save_dir, "export"),
        model_path=checkpoint,
        input_shape=[1, 3, size, size],
        output_op="argmax",
    )
    if not exported.passed:
        raise RuntimeError(f"exported model disagrees with the trained one: {exported.checks}")

    outputs = {
        "checkpoint": checkpoint,
        "metrics": metrics_path,
        "predictions": pred_dir,
        "export": exported.save_dir,
        "mIoU": metrics["mIoU"],
        "seconds": time.time() - start,
    }
    verdict = "met" if metrics["mIoU"] >= TARGET_MIOU else "MISSED"
    logger.info(
        f"Demo finished in {outputs['seconds'] / 60:.1f} min. "
        f"val mIoU = {metrics['mIoU']:.4f} (target >= {TARGET_MIOU:.2f}: {verdict})"
    )
    for key in ("checkpoint", "metrics", "predictions", "export"):
        logger.info(f"  {key:12s} {outputs[key]}")
    return outputs
