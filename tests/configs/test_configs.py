"""Every shipped config in configs/{lpcvc,camvid,ade20k,fastsegformer} trains a few iterations.

Each config is loaded as a user would load it (``load_config`` with ``_base_`` inheritance),
pointed at a tiny fixture in the dataset's own folder layout (CamVid: the real copy), shrunk
(5 iterations, batch 2, 64x64 or 128x128 crops), trained with ``paddleseg_ext.core.train``
and evaluated once on one or two validation images. The test checks that the training loss
of every iteration and the trained weights are finite, and that the evaluation and the
checkpoint ran.
"""

from __future__ import annotations

import math
import re
from pathlib import Path

import cv2
import numpy as np
import pytest
from PIL import Image

from paddleseg_ext.config import build, load_config
from paddleseg_ext.core.checkpoint import save_weights
from paddleseg_ext.core.train import train

REPO_ROOT = Path(__file__).resolve().parents[2]
CONFIG_ROOT = REPO_ROOT / "configs"
# The CamVid copy sits next to the repository (configs/_base_/camvid.yml: ../shared/data/camvid).
CAMVID_ROOT = (REPO_ROOT / ".." / "shared" / "data" / "camvid").resolve()

EXPECTED = {
    "lpcvc": {
        "topformer_tiny_lpcvc_512.yml",
        "topformer_small_lpcvc_512.yml",
        "topformer_base_lpcvc_512.yml",
        "topformer_tiny_lpcvc_288.yml",
        "pp_mobileseg_tiny_lpcvc_512.yml",
        "pp_mobileseg_base_lpcvc_512.yml",
        "topformer_tiny_lpcvc_288_cwd.yml",
        "deeplabv3_r18_lpcvc_512.yml",
    },
    "camvid": {
        "fastscnn_camvid.yml",
        "topformer_tiny_camvid.yml",
        "topformer_base_camvid.yml",
        "pp_mobileseg_tiny_camvid.yml",
        "topformer_tiny_camvid_288.yml",
        "topformer_tiny_camvid_288_cwd.yml",
        "topformer_tiny_camvid_288_cgd.yml",
        "topformer_tiny_camvid_288_pkl_nfd.yml",
    },
    "ade20k": {
        "topformer_tiny_ade20k_512.yml",
        "topformer_small_ade20k_512.yml",
        "topformer_base_ade20k_512.yml",
        "pp_mobileseg_tiny_ade20k_512.yml",
        "pp_mobileseg_base_ade20k_512.yml",
    },
    "fastsegformer": {
        "fastsegformer_e_camvid.yml",
        "fastsegformer_p_camvid.yml",
        "fastsegformer_e_camvid_256x192.yml",
        "fastsegformer_e_camvid_256x192_pkl_nfd.yml",
        "fastsegformer_e_lpcvc.yml",
        "fastsegformer_p_lpcvc.yml",
    },
}
CONFIGS = sorted(p for folder in EXPECTED for p in (CONFIG_ROOT / folder).glob("*.yml"))
# Several seconds per iteration on a 2-core CPU: the larger models, and every ADE20K config
# (150-class loss, see CROP).
SLOW = {
    "topformer_tiny_ade20k_512.yml",
    "topformer_small_ade20k_512.yml",
    "pp_mobileseg_tiny_ade20k_512.yml",
    "topformer_base_lpcvc_512.yml",
    "pp_mobileseg_base_lpcvc_512.yml",
    "topformer_base_ade20k_512.yml",
    "pp_mobileseg_base_ade20k_512.yml",
    "topformer_base_camvid.yml",
    "topformer_tiny_lpcvc_288_cwd.yml",
    "deeplabv3_r18_lpcvc_512.yml",
}

ITERS = 5
BATCH_SIZE = 2
# ADE20K trains on 64x64 crops: with 150 classes, Paddle 3.3.1's CPU log_softmax over the
# channel axis (in the loss) takes seconds per 128x128 batch.
CROP = {"lpcvc": [128, 128], "camvid": [128, 128], "ade20k": [64, 64]}
TRAIN_LOG = re.compile(r"\[TRAIN\].*?iter: (\d+)/\d+, loss: (\S+),")


# ---------------------------------------------------------------------------------- fixtures


def _blocky_label(rng: np.random.Generator, size: tuple[int, int], values: range) -> np.ndarray:
    """A label of random rectangles (class regions larger than a pixel, as in real data)."""
    h, w = size
    label = np.full((h, w), rng.choice(values), dtype=np.uint8)
    for _ in range(6):
        y, x = rng.integers(0, h - 8), rng.integers(0, w - 8)
        dy, dx = rng.integers(8, h // 2), rng.integers(8, w // 2)
        label[y : y + dy, x : x + dx] = rng.choice(values)
    return label


def _write_pair(
    rng: np.random.Generator, img_path: Path, label_path: Path, size, values: range
) -> None:
    img_path.parent.mkdir(parents=True, exist_ok=True)
    label_path.parent.mkdir(parents=True, exist_ok=True)
    img = rng.integers(0, 256, (*size, 3), dtype=np.uint8)
    assert cv2.imwrite(str(img_path), img)
    Image.fromarray(_blocky_label(rng, size, values), mode="L").save(label_path)


@pytest.fixture(scope="module")
def lpcvc_root(tmp_path_factory) -> Path:
    """4 train / 1 val pairs in the challenge layout (IMG/, GT_Updated/train, GT/val)."""
    root = tmp_path_factory.mktemp("LPCVC2023")
    rng = np.random.default_rng(0)
    for i in range(4):
        name = f"train_{i:04d}.png"
        _write_pair(
            rng, root / "IMG/train" / name, root / "GT_Updated/train" / name, (160, 160), range(14)
        )
    _write_pair(
        rng, root / "IMG/val/val_0001.png", root / "GT/val/val_0001.png", (160, 160), range(14)
    )
    return root


@pytest.fixture(scope="module")
def ade20k_root(tmp_path_factory) -> Path:
    """4 train / 1 val pairs in ADEChallengeData2016's layout (jpg images, png labels 0..150)."""
    root = tmp_path_factory.mktemp("ADEChallengeData2016")
    rng = np.random.default_rng(1)
    for split, count in (("training", 4), ("validation", 1)):
        for i in range(count):
            stem = f"ADE_{'train' if split == 'training' else 'val'}_{i + 1:08d}"
            _write_pair(
                rng,
                root / "images" / split / f"{stem}.jpg",
                root / "annotations" / split / f"{stem}.png",
                (120, 160),
                range(151),
            )
    return root


@pytest.fixture(scope="module")
def camvid_val_list(tmp_path_factory) -> Path:
    """The first two lines of CamVid's val.txt (paths stay relative to the CamVid folder)."""
    if not (CAMVID_ROOT / "val.txt").is_file():
        pytest.skip("needs ../shared/data/camvid")
    path = tmp_path_factory.mktemp("camvid") / "val2.txt"
    lines = (CAMVID_ROOT / "val.txt").read_text().splitlines()[:2]
    path.write_text("\n".join(lines) + "\n")
    return path


def _dataset(config: Path) -> str:
    """The dataset a config trains on: its folder's, or (configs/fastsegformer) its name's."""
    if config.parent.name in CROP:
        return config.parent.name
    return next(name for name in CROP if name in config.stem)


def _data_opts(dataset: str, request: pytest.FixtureRequest) -> list[str]:
    """--opts that point a config's datasets at the fixture (or the CamVid copy)."""
    if dataset == "camvid":
        if not (CAMVID_ROOT / "train.txt").is_file():
            pytest.skip("needs ../shared/data/camvid")
        val_list = request.getfixturevalue("camvid_val_list")
        return [
            f"train_dataset.dataset_root={CAMVID_ROOT}",
            f"train_dataset.train_path={CAMVID_ROOT / 'train.txt'}",
            f"val_dataset.dataset_root={CAMVID_ROOT}",
            f"val_dataset.val_path={val_list}",
        ]
    root = request.getfixturevalue(f"{dataset}_root")
    return [f"train_dataset.dataset_root={root}", f"val_dataset.dataset_root={root}"]


def _random_teacher(config: Path, tmp_path: Path) -> list[str]:
    """--opts that point a distillation recipe's teacher at random weights saved under
    ``tmp_path`` (none for other configs); training checks that the teacher's files exist."""
    section = load_config(str(config), "model").dic.get("distill")
    if section is None:
        return []
    teacher = build(load_config(section["teacher"]["config"], "model")).model
    save_weights(str(tmp_path / "teacher"), teacher)
    return [f"distill.teacher.model_path={tmp_path / 'teacher' / 'model.pdparams'}"]


# ------------------------------------------------------------------------------------- tests


def test_expected_configs_exist() -> None:
    found: dict[str, set[str]] = {}
    for path in CONFIGS:
        found.setdefault(path.parent.name, set()).add(path.name)
    assert CONFIGS, f"no config found under {CONFIG_ROOT}"
    for folder, names in EXPECTED.items():
        assert names <= found.get(folder, set()), f"configs/{folder} lacks {names - found[folder]}"


@pytest.mark.parametrize(
    "config",
    [
        pytest.param(
            p, id=f"{p.parent.name}/{p.stem}", marks=pytest.mark.slow if p.name in SLOW else ()
        )
        for p in CONFIGS
    ],
)
def test_config_trains(
    config: Path, tmp_path: Path, request: pytest.FixtureRequest, capsys
) -> None:
    dataset = _dataset(config)
    opts = _data_opts(dataset, request) + _random_teacher(config, tmp_path)
    cfg = load_config(str(config), iters=ITERS, batch_size=BATCH_SIZE, opts=opts)
    crops = [t for t in cfg.dic["train_dataset"]["transforms"] if "crop_size" in t]
    assert crops, "the training transforms should crop to a fixed size"
    for transform in crops:
        transform["crop_size"] = CROP[dataset]
    expected_classes = {"lpcvc": 14, "camvid": 11, "ade20k": 150}[dataset]
    assert cfg.dic["model"]["num_classes"] == expected_classes

    model = train(
        cfg, save_dir=str(tmp_path), log_iters=1, save_interval=ITERS, do_eval=True, seed=0
    )

    logged = [(int(it), float(loss)) for it, loss in TRAIN_LOG.findall(capsys.readouterr().out)]
    assert [it for it, _ in logged] == list(range(1, ITERS + 1))
    assert all(math.isfinite(loss) and loss > 0 for _, loss in logged), logged
    for name, value in model.state_dict().items():
        assert np.isfinite(value.numpy()).all(), f"{name} is not finite after training"
    assert (tmp_path / f"iter_{ITERS}").is_dir()
    assert (tmp_path / "best_model").is_dir()  # written by the evaluation at iteration 5


@pytest.mark.slow
@pytest.mark.parametrize(
    "name", ["topformer_tiny_lpcvc_288_cwd.yml", "deeplabv3_r18_lpcvc_512.yml"]
)
def test_lpcvc_recipe_trains_exports_packages_and_scores(name, tmp_path, request, capsys):
    """The LPCVC loop on the fixture: train, export ONNX, package solution.pyz, score it."""
    import subprocess  # noqa: PLC0415
    import sys  # noqa: PLC0415

    from seg_runtime.solution import build_solution  # noqa: PLC0415

    from paddleseg_ext.export import export  # noqa: PLC0415

    config = CONFIG_ROOT / "lpcvc" / name
    opts = _data_opts("lpcvc", request) + _random_teacher(config, tmp_path)
    cfg = load_config(str(config), iters=2, batch_size=BATCH_SIZE, opts=opts)
    for transform in cfg.dic["train_dataset"]["transforms"]:
        if "crop_size" in transform:
            transform["crop_size"] = CROP["lpcvc"]
    train(cfg, save_dir=str(tmp_path / "train"), save_interval=2, log_iters=1)
    export(cfg, str(tmp_path / "export"), model_path=str(tmp_path / "train/iter_2"),
           input_shape=[1, 3, 160, 160], formats="onnx", verify=False)  # fmt: skip
    pyz = build_solution(str(tmp_path / "export"), str(tmp_path / "solution.pyz"))
    root = request.getfixturevalue("lpcvc_root")
    run = subprocess.run([sys.executable, pyz, "-i", str(root / "IMG/val"), "-o",
                          str(tmp_path / "pred")], capture_output=True, text=True,
                         timeout=300)  # fmt: skip
    assert run.returncode == 0, run.stderr[-2000:]
    assert re.fullmatch(r"[0-9]+\.[0-9]+", run.stdout.strip())
    score = subprocess.run(
        [sys.executable, str(REPO_ROOT / "tools" / "lpcvc_score.py"), "--pred_dir",
         str(tmp_path / "pred"), "--gt_dir", str(root / "GT/val"), "--time_s", run.stdout.strip()],
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert score.returncode == 0, score.stderr
    dice = float(re.search(r"mean Dice: ([0-9.]+)", score.stdout).group(1))
    assert 0.0 <= dice <= 1.0 and "images: 1" in score.stdout
