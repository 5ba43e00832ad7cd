"""Distillation losses for segmentation: CWD, CGD, P&KL, NFD and plain KD.

Each loss compares a student tensor with a teacher tensor of the same spatial size (the
distiller resizes logits to the label size before they get here; NFD resizes the teacher
map itself, as its formula says). The config's ``weight`` is applied by PaddleSlim's
``CombinedLoss``, not here. The classes are registered in PaddleSlim's ``BASIC_LOSS``
registry, so its loss wiring (``CombinedLoss``, ``ShapeAlign`` adapters) can build them.

References:
    CWD: Shu et al., "Channel-wise Knowledge Distillation for Dense Prediction", ICCV 2021.
    CGD: channel-group distillation of SegDistill (CWD over groups of consecutive channels).
    PKL, NFD: FastSegFormer (pixel-wise KL + MSE on class probabilities; normalized feature
        distillation).
    KD: Hinton et al., "Distilling the Knowledge in a Neural Network", 2015, per pixel.
"""

from __future__ import annotations

import paddle
import paddle.nn.functional as F
from paddle import nn
from paddleslim.dygraph.dist.losses.basic_loss import BASIC_LOSS

# Fills the missing channels of the last CGD group: their softmax weight is exp(-1e9) = 0.
_PAD_LOGIT = -1e9


def _log_softmax(x: paddle.Tensor) -> paddle.Tensor:
    """log_softmax over the last axis from elementwise ops and reductions.

    Paddle 3.3's CPU ``F.log_softmax`` is pathologically slow on long rows: 37 s forward +
    backward for 44 rows of 42,240 values (CWD on 4 x 11 x 176 x 240 logits), against 0.1 s
    for this composition.
    """
    shifted = x - x.max(axis=-1, keepdim=True).detach()
    return shifted - shifted.exp().sum(axis=-1, keepdim=True).log()


def _kl_rows(student: paddle.Tensor, teacher: paddle.Tensor) -> paddle.Tensor:
    """KL(p_T || p_S) along the last axis, p = softmax of the given (already scaled) scores."""
    log_p_s = _log_softmax(student)
    log_p_t = _log_softmax(teacher)
    return (log_p_t.exp() * (log_p_t - log_p_s)).sum(axis=-1)


def _channels_last(x: paddle.Tensor) -> paddle.Tensor:
    # Paddle 3.3's CPU softmax over axis 1 of NCHW is ~20x slower than over the last axis.
    return x.transpose([0, 2, 3, 1])


@BASIC_LOSS.register
class CWD(nn.Layer):
    """Channel-wise distillation.

    For each sample n and channel c, p = softmax over the H*W positions of y / tau;
    loss = tau^2 / (N*C) * sum_{n,c} KL(p_T || p_S).

    Args:
        tau: Temperature.
    """

    def __init__(self, tau: float = 1.0) -> None:
        super().__init__()
        self.tau = tau

    def forward(self, student: paddle.Tensor, teacher: paddle.Tensor) -> paddle.Tensor:
        """Args: student, teacher (Tensor): Have shape (N, C, H, W). Returns: 0-d loss."""
        n, c = student.shape[:2]
        s = student.reshape([n * c, -1]) / self.tau
        t = teacher.reshape([n * c, -1]) / self.tau
        return self.tau**2 * _kl_rows(s, t).sum() / (n * c)


@BASIC_LOSS.register
class CGD(nn.Layer):
    """Channel-group distillation: CWD over groups of ``group_size`` consecutive channels.

    Channels are split into groups of g (the last group is padded with -1e9 channels when
    C % g != 0); each group's g*H*W values form one distribution at temperature tau;
    loss = sum KL(T || S) / (N * groups). Unlike CWD there is no tau^2 factor, so
    ``CGD(group_size=1, tau) * tau^2 == CWD(tau)``.

    Args:
        group_size: Channels per group (g).
        tau: Temperature.
    """

    def __init__(self, group_size: int = 10, tau: float = 2.0) -> None:
        super().__init__()
        self.group_size = group_size
        self.tau = tau

    def forward(self, student: paddle.Tensor, teacher: paddle.Tensor) -> paddle.Tensor:
        """Args: student, teacher (Tensor): Have shape (N, C, H, W). Returns: 0-d loss."""
        n, c, h, w = student.shape
        groups = -(-c // self.group_size)
        pad = groups * self.group_size - c
        if pad:
            filler = paddle.full([n, pad, h, w], _PAD_LOGIT, dtype=student.dtype)
            student = paddle.concat([student, filler], axis=1)
            teacher = paddle.concat([teacher, filler], axis=1)
        s = student.reshape([n * groups, -1]) / self.tau
        t = teacher.reshape([n * groups, -1]) / self.tau
        return _kl_rows(s, t).sum() / (n * groups)


@BASIC_LOSS.register
class PKL(nn.Layer):
    """FastSegFormer's pixel-wise P&KL loss.

    L = 1/(W*H) * [k1 * tau^2 * sum_i KL(q_i^T || q_i^S) + (1 - k1) * sum_i MSE(p_i^S, p_i^T)]
    averaged over the batch, where i runs over pixels, q is the class softmax at
    temperature tau and p the class softmax at temperature 1; MSE is the mean over classes
    of the squared difference.

    Args:
        k1: Share of the KL term.
        tau: Temperature of the KL term.
    """

    def __init__(self, k1: float = 0.5, tau: float = 2.0) -> None:
        super().__init__()
        self.k1 = k1
        self.tau = tau

    def forward(self, student: paddle.Tensor, teacher: paddle.Tensor) -> paddle.Tensor:
        """Args: student, teacher (Tensor): Have shape (N, C, H, W). Returns: 0-d loss."""
        student, teacher = _channels_last(student), _channels_last(teacher)
        kl = _kl_rows(student / self.tau, teacher / self.tau)
        p_s, p_t = _log_softmax(student).exp(), _log_softmax(teacher).exp()
        mse = (p_s - p_t).square().mean(axis=-1)
        return (self.k1 * self.tau**2 * kl + (1 - self.k1) * mse).mean()


def _normalize_channels(x: paddle.Tensor, eps: float = 1e-5) -> paddle.Tensor:
    """Zero mean, unit standard deviation per sample and channel over (H, W)."""
    mean = x.mean(axis=[2, 3], keepdim=True)
    var = (x - mean).square().mean(axis=[2, 3], keepdim=True)
    return (x - mean) / (var + eps).sqrt()


@BASIC_LOSS.register
class NFD(nn.Layer):
    """Normalized feature distillation (FastSegFormer), following the paper's formula.

    Each channel map of both features is normalized over (H, W); the teacher's map is then
    resized bilinearly to the student's size; loss = squared L2 distance / (W*H), averaged
    over the batch. The student feature must already have the teacher's channel count:
    the distiller maps it with a trained 1x1 conv (PaddleSlim ``ShapeAlign``).
    """

    def forward(self, student: paddle.Tensor, teacher: paddle.Tensor) -> paddle.Tensor:
        """Args:
            student (Tensor): Has shape (N, C, H, W), after the 1x1 alignment conv.
            teacher (Tensor): Has shape (N, C, H', W').

        Returns: 0-d loss.
        """
        if student.shape[1] != teacher.shape[1]:
            raise ValueError(
                f"NFD: student has {student.shape[1]} channels, teacher {teacher.shape[1]}"
            )
        n, _, h, w = student.shape
        teacher = _normalize_channels(teacher)
        if list(teacher.shape[2:]) != [h, w]:
            teacher = F.interpolate(teacher, size=[h, w], mode="bilinear", align_corners=False)
        return (_normalize_channels(student) - teacher).square().sum() / (n * h * w)


@BASIC_LOSS.register
class KD(nn.Layer):
    """Per-pixel knowledge distillation: tau^2 * mean over pixels of KL(q^T || q^S).

    Args:
        tau: Temperature of the class softmax q.
    """

    def __init__(self, tau: float = 1.0) -> None:
        super().__init__()
        self.tau = tau

    def forward(self, student: paddle.Tensor, teacher: paddle.Tensor) -> paddle.Tensor:
        """Args: student, teacher (Tensor): Have shape (N, C, H, W). Returns: 0-d loss."""
        student, teacher = _channels_last(student), _channels_last(teacher)
        return self.tau**2 * _kl_rows(student / self.tau, teacher / self.tau).mean()
