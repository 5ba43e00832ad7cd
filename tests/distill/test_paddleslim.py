"""What of PaddleSlim 2.6's dygraph distillation API works on Paddle 3.3.1.

Used: ``CombinedLoss`` (loss wiring, weights) with our losses registered in ``BASIC_LOSS``,
and ``ShapeAlign`` (1x1 conv adapters). Not used: the ``Distill`` wrapper; the last tests
record the behaviour that rules it out (see paddleseg_ext/distill/distiller.py).
"""

import numpy as np
import paddle
import pytest
from paddleslim.dygraph.dist import Distill
from paddleslim.dygraph.dist.losses import CombinedLoss
from paddleslim.dygraph.dist.losses.basic_loss import BASIC_LOSS

from paddleseg_ext.distill import CWD, NFD
from paddleseg_ext.models import TopFormerBackbone, TopFormerSeg


def tiny_model(seed):
    paddle.seed(seed)
    return TopFormerSeg(num_classes=5, backbone=TopFormerBackbone(preset="tiny"))


def test_our_losses_are_registered_in_basic_loss():
    for name in ("CWD", "CGD", "PKL", "NFD", "KD"):
        assert BASIC_LOSS.get(name).__module__ == "paddleseg_ext.distill.losses"


def test_combined_loss_weights_our_losses_and_aligns_channels():
    rng = np.random.default_rng(0)
    tensors = {
        "student": {
            "logits": paddle.to_tensor(rng.standard_normal((2, 5, 6, 6)), dtype="float32"),
            "feat": paddle.to_tensor(rng.standard_normal((2, 3, 4, 4)), dtype="float32"),
        },
        "teacher": {
            "logits": paddle.to_tensor(rng.standard_normal((2, 5, 6, 6)), dtype="float32"),
            "feat": paddle.to_tensor(rng.standard_normal((2, 7, 8, 8)), dtype="float32"),
        },
    }
    pairs = [["student", "teacher"]]
    combined = CombinedLoss(
        [
            {"model_name_pairs": pairs, "layers_name": ["logits", "logits"],
             "loss_function": "CWD", "weight": 1.2, "tau": 3.0},
            {"model_name_pairs": pairs, "layers_name": ["feat", "feat"],
             "loss_function": "NFD", "weight": 0.5,
             "align_params": {"align_type": "1x1conv", "in_channel": 3, "out_channel": 7}},
        ]
    )  # fmt: skip
    out = combined(tensors, None)
    terms = [v for k, v in out.items() if k != "loss"]
    cwd = CWD(3.0)(tensors["student"]["logits"], tensors["teacher"]["logits"])
    np.testing.assert_allclose(float(terms[0]), 1.2 * float(cwd), rtol=1e-6)
    align = combined.loss_func[1].align_func
    aligned = align(tensors["student"]["feat"])
    assert aligned.shape == [2, 7, 4, 4]
    nfd = NFD()(aligned, tensors["teacher"]["feat"])
    np.testing.assert_allclose(float(terms[1]), 0.5 * float(nfd), rtol=1e-6)
    np.testing.assert_allclose(float(out["loss"]), float(terms[0] + terms[1]), rtol=1e-6)
    # The adapter is a trainable parameter of the combined loss.
    out["loss"].backward()
    assert all(p.grad is not None for p in align.parameters())


def test_distill_wrapper_runs_hooks_on_paddle_3():
    student, teacher = tiny_model(0), tiny_model(1)
    student.eval()  # no dropout: the check below sees the same head outputs
    teacher.eval()
    config = [{"layers": [{"layers_name": ["head", "head"], "loss_function": "MSELoss",
                           "weight": 1.0}]}]  # fmt: skip
    distill = Distill(config, student, teacher, convert_fn=False)
    x = paddle.randn([2, 3, 64, 64])
    loss, _, _ = distill(x)
    # Independent check: the MSE between the two heads' outputs, hooked by hand.
    heads = {}
    for name, model in (("s", student), ("t", teacher)):
        hook = model.head.register_forward_post_hook(
            lambda layer, inp, out, name=name: heads.__setitem__(name, out.numpy())
        )
        model(x)
        hook.remove()
    expected = ((heads["s"] - heads["t"]) ** 2).mean()
    assert expected > 0
    np.testing.assert_allclose(float(loss), expected, rtol=1e-5)


def test_distill_wrapper_backpropagates_into_an_eval_mode_teacher():
    """Reason 1 for our own wiring: hooked teacher features are not detached."""
    student, teacher = tiny_model(0), tiny_model(1)
    teacher.eval()
    config = [{"layers": [{"layers_name": ["head", "head"], "loss_function": "MSELoss",
                           "weight": 1.0}]}]  # fmt: skip
    loss, _, _ = Distill(config, student, teacher, convert_fn=False)(paddle.randn([2, 3, 64, 64]))
    loss.backward()
    assert sum(p.grad is not None for p in teacher.parameters()) > 0


def test_distill_wrapper_fails_obscurely_on_a_wrong_layer_name():
    """Reason 2: a name that matches no sublayer is not named in the error."""
    student, teacher = tiny_model(0), tiny_model(1)
    config = [{"layers": [{"layers_name": ["backbone.trans", "head"],
                           "loss_function": "MSELoss", "weight": 1.0}]}]  # fmt: skip
    with pytest.raises(UnboundLocalError, match="hooks"):
        Distill(config, student, teacher, convert_fn=False)
