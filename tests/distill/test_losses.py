"""Distillation losses against independent NumPy implementations of their formulas."""

import cv2
import numpy as np
import paddle
import pytest

from paddleseg_ext.distill import CGD, CWD, KD, NFD, PKL

SHAPES = [(2, 5, 4, 6), (1, 11, 7, 3), (3, 14, 5, 5)]


def log_softmax(x, axis):
    x = x - x.max(axis=axis, keepdims=True)
    return x - np.log(np.exp(x).sum(axis=axis, keepdims=True))


def kl_teacher_student(s, t, axis):
    """KL(p_T || p_S) along ``axis`` of softmax(scores), float64."""
    ls, lt = log_softmax(s, axis), log_softmax(t, axis)
    return (np.exp(lt) * (lt - ls)).sum(axis=axis)


def np_cwd(s, t, tau):
    n, c = s.shape[:2]
    kl = kl_teacher_student(s.reshape(n, c, -1) / tau, t.reshape(n, c, -1) / tau, axis=2)
    return tau**2 * kl.sum() / (n * c)


def np_cgd(s, t, g, tau):
    n, c, h, w = s.shape
    groups = int(np.ceil(c / g))
    total = 0.0
    for b in range(n):
        for k in range(groups):
            chans = list(range(k * g, min((k + 1) * g, c)))
            # Padding channels (-1e9) carry zero probability: the group is its real channels.
            total += kl_teacher_student(
                s[b, chans].ravel() / tau, t[b, chans].ravel() / tau, axis=0
            )
    return total / (n * groups)


def np_pkl(s, t, k1, tau):
    n, c, h, w = s.shape
    kl = kl_teacher_student(s / tau, t / tau, axis=1)  # (n, h, w)
    ps, pt = np.exp(log_softmax(s, 1)), np.exp(log_softmax(t, 1))
    mse = ((ps - pt) ** 2).mean(axis=1)
    per_image = (k1 * tau**2 * kl + (1 - k1) * mse).sum(axis=(1, 2)) / (w * h)
    return per_image.mean()


def np_normalize(x, eps=1e-5):
    mean = x.mean(axis=(2, 3), keepdims=True)
    var = ((x - mean) ** 2).mean(axis=(2, 3), keepdims=True)
    return (x - mean) / np.sqrt(var + eps)


def np_nfd(s, t):
    n, c, h, w = s.shape
    tn = np_normalize(t)
    if tn.shape[2:] != (h, w):
        # OpenCV's bilinear resize uses half-pixel centres, as align_corners=False does.
        tn = np.stack(
            [np.stack([cv2.resize(m, (w, h), interpolation=cv2.INTER_LINEAR) for m in img])
             for img in tn.astype(np.float32)]
        ).astype(np.float64)  # fmt: skip
    return ((np_normalize(s) - tn) ** 2).sum() / (n * h * w)


def np_kd(s, t, tau):
    return tau**2 * kl_teacher_student(s / tau, t / tau, axis=1).mean()


def pair(shape, seed, scale=3.0):
    rng = np.random.default_rng(seed)
    return (rng.standard_normal(shape) * scale, rng.standard_normal(shape) * scale)


def run(loss, s, t):
    return float(loss(paddle.to_tensor(s, dtype="float32"), paddle.to_tensor(t, dtype="float32")))


@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("tau", [1.0, 3.0])
def test_cwd_matches_formula(shape, tau):
    s, t = pair(shape, 0)
    assert run(CWD(tau), s, t) == pytest.approx(np_cwd(s, t, tau), rel=1e-4)


@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize(("g", "tau"), [(2, 2.0), (4, 1.0), (10, 2.0), (3, 0.5)])
def test_cgd_matches_formula_also_when_groups_do_not_divide(shape, g, tau):
    s, t = pair(shape, 1)
    assert run(CGD(g, tau), s, t) == pytest.approx(np_cgd(s, t, g, tau), rel=1e-4)


@pytest.mark.parametrize("tau", [1.0, 2.0, 4.0])
def test_cgd_with_group_size_one_is_cwd_without_tau_squared(tau):
    s, t = pair((2, 6, 5, 4), 2)
    assert run(CGD(1, tau), s, t) * tau**2 == pytest.approx(run(CWD(tau), s, t), rel=1e-5)


@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize(("k1", "tau"), [(0.5, 2.0), (0.0, 1.0), (1.0, 4.0), (0.3, 1.5)])
def test_pkl_matches_formula(shape, k1, tau):
    s, t = pair(shape, 3)
    assert run(PKL(k1, tau), s, t) == pytest.approx(np_pkl(s, t, k1, tau), rel=1e-4, abs=1e-7)


@pytest.mark.parametrize(
    ("s_shape", "t_shape"),
    [((2, 8, 6, 6), (2, 8, 6, 6)), ((2, 8, 6, 10), (2, 8, 12, 20)), ((1, 4, 8, 8), (1, 4, 3, 5))],
)
def test_nfd_matches_formula_with_size_mismatch(s_shape, t_shape):
    rng = np.random.default_rng(4)
    s = rng.standard_normal(s_shape) * 2 + 1
    t = rng.standard_normal(t_shape) * 5 - 3
    assert run(NFD(), s, t) == pytest.approx(np_nfd(s, t), rel=1e-4)


def test_nfd_is_scale_and_shift_invariant_per_channel():
    s, t = pair((2, 4, 6, 6), 5)
    scale = np.arange(1, 5).reshape(1, 4, 1, 1)
    assert run(NFD(), s * scale + 7, t) == pytest.approx(run(NFD(), s, t), rel=1e-4)


def test_nfd_needs_aligned_channels():
    s, t = pair((1, 4, 5, 5), 6)
    with pytest.raises(ValueError, match="student has 4 channels, teacher 6"):
        run(NFD(), s, np.concatenate([t, t[:, :2]], axis=1))


@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("tau", [1.0, 4.0])
def test_kd_matches_formula(shape, tau):
    s, t = pair(shape, 7)
    assert run(KD(tau), s, t) == pytest.approx(np_kd(s, t, tau), rel=1e-4)


@pytest.mark.parametrize("loss", [CWD(2.0), CGD(3, 2.0), PKL(0.5, 2.0), NFD(), KD(2.0)])
def test_zero_when_student_equals_teacher_and_positive_otherwise(loss):
    s, t = pair((2, 7, 5, 6), 8)
    assert run(loss, s, s) == pytest.approx(0.0, abs=1e-5)
    assert run(loss, s, t) > 1e-3


def test_gradient_reaches_the_student_only_through_its_input():
    s, t = pair((2, 5, 4, 4), 9)
    student = paddle.to_tensor(s, dtype="float32", stop_gradient=False)
    teacher = paddle.to_tensor(t, dtype="float32", stop_gradient=False)
    CWD(3.0)(student, teacher.detach()).backward()
    assert student.grad is not None and float(student.grad.abs().sum()) > 0
    assert teacher.grad is None
