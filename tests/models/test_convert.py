"""Weight conversion from PaddleSeg: same weights give the same logits."""

import numpy as np
import paddle
import pytest
from paddleseg.models import PPMobileSeg, TopFormer
from paddleseg.models.backbones.strideformer import MobileSeg_Base, MobileSeg_Tiny
from paddleseg.models.backbones.top_transformer import (
    TopTransformer_Base,
    TopTransformer_Small,
    TopTransformer_Tiny,
)

from paddleseg_ext.models.convert import load_paddleseg_weights, load_pretrained
from paddleseg_ext.models.strideformer import MobileSegExt, StrideFormerBackbone
from paddleseg_ext.models.topformer import TopFormerBackbone, TopFormerSeg


def paddleseg_model(arch, preset):
    if arch == "topformer":
        factory, head_use_dw = {
            "tiny": (TopTransformer_Tiny, True),
            "small": (TopTransformer_Small, False),
            "base": (TopTransformer_Base, False),
        }[preset]
        return TopFormer(150, factory(), head_use_dw=head_use_dw)
    factory, out_feat_chs = {
        "tiny": (MobileSeg_Tiny, [32, 64, 128]),
        "base": (MobileSeg_Base, [64, 128, 192]),
    }[preset]
    return PPMobileSeg(150, factory(out_feat_chs=out_feat_chs))


def our_model(arch, preset, **overrides):
    if arch == "topformer":
        return TopFormerSeg(150, TopFormerBackbone(preset, **overrides))
    # The 2.8 wheel's AAM gates use ReLU6 (reference.md section 2).
    return MobileSegExt(150, StrideFormerBackbone(preset, gate_act="relu6", **overrides))


CASES = [
    ("topformer", "tiny"),
    ("topformer", "small"),
    ("topformer", "base"),
    ("strideformer", "tiny"),
    ("strideformer", "base"),
]


@pytest.mark.parametrize("arch, preset", CASES)
def test_converted_weights_give_the_same_logits(randomize, arch, preset):
    reference = randomize(paddleseg_model(arch, preset))
    ours = our_model(arch, preset)
    missing, unused = load_paddleseg_weights(ours, reference.state_dict())
    assert missing == [] and unused == []
    reference.eval(), ours.eval()
    x = paddle.randn([1, 3, 128, 128])
    diff = paddle.abs(ours(x)[0] - reference(x)[0]).max()
    assert float(diff) < 1e-4


def test_backbone_only_conversion(randomize):
    reference = randomize(TopTransformer_Tiny())
    ours = TopFormerBackbone("tiny")
    assert load_paddleseg_weights(ours, reference.state_dict()) == ([], [])
    reference.eval(), ours.eval()
    x = paddle.randn([1, 3, 64, 64])
    for a, b in zip(ours(x), reference(x), strict=True):
        np.testing.assert_allclose(a.numpy(), b.numpy(), atol=1e-4)


def test_student_takes_the_rows_and_blocks_it_has(randomize):
    reference = randomize(paddleseg_model("topformer", "tiny"))
    student = our_model("topformer", "tiny", num_rows=8, depth=3)
    missing, unused = load_paddleseg_weights(student, reference.state_dict())
    assert missing == []
    assert unused and all(
        k.startswith(("backbone.rows.8.", "backbone.transformer.3.")) for k in unused
    )


def test_strict_loading_rejects_another_architecture(randomize):
    reference = paddleseg_model("topformer", "tiny")
    with pytest.raises(ValueError):
        load_paddleseg_weights(our_model("topformer", "base"), reference.state_dict())


def test_load_pretrained_reads_paddleseg_and_our_files(randomize, tmp_path):
    reference = randomize(paddleseg_model("strideformer", "tiny"))
    paddle.save(reference.state_dict(), str(tmp_path / "paddleseg.pdparams"))
    model = our_model("strideformer", "tiny")
    model.pretrained = str(tmp_path / "paddleseg.pdparams")
    model.init_weights()
    paddle.save(model.state_dict(), str(tmp_path / "ours.pdparams"))

    again = our_model("strideformer", "tiny")
    assert load_pretrained(again, str(tmp_path / "ours.pdparams"), strict=True) == ([], [])
    reference.eval(), again.eval()
    x = paddle.randn([1, 3, 64, 64])
    np.testing.assert_allclose(again(x)[0].numpy(), reference(x)[0].numpy(), atol=1e-4)


def test_building_does_no_io(tmp_path):
    # A missing file is only an error when the weights are loaded.
    model = TopFormerSeg(
        150, TopFormerBackbone("tiny"), pretrained=str(tmp_path / "missing.pdparams")
    )
    with pytest.raises((OSError, ValueError)):
        model.init_weights()
