"""LPCVC 2023 segmentation track dataset (disaster scenes seen from UAVs, 14 classes).

Layout of ``dataset_root`` as distributed by the challenge::

    IMG/train/train_0000.png   GT_Updated/train/train_0000.png   (1021 pairs)
    IMG/val/val_0001.png       GT/val/val_0001.png               (100 pairs)

Training uses the corrected ``GT_Updated`` labels; validation labels were only released as
``GT``. Images and labels share the file stem.
"""

from __future__ import annotations

import os
from typing import Any

from paddleseg.cvlibs import manager
from paddleseg.datasets import Dataset
from paddleseg.transforms import Compose
from seg_runtime.media import read_index_label

__all__ = ["LPCVC2023", "read_index_label"]

IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg")


class _IndexLabelCompose(Compose):
    """PaddleSeg's ``Compose`` reading label paths with :func:`read_index_label`.

    Stock ``Compose`` loads labels with ``np.asarray(Image.open(path))``, which keeps all
    channels of an RGB label and breaks every label transform downstream.
    """

    def __call__(self, data: dict[str, Any]) -> dict[str, Any]:
        if isinstance(data.get("label"), str):
            data["label"] = read_index_label(data["label"])
        return super().__call__(data)


@manager.DATASETS.add_component
class LPCVC2023(Dataset):
    """LPCVC 2023 segmentation dataset.

    Items are PaddleSeg data dicts: ``img`` float32 (3, H, W) after the transforms, ``label``
    uint8 (H, W) in train mode (transformed with the image) and (1, H0, W0) at the original
    size in val mode (PaddleSeg's evaluation maps predictions back to it).

    Args:
        transforms: PaddleSeg transforms applied to each item.
        dataset_root: Folder holding ``IMG``, ``GT_Updated`` and ``GT``.
        mode: ``"train"`` or ``"val"``.
        edge: Also return a binary edge map of the label in train mode.
    """

    NUM_CLASSES = 14
    IMG_CHANNELS = 3
    IGNORE_INDEX = 255
    CLASS_NAMES = (
        "background",
        "avalanche",
        "building_undamaged",
        "building_damaged",
        "cracks/fissure/subsidence",
        "debris/mud/rock flow",
        "fire/flare",
        "flood/water/river/sea",
        "ice_jam_flow",
        "lava_flow",
        "person",
        "pyroclastic_flow",
        "road/railway/bridge",
        "vehicle",
    )
    # mode -> (image folder, label folder) relative to dataset_root
    SPLITS = {
        "train": ("IMG/train", "GT_Updated/train"),
        "val": ("IMG/val", "GT/val"),
    }

    def __init__(
        self,
        transforms: list,
        dataset_root: str,
        mode: str = "train",
        edge: bool = False,
    ) -> None:
        # The base constructor needs list files; we list the folders instead and set the
        # attributes its __getitem__ and PaddleSeg's train/val loops read.
        mode = mode.lower()
        if mode not in self.SPLITS:
            raise ValueError(f"mode must be one of {sorted(self.SPLITS)}, got {mode!r}")
        if transforms is None:
            raise ValueError("transforms is required (use [] for no transform)")
        self.dataset_root = dataset_root
        self.mode = mode
        self.transforms = _IndexLabelCompose(transforms, img_channels=self.IMG_CHANNELS)
        self.num_classes = self.NUM_CLASSES
        self.ignore_index = self.IGNORE_INDEX
        self.img_channels = self.IMG_CHANNELS
        self.edge = edge
        self.file_list = self._list_pairs()

    def _list_pairs(self) -> list[list[str]]:
        img_rel, label_rel = self.SPLITS[self.mode]
        img_dir = os.path.join(self.dataset_root, img_rel)
        label_dir = os.path.join(self.dataset_root, label_rel)
        for folder in (img_dir, label_dir):
            if not os.path.isdir(folder):
                raise FileNotFoundError(
                    f"LPCVC2023 {self.mode} split needs the folder {folder}, which does not exist"
                )
        labels = {}
        for name in os.listdir(label_dir):
            stem, ext = os.path.splitext(name)
            if ext.lower() == ".png":
                labels[stem] = os.path.join(label_dir, name)
        pairs = []
        for name in sorted(os.listdir(img_dir)):
            stem, ext = os.path.splitext(name)
            if ext.lower() not in IMAGE_EXTENSIONS:
                continue
            if stem not in labels:
                raise FileNotFoundError(
                    f"image {os.path.join(img_dir, name)} has no label {stem}.png in {label_dir}"
                )
            pairs.append([os.path.join(img_dir, name), labels[stem]])
        if not pairs:
            raise FileNotFoundError(f"no {'/'.join(IMAGE_EXTENSIONS)} images in {img_dir}")
        return pairs
