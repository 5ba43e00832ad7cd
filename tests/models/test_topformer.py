"""TopFormer: presets, size and cost against the published figures, export-oriented options."""

import dataclasses

import numpy as np
import paddle
import paddle.nn.functional as F
import pytest
from paddleseg.models import TopFormer
from paddleseg.models.backbones.top_transformer import (
    TopTransformer_Base,
    TopTransformer_Small,
    TopTransformer_Tiny,
)

from paddleseg_ext.models.complexity import count_flops, count_params
from paddleseg_ext.models.topformer import (
    TOPFORMER_PRESETS,
    TopFormerBackbone,
    TopFormerSeg,
    pool_tokens,
    topformer_cfg,
)

# LPCVC 2023 2nd-place student (reference.md section 3).
STUDENT = dict(num_rows=8, depth=3, input_size=(288, 288), token_grid=(5, 5))

# (preset, PaddleSeg backbone factory, PaddleSeg head_use_dw of the published model)
PADDLESEG = {
    "tiny": (TopTransformer_Tiny, True),
    "small": (TopTransformer_Small, False),
    "base": (TopTransformer_Base, False),
}


@pytest.mark.parametrize(
    "preset, level_chs, embed_chs, num_heads",
    [
        ("tiny", (16, 32, 64, 96), 128, 4),
        ("small", (24, 48, 96, 128), 192, 6),
        ("base", (32, 64, 128, 160), 256, 8),
    ],
)
def test_presets_hold_the_published_hyperparameters(preset, level_chs, embed_chs, num_heads):
    cfg = TOPFORMER_PRESETS[preset]
    assert cfg.level_chs == level_chs
    assert cfg.level_strides == (4, 8, 16, 32)
    assert (cfg.embed_chs, cfg.num_heads) == (embed_chs, num_heads)
    assert (cfg.depth, cfg.key_dim, cfg.attn_ratio, cfg.mlp_ratio) == (4, 16, 2, 2)
    assert cfg.head_depthwise == (preset == "tiny")


@pytest.mark.parametrize("preset", ["tiny", "small", "base"])
def test_param_count_equals_paddleseg(preset):
    factory, head_use_dw = PADDLESEG[preset]
    reference = count_params(TopFormer(150, factory(), head_use_dw=head_use_dw))
    ours = count_params(TopFormerSeg(150, TopFormerBackbone(preset)))
    assert ours == reference  # same architecture


def test_param_count_matches_the_measured_figures():
    # reference.md: PaddleSeg's Tiny 1,407,862 and Base 5,100,950 params at 150 classes.
    assert count_params(TopFormerSeg(150, TopFormerBackbone("tiny"))) == 1_407_862
    assert count_params(TopFormerSeg(150, TopFormerBackbone("base"))) == 5_100_950


@pytest.mark.parametrize("preset, published", [("tiny", 0.6e9), ("small", 1.2e9), ("base", 1.8e9)])
def test_flops_at_512_within_10_percent_of_published(preset, published):
    # mmcv's convention, as the paper: see paddleseg_ext.models.complexity.
    flops = count_flops(TopFormerSeg(150, TopFormerBackbone(preset)), (1, 3, 512, 512))
    assert abs(flops - published) <= 0.10 * published, flops


def test_student_options():
    backbone = TopFormerBackbone("tiny", **STUDENT)
    assert len(backbone.rows) == 8 and len(backbone.transformer) == 3
    # The 1/32 level comes from row 8 (0-based 7) once row 9 is dropped.
    assert backbone.cfg.level_rows == (2, 4, 6, 7)
    assert backbone.cfg.level_strides == (4, 8, 16, 32)
    assert backbone.level_sizes == [[72, 72], [36, 36], [18, 18], [9, 9]]
    model = TopFormerSeg(14, backbone)
    assert count_params(model) < count_params(TopFormerSeg(14, TopFormerBackbone("tiny")))


@pytest.mark.parametrize("size", [(512, 512), (200, 264)])
def test_internal_resize_returns_logits_at_the_input_size(size):
    model = TopFormerSeg(14, TopFormerBackbone("tiny", **STUDENT))
    model.eval()
    logits = model(paddle.randn([1, 3, *size]))[0]
    assert logits.shape == [1, 14, *size]


def test_internal_resize_equals_resizing_outside(randomize):
    inside = randomize(TopFormerBackbone("tiny", input_size=(128, 128)))
    outside = TopFormerBackbone("tiny")
    outside.set_state_dict(inside.state_dict())
    inside.eval(), outside.eval()
    x = paddle.randn([1, 3, 96, 160])
    resized = F.interpolate(x, size=[128, 128], mode="bilinear")
    for a, b in zip(inside(x), outside(resized), strict=True):
        np.testing.assert_allclose(a.numpy(), b.numpy(), rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize(
    "overrides, size, grid",
    [({}, 512, (8, 8)), (dict(num_rows=8, depth=3, input_size=(288, 288)), 288, (5, 5))],
)
def test_fixed_token_grid_equals_adaptive_pooling_at_the_training_size(
    randomize, overrides, size, grid
):
    adaptive = randomize(TopFormerBackbone("tiny", **overrides))
    fixed = TopFormerBackbone("tiny", token_grid=grid, **overrides)
    fixed.set_state_dict(adaptive.state_dict())
    adaptive.eval(), fixed.eval()
    x = paddle.randn([1, 3, size, size])
    for a, b in zip(adaptive(x), fixed(x), strict=True):
        np.testing.assert_allclose(a.numpy(), b.numpy(), rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("size, grid", [(72, (5, 5)), (36, (5, 5)), (9, (5, 5)), (64, (8, 4))])
def test_pool_tokens_equals_adaptive_avg_pool(size, grid):
    x = paddle.randn([2, 3, size, size])
    np.testing.assert_allclose(
        pool_tokens(x, grid).numpy(), F.adaptive_avg_pool2d(x, grid).numpy(), atol=1e-6
    )


def test_yaml_style_overrides_and_presets_stay_unchanged():
    before = TOPFORMER_PRESETS["tiny"]
    cfg = topformer_cfg("tiny", depth=3, input_size=[288, 288], token_grid=[5, 5])
    assert (cfg.depth, cfg.input_size, cfg.token_grid) == (3, (288, 288), (5, 5))
    assert TOPFORMER_PRESETS["tiny"] is before and before.depth == 4
    assert dataclasses.replace(cfg, depth=4) == dataclasses.replace(
        before, input_size=(288, 288), token_grid=(5, 5)
    )


@pytest.mark.parametrize(
    "overrides, error",
    [
        (dict(preset="huge"), KeyError),
        (dict(num_rows=0), ValueError),
        (dict(num_rows=6), ValueError),  # two pyramid levels would come from row 6
        (dict(depth=0), ValueError),
        (dict(pyramid_act="gelu"), ValueError),
    ],
)
def test_invalid_settings_raise(overrides, error):
    with pytest.raises(error):
        TopFormerBackbone(**overrides)


def test_builds_from_a_paddleseg_yaml_config(tmp_path):
    from paddleseg.cvlibs import Config, SegBuilder

    import paddleseg_ext  # noqa: F401

    path = tmp_path / "student.yml"
    path.write_text(
        """
model:
  type: TopFormerSeg
  num_classes: 14
  upsample: vim
  backbone:
    type: TopFormerBackbone
    preset: tiny
    num_rows: 8
    depth: 3
    input_size: [288, 288]
    token_grid: [5, 5]
# Placeholders for PaddleSeg's config checker; only the model is built here.
batch_size: 1
iters: 1
train_dataset: {type: Dataset, dataset_root: ., train_path: t.txt, num_classes: 14, mode: train}
val_dataset: {type: Dataset, dataset_root: ., val_path: v.txt, num_classes: 14, mode: val}
optimizer: {type: SGD}
lr_scheduler: {type: PolynomialDecay, learning_rate: 0.01}
loss: {types: [{type: CrossEntropyLoss}], coef: [1]}
"""
    )
    model = SegBuilder(Config(str(path))).model
    assert isinstance(model, TopFormerSeg)
    assert model.backbone.cfg == topformer_cfg("tiny", **STUDENT)
    assert model.upsample.use_vim
