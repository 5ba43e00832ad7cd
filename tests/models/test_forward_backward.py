"""Every registered preset: forward shapes, finite outputs, a gradient for every parameter."""

import paddle
import pytest
from paddleseg.cvlibs import manager

import paddleseg_ext  # noqa: F401  (registers the components)
from paddleseg_ext.models.strideformer import STRIDEFORMER_PRESETS
from paddleseg_ext.models.topformer import TOPFORMER_PRESETS

STUDENT = dict(num_rows=8, depth=3, input_size=(96, 96), token_grid=(2, 2))

CASES = (
    [("TopFormerSeg", "TopFormerBackbone", preset, {}) for preset in TOPFORMER_PRESETS]
    + [("TopFormerSeg", "TopFormerBackbone", "tiny", STUDENT)]
    + [("MobileSegExt", "StrideFormerBackbone", preset, {}) for preset in STRIDEFORMER_PRESETS]
)
IDS = [f"{model}-{preset}{'-student' if extra else ''}" for model, _, preset, extra in CASES]


def build(model_name, backbone_name, preset, extra, **model_kwargs):
    backbone = manager.BACKBONES[backbone_name](preset=preset, **extra)
    return manager.MODELS[model_name](num_classes=5, backbone=backbone, **model_kwargs)


@pytest.mark.parametrize("model_name, backbone_name, preset, extra", CASES, ids=IDS)
def test_train_forward_and_backward(model_name, backbone_name, preset, extra):
    model = build(model_name, backbone_name, preset, extra)
    model.train()
    outputs = model(paddle.randn([2, 3, 64, 64]))
    assert isinstance(outputs, list)
    logits = outputs[0]
    assert logits.shape == [2, 5, 64, 64] and logits.dtype == paddle.float32
    assert bool(paddle.isfinite(logits).all())

    (logits**2).mean().backward()
    # BatchNorm running statistics are listed as parameters with stop_gradient set.
    trainable = [p for p in model.parameters() if not p.stop_gradient]
    assert len(trainable) > 0
    assert not [p.name for p in trainable if p.grad is None]
    assert all(bool(paddle.isfinite(p.grad).all()) for p in trainable)


@pytest.mark.parametrize("model_name, backbone_name, preset, extra", CASES, ids=IDS)
def test_eval_outputs_logits_or_vim_labels(model_name, backbone_name, preset, extra):
    x = paddle.randn([1, 3, 64, 96])
    model = build(model_name, backbone_name, preset, extra)
    model.eval()
    logits = model(x)[0]
    assert logits.shape == [1, 5, 64, 96]
    vim = build(model_name, backbone_name, preset, extra, upsample="vim")
    vim.set_state_dict(model.state_dict())
    vim.eval()
    labels = vim(x)[0]
    assert labels.shape == [1, 1, 64, 96] and labels.dtype == paddle.int32
    assert bool((labels == logits.argmax(axis=1, keepdim=True).astype("int32")).all())


def test_backbones_expose_channels_and_strides():
    for name, preset in [("TopFormerBackbone", "tiny"), ("StrideFormerBackbone", "tiny")]:
        backbone = manager.BACKBONES[name](preset=preset)
        backbone.eval()
        feats = backbone(paddle.randn([1, 3, 64, 64]))
        assert [f.shape[1] for f in feats] == backbone.feat_channels
        assert [64 // f.shape[2] for f in feats] == backbone.feat_strides
