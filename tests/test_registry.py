"""Importing paddleseg_ext adds components without replacing any stock PaddleSeg one."""

import json
import subprocess
import sys

from paddleseg.cvlibs import manager

import paddleseg_ext  # noqa: F401

MANAGERS = ("MODELS", "BACKBONES", "DATASETS", "TRANSFORMS", "LOSSES", "OPTIMIZERS")

# Runs in a fresh interpreter so the snapshot cannot include our components.
STOCK_SNAPSHOT = """
import json
from paddleseg.cvlibs import manager
print(json.dumps({
    m: {name: f"{cls.__module__}.{cls.__qualname__}"
        for name, cls in getattr(manager, m).components_dict.items()}
    for m in MANAGERS
}))
""".replace("MANAGERS", repr(MANAGERS))


def stock_components() -> dict:
    out = subprocess.run(
        [sys.executable, "-c", STOCK_SNAPSHOT], capture_output=True, text=True, check=True
    )
    return json.loads(out.stdout.strip().splitlines()[-1])


def test_stock_names_still_map_to_stock_classes():
    stock = stock_components()
    assert len(stock["MODELS"]) > 20, "snapshot of PaddleSeg's registry looks empty"
    for mgr in MANAGERS:
        current = getattr(manager, mgr).components_dict
        for name, qualname in stock[mgr].items():
            cls = current[name]
            assert f"{cls.__module__}.{cls.__qualname__}" == qualname, f"{mgr}.{name} replaced"


def test_our_components_are_registered_under_new_names():
    stock = stock_components()
    ours = {
        (mgr, name)
        for mgr in MANAGERS
        for name, cls in getattr(manager, mgr).components_dict.items()
        if cls.__module__.startswith("paddleseg_ext")
    }
    expected = {
        ("MODELS", "TopFormerSeg"),
        ("MODELS", "MobileSegExt"),
        ("MODELS", "VIMWrapper"),
        ("BACKBONES", "TopFormerBackbone"),
        ("BACKBONES", "StrideFormerBackbone"),
        ("MODELS", "FastSegFormer"),
        ("BACKBONES", "PoolFormerBackbone"),
        ("BACKBONES", "EfficientFormerV2Backbone"),
        ("DATASETS", "LPCVC2023"),
        ("DATASETS", "SyntheticShapes"),
        ("LOSSES", "SegCrossEntropyLoss"),
    }
    assert expected <= ours
    assert not {name for mgr, name in ours if name in stock[mgr]}
