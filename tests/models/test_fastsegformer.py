"""FastSegFormer-P / -E and their backbones: sizes against the published figures, input sizes
other than 224, hook paths, gradients, the position-bias layout, options and export."""

import os

import numpy as np
import paddle
import paddle.nn.functional as F
import pytest
from helpers import random_state

from paddleseg_ext.models.complexity import count_params
from paddleseg_ext.models.efficientformerv2 import (
    AttentionBias,
    EfficientFormerV2Backbone,
    GridAttention,
    efficientformerv2_cfg,
)
from paddleseg_ext.models.fastsegformer import (
    FASTSEGFORMER_PRESETS,
    FastSegFormer,
    MultiscalePyramid,
    PoolingPyramid,
)
from paddleseg_ext.models.poolformer import (
    POOLFORMER_PRESETS,
    GroupNorm1,
    PoolFormerBackbone,
    PoolMixer,
)

BACKBONES = {"P": lambda: PoolFormerBackbone("s12"), "E": lambda: EfficientFormerV2Backbone("s0")}
# Features the paper's distillation pairs (reference.md section 6), in its order.
HOOK_PATHS = [f"backbone.norms.{i}" for i in range(4)] + ["pyramid", "fusion", "half_res.refine"]


def published(variant, num_classes=4, **kwargs):
    """FastSegFormer-P or -E as published (multiscale pyramid, half-resolution branch)."""
    return FastSegFormer(num_classes, BACKBONES[variant](), **kwargs)


def trainable(layer):
    # The published counts are PyTorch `parameters()`, where BatchNorm running statistics are
    # buffers; Paddle lists them as parameters that get no gradient (count_params' default
    # counts them: 17,088 more for -P, 67,584 for -E).
    return count_params(layer, trainable_only=True)


def capture(model, paths):
    """Registers hooks that store the outputs of the sublayers at `paths`; returns the dict."""
    sublayers = dict(model.named_sublayers())
    outputs = {}
    for path in paths:
        sublayers[path].register_forward_post_hook(
            lambda layer, inputs, output, path=path: outputs.__setitem__(path, output)
        )
    return outputs


def poolformer_params(cfg, in_chs=3):
    """Closed-form size of a PoolFormer backbone with output norms (reference.md section 6):
    7x7 stem, per block 2 GroupNorms + MLP d->4d->d + 2 layer scales, 3x3 embeddings,
    one GroupNorm per stage; every convolution has a bias."""
    d = cfg.widths
    hidden = [int(c * cfg.mlp_ratio) for c in d]
    blocks = sum(
        n * (2 * c * h + h + c + 6 * c) for n, c, h in zip(cfg.depths, d, hidden, strict=True)
    )
    embeds = in_chs * d[0] * 49 + d[0] + sum(9 * a * b + b for a, b in zip(d, d[1:], strict=False))
    return blocks + embeds + sum(2 * c for c in d)


# ------------------------------------------------------------------------------------ sizes


@pytest.mark.parametrize("variant, figure", [("P", 14.892e6), ("E", 5.013e6)])
def test_param_count_within_half_a_percent_of_published(variant, figure):
    # reference.md: every parameter at 4 classes, 14.892M (-P) and 5.013M (-E); the spec's
    # tolerance is 0.5%.
    n = trainable(published(variant))
    assert abs(n - figure) <= 0.005 * figure, n


@pytest.mark.parametrize("variant, figure, unit", [("P", 11.40e6, 1e4), ("E", 3.247e6, 1e3)])
def test_backbone_param_count_rounds_to_published(variant, figure, unit):
    # Backbones alone with their output norms: 11.40M and 3.247M. No tolerance is given, so
    # the bound is the figure's own rounding: half a unit of its last digit.
    n = trainable(BACKBONES[variant]())
    assert abs(n - figure) <= unit / 2, n


@pytest.mark.parametrize("preset", list(POOLFORMER_PRESETS))
def test_poolformer_param_count_equals_the_closed_form(preset):
    backbone = PoolFormerBackbone(preset)
    assert count_params(backbone) == poolformer_params(backbone.cfg)


@pytest.mark.parametrize("variant", ["P", "E"])
def test_half_res_branch_costs_11_to_17k_params(variant):
    # reference.md: "the half-resolution branch is only 11-17K of them" (its layers plus the
    # head's 32-channel output instead of a num_classes one).
    extra = trainable(published(variant)) - trainable(published(variant, half_res_branch=False))
    assert 11e3 <= extra <= 17e3, extra


# ---------------------------------------------------------------------------------- presets


def test_decoder_presets_hold_the_published_widths():
    p, e = FASTSEGFORMER_PRESETS["poolformer"], FASTSEGFORMER_PRESETS["efficientformerv2"]
    assert (p.reduce_chs, p.bottleneck_chs, p.pyramid_chs) == (256, (256, 256), 512)
    assert (e.reduce_chs, e.bottleneck_chs, e.pyramid_chs) == (128, (128,) * 3 + (160,) * 3, 320)
    assert (p.expand, p.branch_chs, e.expand, e.branch_chs) == (3, 32, 3, 32)
    # The decoder preset follows the backbone family unless one is given.
    assert published("P").cfg == p and published("E").cfg == e
    assert FastSegFormer(4, PoolFormerBackbone("s12"), decoder="efficientformerv2").cfg == e


def test_poolformer_presets():
    assert [POOLFORMER_PRESETS[p].depths for p in ("s12", "s24", "s36")] == [
        (2, 2, 6, 2),
        (4, 4, 12, 4),
        (6, 6, 18, 6),
    ]
    assert {cfg.widths for cfg in POOLFORMER_PRESETS.values()} == {(64, 128, 320, 512)}
    assert [POOLFORMER_PRESETS[p].layer_scale_init for p in ("s12", "s24", "s36")] == [
        1e-5,
        1e-5,
        1e-6,
    ]


@pytest.mark.parametrize(
    "preset, widths, ratios",
    [
        ("s0", (32, 48, 96, 176), [[4, 4], [4, 4], [4, 3, 3, 3, 4, 4], [4, 3, 3, 4]]),
        (
            "s1",
            (32, 48, 120, 224),
            [[4, 4, 4], [4, 4, 4], [4, 4, 3, 3, 3, 3, 4, 4, 4], [4, 4, 3, 3, 4, 4]],
        ),
    ],
)
def test_efficientformerv2_structure(preset, widths, ratios):
    backbone = EfficientFormerV2Backbone(preset)
    assert tuple(backbone.feat_channels) == widths
    for i, stage in enumerate(backbone.stages):
        hidden = [block.ffn.fc1.conv.weight.shape[0] for block in stage]
        assert hidden == [int(r * widths[i]) for r in ratios[i]]
        # Attention in the last 2 blocks of stages 3 and 4, on a stride-2 grid in stage 3.
        attn = [block.attn for block in stage]
        expected = [i >= 2 and j >= len(stage) - 2 for j in range(len(stage))]
        assert [isinstance(a, GridAttention) for a in attn] == expected
        assert all((a.stride_conv is not None) == (i == 2) for a in attn if a is not None)
    # Bias tables for 224: 7x7 (stage 3 on the stride-2 grid, stage 4), 14x14 downsampler.
    assert backbone.stages[2][-1].attn.bias.table.shape == [8, 7, 7]
    assert backbone.stages[3][-1].attn.bias.table.shape == [8, 7, 7]
    assert backbone.embeds[3].attn.bias.table.shape == [8, 14, 14]
    backbone.eval()
    feats = backbone(paddle.randn([1, 3, 64, 64]))
    assert [f.shape for f in feats] == [
        [1, c, 64 // s, 64 // s] for c, s in zip(widths, (4, 8, 16, 32), strict=True)
    ]


# ------------------------------------------------------------------------ shapes and hooks


@pytest.mark.parametrize("size", [(224, 224), (256, 320)])
@pytest.mark.parametrize("variant", ["P", "E"])
def test_logits_at_the_input_size_and_the_branch_at_half(variant, size):
    model = published(variant)
    model.eval()
    outputs = capture(model, HOOK_PATHS)
    logits = model(paddle.randn([1, 3, *size]))[0]
    h, w = size
    assert logits.shape == [1, 4, h, w]
    chs = model.backbone.feat_channels
    for i, stride in enumerate((4, 8, 16, 32)):
        assert outputs[f"backbone.norms.{i}"].shape == [1, chs[i], h // stride, w // stride]
    width = model.cfg.pyramid_chs
    assert outputs["pyramid"].shape == [1, width, h // 32, w // 32]
    assert outputs["fusion"].shape == [1, width, h // 8, w // 8]
    assert outputs["half_res.refine"].shape == [1, 32, h // 2, w // 2]


@pytest.mark.parametrize("variant", ["P", "E"])
def test_every_parameter_gets_a_gradient(variant):
    model = published(variant, num_classes=5)
    model.train()
    outputs = capture(model, HOOK_PATHS)
    logits = model(paddle.randn([2, 3, 64, 64]))[0]
    assert logits.shape == [2, 5, 64, 64]
    # s1 and s3 (and their output norms) feed only the distillation losses, so the loss
    # includes the hooked features as distillation does.
    loss = (logits**2).mean() + sum((f**2).mean() for f in outputs.values())
    loss.backward()
    trained = [p for p in model.parameters() if not p.stop_gradient]
    assert not [p.name for p in trained if p.grad is None]
    assert all(bool(paddle.isfinite(p.grad).all()) for p in trained)


@pytest.mark.parametrize("variant", ["P", "E"])
def test_pooling_pyramid(variant):
    model = published(variant, pyramid="pooling")
    assert isinstance(model.pyramid, PoolingPyramid)
    assert isinstance(published(variant).pyramid, MultiscalePyramid)
    model.eval()
    assert model(paddle.randn([1, 3, 224, 224]))[0].shape == [1, 4, 224, 224]


def test_without_the_branch_the_head_outputs_the_classes():
    model = published("E", half_res_branch=False)
    assert model.half_res is None
    assert model.head.classifier.weight.shape[:2] == [4, 320]  # K = num_classes
    model.eval()
    assert model(paddle.randn([1, 3, 96, 128]))[0].shape == [1, 4, 96, 128]


def test_input_size_runs_the_network_at_that_size(randomize):
    """With ``input_size`` the model is: resize to it, the same network, logits resized
    back to the image (what the paper's 224x224 student does with a larger batch)."""
    fixed = randomize(published("E", input_size=[96, 128]))
    plain = published("E")
    plain.set_state_dict(fixed.state_dict())
    fixed.eval()
    plain.eval()
    outputs = capture(fixed, ["half_res.refine"])
    x = paddle.randn([1, 3, 150, 170])
    logits = fixed(x)[0]
    assert logits.shape == [1, 4, 150, 170]
    assert outputs["half_res.refine"].shape == [1, 32, 48, 64]  # half of input_size
    inner = plain(F.interpolate(x, size=[96, 128], mode="bilinear"))[0]
    expected = F.interpolate(inner, size=[150, 170], mode="bilinear")
    np.testing.assert_allclose(logits.numpy(), expected.numpy(), rtol=1e-5, atol=1e-5)
    with pytest.raises(ValueError, match=r"input_size: expected \[H, W\], multiples of 32"):
        published("E", input_size=[100, 128])


# ------------------------------------------------------------------------------ the blocks


def test_group_norm1_equals_paddles_one_group_group_norm(randomize):
    ours = randomize(GroupNorm1(6))
    reference = paddle.nn.GroupNorm(1, 6)
    reference.set_state_dict(ours.state_dict())  # same parameter names and shapes
    x = paddle.randn([2, 6, 5, 7]) * 3 + 1
    np.testing.assert_allclose(ours(x).numpy(), reference(x).numpy(), rtol=1e-5, atol=1e-5)


def test_pool_mixer_excludes_the_padding():
    # The average of a constant excluding the zero padding is the constant, borders included.
    x = paddle.full([1, 2, 5, 6], 3.0)
    np.testing.assert_array_equal(PoolMixer(3)(x).numpy(), np.zeros([1, 2, 5, 6]))


@pytest.mark.parametrize("grid, stride", [(7, 1), (14, 2)])
def test_attention_bias_at_the_table_grid_is_the_published_layout(grid, stride):
    # At 224 the table is indexed by the absolute offsets, queries at `stride` * (i, j).
    bias_layer = AttentionBias(3, grid)
    table = np.random.rand(3, grid, grid).astype("float32")
    bias_layer.table.set_value(table)
    bias = bias_layer((grid, grid), stride).numpy()
    queries = [(i, j) for i in range(0, grid, stride) for j in range(0, grid, stride)]
    keys = [(i, j) for i in range(grid) for j in range(grid)]
    assert bias.shape == (3, len(queries), len(keys))
    for q, (qy, qx) in enumerate(queries):
        for k, (ky, kx) in enumerate(keys):
            np.testing.assert_array_equal(bias[:, q, k], table[:, abs(qy - ky), abs(qx - kx)])


def test_attention_bias_follows_other_grids():
    bias_layer = AttentionBias(2, 7)
    table = np.random.rand(2, 7, 7).astype("float32")
    bias_layer.table.set_value(table)
    bias = bias_layer((8, 10)).numpy()  # a 256x320 input
    assert bias.shape == (2, 80, 80)
    # The resize keeps offset 0 and the largest offset (align_corners=True).
    diagonal = np.diagonal(bias, axis1=1, axis2=2)  # offset (0, 0)
    np.testing.assert_allclose(diagonal, np.repeat(table[:, :1, 0], 80, axis=1), rtol=1e-6)
    np.testing.assert_allclose(bias[:, 0, -1], table[:, -1, -1], rtol=1e-6)


# ---------------------------------------------------------------- options, weights, export


def test_invalid_settings_raise():
    with pytest.raises(ValueError, match="pyramid"):
        published("E", pyramid="aspp")
    with pytest.raises(ValueError, match="decoder"):
        FastSegFormer(4, paddle.nn.Identity())
    with pytest.raises(KeyError):
        FastSegFormer(4, PoolFormerBackbone("s12"), decoder="p")
    with pytest.raises(ValueError, match="mlp_ratios"):
        efficientformerv2_cfg("s0", depths=[2, 2, 6, 3])


def test_init_weights_loads_pretrained(tmp_path):
    source = published("E")
    state = random_state(source)
    path = os.path.join(tmp_path, "model.pdparams")
    paddle.save({k: paddle.to_tensor(v) for k, v in state.items()}, path)
    model = published("E", pretrained=path)
    assert not np.array_equal(
        model.fusion.skip_proj.conv.weight.numpy(), state["fusion.skip_proj.conv.weight"]
    )
    model.init_weights()
    for key, value in model.state_dict().items():
        np.testing.assert_array_equal(value.numpy(), state[key])


def test_static_export_at_a_non_224_size(tmp_path, randomize):
    # The bias index is a constant of the traced input size and the tables are resized
    # inside the graph; the saved program must give the eager outputs.
    model = randomize(published("E"))
    model.eval()
    x = paddle.randn([1, 3, 256, 320])
    expected = model(x)[0].numpy()
    spec = [paddle.static.InputSpec([1, 3, 256, 320], "float32")]
    static = paddle.jit.to_static(model, input_spec=spec, full_graph=True)
    paddle.jit.save(static, os.path.join(tmp_path, "model"))
    loaded = paddle.jit.load(os.path.join(tmp_path, "model"))
    out = loaded(x)
    out = out[0] if isinstance(out, list | tuple) else out
    np.testing.assert_allclose(out.numpy(), expected, rtol=1e-4, atol=1e-4)
