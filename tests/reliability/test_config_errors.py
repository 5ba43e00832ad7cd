"""Broken configs fail before anything is built, with one line that names the key path.

Every case goes through ``load_config`` (the message) and through the tool's command line
(exit status 2, a single ``error:`` line on stderr, no traceback); a few also run
``tools/train.py`` as a separate process.
"""

from __future__ import annotations

import copy
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from helpers import REPO, TINY_CONFIG, load_tool
from paddleseg.cvlibs import Config, manager
from paddleseg.cvlibs.config_checker import ConfigChecker

from paddleseg_ext.cli import run
from paddleseg_ext.config import ConfigError, load_config
from paddleseg_ext.config_check import validate

DELETE = object()  # a change value that removes the key


def tiny(*changes: tuple[str, object]) -> dict:
    """``TINY_CONFIG`` with ``(dotted.key.path, value)`` changes; list items by index."""
    config = copy.deepcopy(TINY_CONFIG)
    for path, value in changes:
        *parents, last = path.split(".")
        node = config
        for key in parents:
            node = node[int(key)] if isinstance(node, list) else node[key]
        if isinstance(node, list):
            node[int(last)] = value
        elif value is DELETE:
            del node[last]
        else:
            node[last] = value
    return config


def shipped(name: str, **changes: object) -> dict:
    """A config that inherits ``configs/<name>`` (``_base_``) and overrides ``changes``."""
    return {"_base_": str(REPO / "configs" / name), **changes}


def distilling(loss_type: str) -> dict:
    """``TINY_CONFIG`` distilling logits with one ``loss_type`` term from a missing teacher."""
    term = {"type": loss_type, "student": "logits", "teacher": "logits"}
    teacher = {"config": "/no/teacher.yml", "model_path": "/no/t"}
    return {**tiny(), "distill": {"teacher": teacher, "losses": [term]}}


VIM_STOCK = {
    "type": "VIMWrapper",
    "num_classes": 6,
    "model": {"type": "TopFormer", "backbone": {"type": "TopTransformer_Tiny"}},
}
MIXED = {"type": "MixedLoss", "losses": [{"type": "DiceLoss"}, {"type": "FocalLoss"}]}

# (config, task, the start of the expected message): one line that begins with the key path.
CASES = [
    # Unknown type names, with the closest registered ones.
    pytest.param(
        tiny(("model.type", "TopFormerSed")),
        "train",
        "model.type: unknown model 'TopFormerSed'; closest: TopFormerSeg",
        id="unknown-model",
    ),
    pytest.param(
        tiny(("model.backbone.type", "TopFormerBackbon")),
        "train",
        "model.backbone.type: unknown backbone 'TopFormerBackbon'; closest: TopFormerBackbone",
        id="unknown-backbone",
    ),
    pytest.param(
        tiny(("model.backbone.type", "TopFormerSeg")),
        "train",
        "model.backbone.type: 'TopFormerSeg' is a registered model, not a backbone; closest: ",
        id="model-as-backbone",
    ),
    pytest.param(
        tiny(("model.backbone.type", "Foo")),
        "train",
        f"model.backbone.type: unknown backbone 'Foo'; none of the "
        f"{len(manager.BACKBONES.components_dict)} registered is close "
        "(see paddleseg.cvlibs.manager.BACKBONES)",
        id="unknown-backbone-nothing-close",
    ),
    pytest.param(
        tiny(("train_dataset.type", "SyntheticShape")),
        "train",
        "train_dataset.type: unknown dataset 'SyntheticShape'; closest: SyntheticShapes",
        id="unknown-dataset",
    ),
    pytest.param(
        tiny(("train_dataset.transforms.0.type", "Flip")),
        "train",
        "train_dataset.transforms.0.type: unknown transform 'Flip'; "
        "closest: RandomHorizontalFlip, RandomVerticalFlip",
        id="unknown-transform",
    ),
    pytest.param(
        tiny(("loss.types.0.type", "SegCrossEntropy")),
        "train",
        "loss.types.0.type: unknown loss 'SegCrossEntropy'; closest: SegCrossEntropyLoss",
        id="unknown-loss",
    ),
    pytest.param(
        tiny(("loss.types", [{**MIXED, "losses": [{"type": "FocalLos"}], "coef": [1]}])),
        "train",
        "loss.types.0.losses.0.type: unknown loss 'FocalLos'; closest: FocalLoss",
        id="unknown-loss-inside-mixed-loss",
    ),
    pytest.param(
        tiny(("optimizer.type", "AdamX")),
        "train",
        "optimizer.type: unknown optimizer 'AdamX'; closest: Adam, AdamW",
        id="unknown-optimizer",
    ),
    pytest.param(
        tiny(("lr_scheduler.type", "PolynomialDecy")),
        "train",
        "lr_scheduler.type: unknown lr_scheduler 'PolynomialDecy'; closest: PolynomialDecay",
        id="unknown-lr-scheduler",
    ),
    pytest.param(
        tiny(("model.type", DELETE)),
        "train",
        "model.type: missing (the model name)",
        id="model-without-type",
    ),
    # Unexpected keys, checked against the component's signature.
    pytest.param(
        tiny(("model.backbone.dept", 3)),
        "train",
        "model.backbone.dept: unexpected key for TopFormerBackbone; closest: depth",
        id="unexpected-backbone-key",
    ),
    pytest.param(
        tiny(("model.num_class", 6)),
        "train",
        "model.num_class: unexpected key for TopFormerSeg; closest: num_classes",
        id="unexpected-model-key",
    ),
    pytest.param(
        tiny(("optimizer.weight_decy", 0.01)),
        "train",
        "optimizer.weight_decy: unexpected key for AdamW; closest: weight_decay",
        id="unexpected-optimizer-key",
    ),
    pytest.param(
        tiny(("lr_scheduler.type", "CosineAnnealingDecay")),
        "train",
        "lr_scheduler.end_lr: unexpected key for CosineAnnealingDecay; accepted: learning_rate, "
        "T_max, eta_min",
        id="unexpected-lr-scheduler-key",
    ),
    pytest.param(
        tiny(("loss.typs", [])),
        "train",
        "loss.typs: unexpected key; closest: types",
        id="unexpected-loss-key",
    ),
    # Missing required keys (those the builder fills in are not required).
    pytest.param(
        tiny(("train_dataset.transforms", DELETE)),
        "train",
        "train_dataset.transforms: missing, required by SyntheticShapes",
        id="missing-dataset-transforms",
    ),
    pytest.param(
        tiny(("model", VIM_STOCK)),
        "train",
        "model.model.num_classes: missing, required by TopFormer",
        id="missing-num-classes-of-wrapped-model",
    ),
    pytest.param(
        tiny(("loss.types", [{"type": "MultiClassFocalLoss"}])),
        "train",
        "loss.types.0.num_class: missing, required by MultiClassFocalLoss",
        id="missing-loss-argument",
    ),
    pytest.param(
        tiny(("lr_scheduler.warmup_iters", 10)),
        "train",
        "lr_scheduler.warmup_start_lr: missing, required with warmup_iters",
        id="warmup-without-start-lr",
    ),
    # Values of the wrong type.
    pytest.param(
        tiny(("model.backbone.depth", "three")),
        "train",
        "model.backbone.depth: expected int, got 'three'",
        id="backbone-depth-not-int",
    ),
    pytest.param(
        tiny(("model.upsample", "nearest")),
        "train",
        "model.upsample: expected one of 'bilinear', 'vim', got 'nearest'",
        id="model-literal",
    ),
    pytest.param(
        tiny(("model.backbone", "TopFormerBackbone")),
        "train",
        "model.backbone: expected a {type: ...} backbone mapping, got 'TopFormerBackbone'",
        id="backbone-not-a-mapping",
    ),
    pytest.param(
        tiny(("model.num_classes", 5)),
        "train",
        "model.num_classes: 5 does not match the 6 classes of train_dataset type SyntheticShapes",
        id="num-classes-disagree-with-dataset",
    ),
    pytest.param(
        tiny(("train_dataset.num_train", "8")),
        "train",
        "train_dataset.num_train: expected int, got '8'",
        id="dataset-int-as-text",
    ),
    pytest.param(
        tiny(("val_dataset.transforms.0.mean", 0.5)),
        "train",
        "val_dataset.transforms.0.mean: expected list, got 0.5",
        id="transform-list-as-number",
    ),
    pytest.param(
        tiny(("lr_scheduler.learning_rate", "1e-3")),
        "train",
        "lr_scheduler.learning_rate: expected float, got '1e-3' (YAML reads 1e-3 as text; "
        "write 1.0e-3)",
        id="yaml-exponent-without-point",
    ),
    pytest.param(
        tiny(("optimizer.weight_decay", 0)),
        "train",
        "optimizer.weight_decay: expected float, got 0 (write 0.0)",
        id="optimizer-weight-decay-int",
    ),
    # Top-level scalars, loss and transform lists.
    pytest.param(
        tiny(("batch_size", -1)),
        "train",
        "batch_size: expected a positive int, got -1",
        id="batch-size-negative",
    ),
    pytest.param(
        tiny(("batch_size", 0)),
        "train",
        "batch_size: expected a positive int, got 0",
        id="batch-size-zero",
    ),
    pytest.param(
        tiny(("iters", "ten")),
        "train",
        "iters: expected a positive int, got 'ten'",
        id="iters-text",
    ),
    pytest.param(
        tiny(
            ("loss.types", [{"type": "SegCrossEntropyLoss"}, {"type": "DiceLoss"}]),
            ("loss.coef", [1, 0.4, 0.2]),
        ),  # fmt: skip
        "train",
        "loss.coef: 3 coefficient(s) for 2 types; give one per entry of loss.types",
        id="loss-coef-length",
    ),
    pytest.param(
        tiny(("loss.types", [{**MIXED, "coef": [1]}])),
        "train",
        "loss.types.0.coef: 1 coefficient(s) for 2 losses",
        id="mixed-loss-coef-length",
    ),
    pytest.param(
        tiny(("loss.coef", ["a"])),
        "train",
        "loss.coef.0: expected float, got 'a'",
        id="loss-coef-not-numbers",
    ),
    pytest.param(
        tiny(("loss.types", {"type": "SegCrossEntropyLoss"})),
        "train",
        "loss.types: expected a non-empty list of {type: ...} loss mappings, "
        "got {'type': 'SegCrossEntropyLoss'}",
        id="loss-types-not-a-list",
    ),
    pytest.param(
        tiny(("val_dataset.transforms", ["Normalize"])),
        "train",
        "val_dataset.transforms.0: expected a {type: ...} transform mapping, got 'Normalize'",
        id="transform-not-a-mapping",
    ),
    # Evaluation checks the model and the evaluation dataset.
    pytest.param(
        tiny(("val_dataset.transforms", {"type": "Normalize"})),
        "val",
        "val_dataset.transforms: expected a list of {type: ...} transform mappings",
        id="val-transforms-not-a-list",
    ),
    pytest.param(
        tiny(("model.backbone.preset", 3)),
        "val",
        "model.backbone.preset: expected str, got 3",
        id="val-backbone-preset-number",
    ),
    # Top-level sections: a misspelled one would be ignored (no distillation, no
    # post-processing), so it fails with the closest known name.
    pytest.param(
        {**tiny(), "distil": {"teacher": {}, "losses": []}},
        "train",
        "distil: unknown top-level section; closest: distill",
        id="misspelled-distill-section",
    ),
    pytest.param(
        {**tiny(), "post_process": {"factor": 0.5}},
        "val",
        "post_process: unknown top-level section; closest: postprocess",
        id="misspelled-postprocess-section",
    ),
    pytest.param(
        {**tiny(), "lr_schedular": {"type": "PolynomialDecay"}},
        "train",
        "lr_schedular: unknown top-level section; closest: lr_scheduler",
        id="misspelled-lr-scheduler-section",
    ),
    pytest.param(
        {**tiny(), "postprocess": {"factr": 0.5}},
        "val",
        "postprocess.factr: unexpected key; closest: factor",
        id="postprocess-key",
    ),
    pytest.param(
        distilling("CWD"),
        "train",
        "distill.teacher.config: file not found: /no/teacher.yml",
        id="distill-teacher-missing-before-building",
    ),
    pytest.param(
        distilling("CWDD"),
        "train",
        "distill.losses.0.type: unknown loss 'CWDD'",
        id="distill-loss-type-before-the-files",
    ),
    # Shipped configs, broken by a child config; their datasets need not exist.
    pytest.param(
        shipped(
            "camvid/topformer_tiny_camvid.yml",
            model={"backbone": {"type": "TopFormerBackbon"}},
        ),
        "train",
        "model.backbone.type: unknown backbone 'TopFormerBackbon'; closest: TopFormerBackbone",
        id="shipped-camvid-backbone-name",
    ),
    pytest.param(
        shipped("lpcvc/topformer_tiny_lpcvc_288.yml", model={"backbone": {"depth": "three"}}),
        "train",
        "model.backbone.depth: expected int, got 'three'",
        id="shipped-lpcvc-depth",
    ),
    pytest.param(
        shipped(
            "lpcvc/topformer_tiny_lpcvc_288_cwd.yml",
            loss={"types": [{**MIXED, "coef": [1.0, 0.3], "losses": [{"type": "DiceLos"}]}]},
        ),
        "train",
        "loss.types.0.losses.0.type: unknown loss 'DiceLos'; closest: DiceLoss",
        id="shipped-distill-mixed-loss",
    ),
]


def write(path: Path, config: dict) -> Path:
    path.write_text(yaml.safe_dump(config))
    return path


@pytest.fixture(scope="module")
def tools():
    """The train and val tools, whose building steps fail the test if they are reached."""

    def must_not_build(*args, **kwargs):
        raise AssertionError("a broken config reached the building step")

    loaded = {"train": load_tool("train"), "val": load_tool("val")}
    loaded["train"].train = must_not_build
    loaded["val"].build = must_not_build
    return loaded


@pytest.mark.parametrize(("config", "task", "message"), CASES)
def test_broken_config_fails_in_one_line_before_building(
    config, task, message, tmp_path, monkeypatch, capsys, tools
):
    path = write(tmp_path / "bad.yml", config)
    with pytest.raises(ConfigError) as err:
        load_config(str(path), task)
    assert str(err.value).startswith(message)  # the key path first
    assert "\n" not in str(err.value)

    # The command line: exit status 2 and the same single line, nothing else.
    argv = [f"{task}.py", "--config", str(path), "--device", "cpu"]
    if task == "val":
        argv += ["--model_path", str(tmp_path / "never_read.pdparams")]
    monkeypatch.setattr(sys, "argv", argv)
    with pytest.raises(SystemExit) as exit_info:
        run(tools[task].main)
    assert exit_info.value.code == 2
    assert capsys.readouterr().err == f"error: {err.value}\n"


def test_yaml_syntax_error_names_the_file_and_line(tmp_path):
    path = tmp_path / "bad.yml"
    path.write_text("model:\n  type: [TopFormerSeg\n")
    with pytest.raises(ConfigError) as err:
        load_config(str(path))
    assert str(err.value).startswith(f'{path}: while parsing a flow sequence in "{path}"')
    assert "line 2" in str(err.value) and "\n" not in str(err.value)


def test_override_from_the_command_line_is_checked(tiny_config):
    with pytest.raises(ConfigError, match=r"^model\.backbone\.depth: expected int, got 'three'$"):
        load_config(str(tiny_config), opts=["model.backbone.depth=three"])


def test_config_errors_come_before_missing_data_and_weights(tmp_path):
    # The dataset root and the pretrained weights are missing too; the typo comes first.
    lpcvc = {"type": "LPCVC2023", "dataset_root": str(tmp_path / "no_data"), "transforms": []}
    config = tiny(
        ("train_dataset", lpcvc),
        ("model.num_classes", 14),
        ("model.pretrained", str(tmp_path / "no_weights.pdparams")),
        ("model.backbone.dept", 3),
    )
    path = write(tmp_path / "bad.yml", config)
    with pytest.raises(ConfigError, match=r"^model\.backbone\.dept: unexpected key"):
        load_config(str(path))
    # Once the typo is fixed, the missing data is reported, still before anything is built.
    del config["model"]["backbone"]["dept"]
    write(path, config)
    with pytest.raises(ConfigError, match=r"^train_dataset\.dataset_root does not exist"):
        load_config(str(path))


def test_paddleseg_sanity_rules_still_apply_in_one_line(tmp_path):
    # Passed by the key checks, caught by PaddleSeg's own rule, without its multi-line text.
    config = tiny(("train_dataset.type", "Dataset"), ("train_dataset.num_classes", 6))
    config["train_dataset"] |= {"dataset_root": str(tmp_path), "train_path": str(tmp_path)}
    for key in ("num_train", "num_val", "image_size"):
        del config["train_dataset"][key]
    path = write(tmp_path / "mixed.yml", config)
    with pytest.raises(ConfigError) as err:
        load_config(str(path), "val")
    assert str(err.value) == f"{path}: The type of train_dataset and val_dataset must be the same"


@pytest.mark.parametrize("task", ["train", "val", "predict", "model"])
def test_tiny_config_passes(tiny_config, task):
    cfg = load_config(str(tiny_config), task)
    assert cfg.dic["model"]["backbone"]["type"] == "TopFormerBackbone"


@pytest.mark.parametrize("task", ["val", "predict"])
def test_evaluation_ignores_training_only_sections(tmp_path, task):
    # Evaluation never builds the optimizer, schedule or losses: their problems do not block
    # it, while the same config fails to train.
    config = tiny(
        ("optimizer.type", "AdamX"),
        ("lr_scheduler.power", "high"),
        ("loss.types.0.type", "Nope"),
        ("batch_size", 0.5),
    )
    path = write(tmp_path / "eval_only.yml", config)
    assert load_config(str(path), task).dic["optimizer"]["type"] == "AdamX"
    with pytest.raises(ConfigError, match=r"^batch_size: expected a positive int, got 0\.5$"):
        load_config(str(path), "train")


SHIPPED = sorted(
    str(p.relative_to(REPO)) for p in (REPO / "configs").rglob("*.yml") if p.parent.name != "_base_"
)


@pytest.mark.parametrize("name", SHIPPED)
def test_shipped_configs_pass(name):
    # Parsed without PaddleSeg's dataset-dependent rules and validated directly, so that the
    # datasets the configs point at need not exist here.
    dic = Config(str(REPO / name), checker=ConfigChecker([])).dic
    for task in ("train", "val"):
        validate(dic, task)


WARNING = re.compile(r"^\S+:\d+: \w*Warning: ")


def error_lines(stderr: str) -> list[str]:
    """``stderr`` without the Python warnings Paddle prints when it is imported (a warning
    line and the source line after it)."""
    kept, skip = [], False
    for line in stderr.splitlines():
        if skip and line.startswith(" "):
            skip = False
            continue
        skip = bool(WARNING.match(line))
        if not skip:
            kept.append(line)
    return kept


def test_train_tool_exits_2_with_one_error_line(tmp_path):
    bad = {
        "camvid": shipped(
            "camvid/topformer_tiny_camvid.yml", model={"backbone": {"type": "TopFormerBackbon"}}
        ),
        # PaddleSeg's own check raised a multi-line RuntimeError for this one.
        "coef": {
            **TINY_CONFIG,
            "loss": {
                "types": [{"type": "SegCrossEntropyLoss"}, {"type": "DiceLoss"}],
                "coef": [1, 2, 3],
            },  # fmt: skip
        },
    }
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    procs = {}
    for name, config in bad.items():
        path = write(tmp_path / f"{name}.yml", config)
        procs[name] = subprocess.Popen(
            [sys.executable, str(REPO / "tools/train.py"), "--config", str(path)]
            + ["--device", "cpu", "--save_dir", str(tmp_path / "out")],
            cwd=tmp_path,
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
    expected = {
        "camvid": "error: model.backbone.type: unknown backbone 'TopFormerBackbon'; "
        "closest: TopFormerBackbone",
        "coef": "error: loss.coef: 3 coefficient(s) for 2 types",
    }
    for name, proc in procs.items():
        _, stderr = proc.communicate(timeout=120)
        assert proc.returncode == 2, stderr
        assert "Traceback" not in stderr
        lines = error_lines(stderr)
        assert len(lines) == 1 and lines[0].startswith(expected[name]), stderr
    assert not (tmp_path / "out").exists()
