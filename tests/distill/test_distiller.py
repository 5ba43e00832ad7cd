"""The ``distill:`` config section: validation, the frozen teacher, multi-resolution wiring."""

import copy

import numpy as np
import paddle
import paddle.nn.functional as F
import pytest
import yaml
from helpers import TINY_CONFIG

from paddleseg_ext.config import ConfigError, build, load_config
from paddleseg_ext.core.checkpoint import save_weights
from paddleseg_ext.core.train import _build_distiller, _build_optimizer
from paddleseg_ext.distill import CWD, NFD, Distiller, parse_distill

TEACHERS = {
    "topformer": {"type": "TopFormerSeg", "num_classes": 6,
                  "backbone": {"type": "TopFormerBackbone", "preset": "tiny"}},
    # A stock PaddleSeg model (paddleseg.models.FastSCNN) as the teacher of ours.
    "fastscnn": {"type": "FastSCNN", "num_classes": 6, "enable_auxiliary_loss": True},
}  # fmt: skip


@pytest.fixture
def teacher_files(tmp_path):
    """Returns ``make(kind) -> (config, weights)``: a teacher config and its random weights."""

    def make(kind="topformer"):
        config = copy.deepcopy(TINY_CONFIG) | {"model": TEACHERS[kind]}
        path = tmp_path / f"teacher_{kind}.yml"
        path.write_text(yaml.safe_dump(config))
        paddle.seed(1)
        teacher = build(load_config(str(path))).model
        save_weights(str(tmp_path / kind), teacher)
        return str(path), str(tmp_path / kind / "model.pdparams")

    return make


def student_config(tmp_path, teacher, losses, input_size=None, name="student.yml"):
    config = copy.deepcopy(TINY_CONFIG)
    config["distill"] = {"teacher": {"config": teacher[0], "model_path": teacher[1]},
                         "losses": losses}  # fmt: skip
    if input_size:
        config["distill"]["teacher"]["input_size"] = input_size
    path = tmp_path / name
    path.write_text(yaml.safe_dump(config))
    return load_config(str(path))


def build_run(cfg):
    """Student, distiller and optimizer, as the training loop builds them."""
    paddle.seed(0)
    builder = build(cfg)
    student = builder.model
    distiller = _build_distiller(cfg, student)
    return student, distiller, _build_optimizer(builder, distiller)


CWD_LOGITS = {"type": "CWD", "student": "logits", "teacher": "logits", "weight": 1.2, "tau": 3.0}
NFD_INJ = {"type": "NFD", "student": "backbone.injections.0",
           "teacher": "backbone.injections.1", "weight": 0.5}  # fmt: skip


# ---- validation of the section -----------------------------------------------------------

BAD_SECTIONS = [
    ([1], "distill: expected a mapping with 'teacher' and 'losses'"),
    ({"losses": [CWD_LOGITS]}, "distill.teacher: expected a mapping"),
    ({"teacher": "T", "losses": [CWD_LOGITS], "extra": 1}, "distill: unknown key 'extra'"),
    ({"teacher": {"model_path": "W"}, "losses": [CWD_LOGITS]},
     "distill.teacher.config: missing"),
    ({"teacher": {"config": "C", "model_path": "missing.pdparams"}, "losses": [CWD_LOGITS]},
     "distill.teacher.model_path: file not found: missing.pdparams"),
    ({"teacher": {"config": "C", "model_path": "W", "weights": "W"}, "losses": [CWD_LOGITS]},
     "distill.teacher: unknown key 'weights'"),
    ({"teacher": {"config": "C", "model_path": "W", "input_size": [512]}, "losses": [CWD_LOGITS]},
     r"distill.teacher.input_size: expected \[width, height\], got \[512\]"),
    ({"teacher": {"config": "C", "model_path": "W"}, "losses": []},
     "distill.losses: expected a non-empty list"),
    ({"teacher": {"config": "C", "model_path": "W"}, "losses": ["CWD"]},
     r"distill.losses.0: expected a mapping"),
    ({"teacher": {"config": "C", "model_path": "W"}, "losses": [CWD_LOGITS | {"type": "CWX"}]},
     r"distill.losses.0.type: unknown loss 'CWX'; expected one of CWD, CGD, PKL, NFD, KD"),
    ({"teacher": {"config": "C", "model_path": "W"}, "losses": [CWD_LOGITS | {"temp": 2}]},
     r"distill.losses.0 \(CWD\): unknown key 'temp' \(allowed: type, student, teacher, "
     r"weight, tau\)"),
    ({"teacher": {"config": "C", "model_path": "W"},
      "losses": [CWD_LOGITS, CWD_LOGITS | {"type": "CGD", "group_size": 2.5}]},
     r"distill.losses.1.group_size: expected an integer >= 1, got 2.5"),
    ({"teacher": {"config": "C", "model_path": "W"},
      "losses": [CWD_LOGITS | {"type": "PKL", "k1": 1.5}]},
     r"distill.losses.0.k1: expected a number in \[0, 1\], got 1.5"),
    ({"teacher": {"config": "C", "model_path": "W"}, "losses": [CWD_LOGITS | {"tau": 0}]},
     r"distill.losses.0.tau: expected a number > 0, got 0"),
    ({"teacher": {"config": "C", "model_path": "W"}, "losses": [CWD_LOGITS | {"weight": "high"}]},
     r"distill.losses.0.weight: expected a number >= 0, got 'high'"),
    ({"teacher": {"config": "C", "model_path": "W"},
      "losses": [{"type": "KD", "teacher": "logits"}]},
     r"distill.losses.0.student: expected 'logits' or a sublayer path"),
]  # fmt: skip


@pytest.mark.parametrize(("section", "message"), BAD_SECTIONS)
def test_bad_sections_fail_with_one_line_naming_the_key(section, message, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "C").write_text("model: {}")
    (tmp_path / "W").write_text("")
    with pytest.raises(ConfigError, match=message) as err:
        parse_distill(section)
    assert "\n" not in str(err.value)


def test_repeated_types_get_numbered_names(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "C").write_text("")
    (tmp_path / "W").write_text("")
    spec = parse_distill(
        {
            "teacher": {"config": "C", "model_path": "W", "input_size": [96, 80]},
            "losses": [CWD_LOGITS, NFD_INJ, NFD_INJ],
        }  # fmt: skip
    )
    assert [t.name for t in spec.terms] == ["cwd", "nfd", "nfd_2"]
    assert spec.teacher_input_size == (96, 80)
    assert spec.terms[0].params == {"tau": 3.0} and spec.terms[1].weight == 0.5


def test_a_wrong_layer_path_lists_the_valid_names(tmp_path, teacher_files):
    bad = NFD_INJ | {"student": "backbone.trans"}
    cfg = student_config(tmp_path, teacher_files(), [CWD_LOGITS, bad])
    with pytest.raises(ConfigError) as err:
        build_run(cfg)
    message = str(err.value)
    assert message.startswith(
        "distill.losses.1.student: TopFormerSeg has no sublayer 'backbone.trans'; "
        "closest: backbone.transformer"
    )
    for valid in ("backbone.injections.0", "head", "backbone.transformer.0"):
        assert valid in message.split("valid names")[1]


def test_a_layer_returning_several_tensors_is_refused(tmp_path, teacher_files):
    cfg = student_config(tmp_path, teacher_files(), [NFD_INJ | {"teacher": "backbone"}])
    with pytest.raises(ConfigError, match=r"losses.0.teacher: 'backbone' returns 3 tensors"):
        build_run(cfg)


def test_a_teacher_with_a_mismatched_checkpoint_is_named(tmp_path, teacher_files):
    config, _ = teacher_files("topformer")
    _, stock_weights = teacher_files("fastscnn")
    cfg = student_config(tmp_path, (config, stock_weights), [CWD_LOGITS])
    with pytest.raises(ConfigError, match="fastscnn/model.pdparams does not match the model"):
        build_run(cfg)


# ---- the distiller -------------------------------------------------------------------------


def test_teacher_is_outside_the_trained_layers(tmp_path, teacher_files):
    cfg = student_config(tmp_path, teacher_files(), [CWD_LOGITS, NFD_INJ])
    student, distiller, optimizer = build_run(cfg)
    teacher_ids = {id(p) for p in distiller.teacher.parameters()}
    trained_ids = {id(p) for p in optimizer._parameter_list}
    assert not teacher_ids & trained_ids
    assert {id(p) for p in student.parameters()} | {
        id(p) for p in distiller.criterion.parameters()
    } == trained_ids
    assert not any(k.startswith("_frozen") for k in distiller.state_dict())
    assert not distiller.teacher.training
    assert all(p.stop_gradient for p in distiller.teacher.parameters())


def test_training_steps_leave_the_teacher_bit_identical(tmp_path, teacher_files):
    cfg = student_config(tmp_path, teacher_files(), [CWD_LOGITS, NFD_INJ])
    student, distiller, optimizer = build_run(cfg)
    teacher_before = {k: v.numpy().copy() for k, v in distiller.teacher.state_dict().items()}
    student_before = {k: v.numpy().copy() for k, v in student.state_dict().items()}
    align_before = {k: v.numpy().copy() for k, v in distiller.criterion.state_dict().items()}
    distiller.train()
    rng = np.random.default_rng(0)
    for _ in range(3):
        img = paddle.to_tensor(rng.standard_normal((2, 3, 64, 64)), dtype="float32")
        _, terms = distiller(img, [64, 64])
        paddle.add_n(list(terms.values())).backward()
        grads_on_teacher = [p.grad for p in distiller.teacher.parameters() if p.grad is not None]
        assert not grads_on_teacher
        optimizer.step()
        optimizer.clear_grad()
    for key, value in distiller.teacher.state_dict().items():
        np.testing.assert_array_equal(value.numpy(), teacher_before[key], err_msg=key)
    assert any(
        not np.array_equal(v.numpy(), student_before[k]) for k, v in student.state_dict().items()
    )
    for key, value in distiller.criterion.state_dict().items():
        assert not np.array_equal(value.numpy(), align_before[key]), key


def test_gradients_reach_student_and_adapters_only(tmp_path, teacher_files):
    cfg = student_config(tmp_path, teacher_files(), [NFD_INJ])
    student, distiller, _ = build_run(cfg)
    img = paddle.randn([2, 3, 64, 64])
    _, terms = distiller(img, [64, 64])
    terms["nfd"].backward()
    adapters = distiller.criterion.parameters()
    assert adapters and all(p.grad is not None for p in adapters)
    # The tapped level's branch gets gradients; the classifier is not on NFD's path.
    assert student.backbone.injections[0].local_embed.conv.weight.grad is not None
    assert all(p.grad is None for p in distiller.teacher.parameters())


def test_stock_teacher_at_a_larger_input_with_resized_logits(tmp_path, teacher_files):
    """Multi-resolution: FastSCNN sees 80x96 images; logits meet at the 48x48 labels."""
    cfg = student_config(tmp_path, teacher_files("fastscnn"), [CWD_LOGITS], input_size=[96, 80])
    student, distiller, _ = build_run(cfg)
    seen = []
    hook = distiller.teacher.register_forward_pre_hook(lambda layer, inp: seen.append(inp[0].shape))
    student.eval()  # no dropout, so the check below sees the same student logits
    img = paddle.randn([2, 3, 64, 64])
    _, terms = distiller(img, [48, 48])
    hook.remove()
    assert seen == [[2, 3, 80, 96]]

    def at_labels(logits):
        return F.interpolate(logits, size=[48, 48], mode="bilinear", align_corners=False)

    with paddle.no_grad():
        teacher_in = F.interpolate(img, size=[80, 96], mode="bilinear", align_corners=False)
        t_logits = at_labels(distiller.teacher(teacher_in)[0])
        s_logits = at_labels(student(img)[0])
    expected = 1.2 * float(CWD(3.0)(s_logits, t_logits))
    np.testing.assert_allclose(float(terms["cwd"]), expected, rtol=1e-5)


def test_nfd_maps_teacher_features_to_the_student_size(tmp_path, teacher_files):
    """Student 1/8 map (128 ch) vs teacher 1/16 map of a larger input (128 ch, 1x1 conv)."""
    cfg = student_config(tmp_path, teacher_files(), [NFD_INJ], input_size=[128, 128])
    student, distiller, _ = build_run(cfg)
    student.eval()
    feats = {}
    hooks = [
        student.backbone.injections[0].register_forward_post_hook(
            lambda layer, inp, out: feats.__setitem__("s", out)
        ),
        distiller.teacher.backbone.injections[1].register_forward_post_hook(
            lambda layer, inp, out: feats.__setitem__("t", out)
        ),
    ]
    _, terms = distiller(paddle.randn([2, 3, 64, 64]), [64, 64])
    for hook in hooks:
        hook.remove()
    assert feats["s"].shape[2:] == [8, 8] and feats["t"].shape[2:] == [8, 8]
    align = distiller.criterion.loss_func[0].align_func
    expected = 0.5 * float(NFD()(align(feats["s"]), feats["t"]))
    np.testing.assert_allclose(float(terms["nfd"]), expected, rtol=1e-5)


def test_the_probe_leaves_the_student_unchanged(tmp_path, teacher_files):
    cfg = student_config(tmp_path, teacher_files(), [CWD_LOGITS])
    paddle.seed(0)
    student = build(cfg).model
    before = {k: v.numpy().copy() for k, v in student.state_dict().items()}
    Distiller(student, build(load_config(cfg.dic["distill"]["teacher"]["config"])).model,
              parse_distill(cfg.dic["distill"]))  # fmt: skip
    for key, value in student.state_dict().items():
        np.testing.assert_array_equal(value.numpy(), before[key], err_msg=key)
    assert student.training
