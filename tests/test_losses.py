"""SegCrossEntropyLoss against a NumPy transcription of the formula.

On CPU the loss runs fused in NumPy (its own forward and backward); elsewhere it is built
from Paddle operators. Both are checked here, the gradient against the analytic one.
"""

import numpy as np
import paddle
import pytest

from paddleseg_ext import losses
from paddleseg_ext.losses import SegCrossEntropyLoss


def numpy_ce(logit, label, ignore_index=255, weight=None):
    n, c, h, w = logit.shape
    z = logit.transpose(0, 2, 3, 1).reshape(-1, c)
    y = label.reshape(-1)
    logp = z - z.max(1, keepdims=True)
    logp = logp - np.log(np.exp(logp).sum(1, keepdims=True))
    keep = y != ignore_index
    nll = -logp[keep, y[keep]]
    wts = np.ones_like(nll) if weight is None else np.asarray(weight)[y[keep]]
    return (nll * wts).sum() / wts.sum()


@pytest.fixture
def batch():
    rng = np.random.default_rng(0)
    logit = rng.standard_normal((2, 4, 5, 6)).astype("float32")
    label = rng.integers(0, 4, (2, 5, 6))
    label[0, :2] = 255
    return logit, label


def test_matches_formula_with_ignore(batch):
    logit, label = batch
    got = SegCrossEntropyLoss()(paddle.to_tensor(logit), paddle.to_tensor(label))
    np.testing.assert_allclose(float(got), numpy_ce(logit, label), rtol=1e-5)


def test_class_weights_give_weighted_mean(batch):
    logit, label = batch
    weight = [0.5, 1.0, 2.0, 3.0]
    got = SegCrossEntropyLoss(weight=weight)(paddle.to_tensor(logit), paddle.to_tensor(label))
    np.testing.assert_allclose(float(got), numpy_ce(logit, label, weight=weight), rtol=1e-5)


def test_accepts_nchw_labels_and_gives_gradients(batch):
    logit, label = batch
    x = paddle.to_tensor(logit, stop_gradient=False)
    loss = SegCrossEntropyLoss()(x, paddle.to_tensor(label[:, None]))
    loss.backward()
    grad = x.grad.numpy()
    assert np.all(grad[0, :, :2] == 0), "ignored pixels must get no gradient"
    assert np.abs(grad).sum() > 0


def test_all_ignored_batch_is_zero_not_nan(batch):
    logit, _ = batch
    label = np.full((2, 5, 6), 255)
    assert float(SegCrossEntropyLoss()(paddle.to_tensor(logit), paddle.to_tensor(label))) == 0.0


def test_wrong_number_of_weights_is_named():
    with pytest.raises(ValueError, match="3 class weights given for 4 classes"):
        SegCrossEntropyLoss(weight=[1, 1, 1])(paddle.zeros([1, 4, 2, 2]), paddle.zeros([1, 2, 2]))


def numpy_ce_grad(logit, label, ignore_index=255, weight=None):
    """d loss / d logit = (softmax - onehot) * w / sum(w), zero at ignored pixels."""
    c = logit.shape[1]
    prob = np.exp(logit - logit.max(1, keepdims=True))
    prob /= prob.sum(1, keepdims=True)
    keep = label != ignore_index
    safe = np.where(keep, label, 0)
    onehot = np.moveaxis(np.eye(c)[safe], -1, 1)
    wts = keep * (1.0 if weight is None else np.asarray(weight)[safe])
    return (prob - onehot) * (wts / wts.sum())[:, None]


@pytest.mark.parametrize("weight", [None, [0.5, 1.0, 2.0, 3.0]])
@pytest.mark.parametrize("path", ["numpy", "paddle"])
def test_both_paths_match_formula_and_gradient(batch, weight, path, monkeypatch):
    logit, label = batch
    if path == "paddle":  # what a GPU or a static graph runs
        monkeypatch.setattr(losses.paddle, "in_dynamic_mode", lambda: False)
    x = paddle.to_tensor(logit, stop_gradient=False)
    loss = SegCrossEntropyLoss(weight=weight)(x, paddle.to_tensor(label))
    (3.0 * loss).backward()
    np.testing.assert_array_equal(x.numpy(), logit)  # the logits are left as they were
    np.testing.assert_allclose(float(loss), numpy_ce(logit, label, weight=weight), rtol=1e-5)
    expected = 3.0 * numpy_ce_grad(logit, label, weight=weight)
    np.testing.assert_allclose(x.grad.numpy(), expected, rtol=1e-4, atol=1e-7)
