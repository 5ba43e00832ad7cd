"""SegCrossEntropyLoss against a NumPy transcription of the formula."""

import numpy as np
import paddle
import pytest

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
