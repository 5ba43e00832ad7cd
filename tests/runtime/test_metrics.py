import math

import cv2
import numpy as np
import pytest
from seg_runtime.metrics import (
    SegMetricAccumulator,
    confusion_matrix,
    lpcvc_accuracy,
    lpcvc_image_dice,
    resize_nearest,
    segmentation_metrics,
)
from sklearn.metrics import cohen_kappa_score

# A 3-class example used by several tests. Pixel pairs (gt, pred):
# (0,0) (0,1) (1,1) / (1,1) (2,2) (2,0)
LABEL = np.array([[0, 0, 1], [1, 2, 2]], dtype=np.uint8)
PRED = np.array([[0, 1, 1], [1, 2, 0]], dtype=np.int64)
CM = np.array([[1, 1, 0], [0, 2, 0], [1, 0, 1]])

# LPCVC example, 4 classes. Pairs (gt, pred): (0,0) (0,2) / (1,1) (1,1).
# class 0: TP 1, pred 1, gt 2 -> 2*1/3 = 2/3
# class 1: TP 2, pred 2, gt 2 -> 1
# class 2: TP 0, pred 1, gt 0 -> 0 (predicted but absent: counts as 0)
# class 3: absent from both -> NaN, skipped
# image score = (2/3 + 1 + 0) / 3 = 5/9
LP_LABEL = np.array([[0, 0], [1, 1]], dtype=np.uint8)
LP_PRED = np.array([[0, 2], [1, 1]], dtype=np.int64)
LP_SCORE = 5 / 9


def test_confusion_matrix_rows_are_ground_truth():
    cm = confusion_matrix(PRED, LABEL, num_classes=3)
    assert cm.dtype == np.int64
    np.testing.assert_array_equal(cm, CM)


def test_confusion_matrix_skips_ignore_pixels():
    label = np.array([[0, 255, 1, 255]], dtype=np.uint8)
    pred = np.array([[0, 1, 0, 2]])
    # kept pairs: (0,0) and (1,0); the two 255 pixels vanish whatever was predicted
    expected = np.array([[1, 0, 0], [1, 0, 0], [0, 0, 0]])
    np.testing.assert_array_equal(confusion_matrix(pred, label, 3), expected)
    # with ignore disabled the 255 is an invalid class id
    with pytest.raises(ValueError, match=r"label contains class id 255, outside \[0, 3\)"):
        confusion_matrix(pred, label, 3, ignore_index=None)


def test_confusion_matrix_batched_equals_sum_of_images():
    rng = np.random.default_rng(0)
    label = rng.integers(0, 4, size=(3, 5, 6))
    pred = rng.integers(0, 4, size=(3, 5, 6))
    total = sum(confusion_matrix(p, g, 4) for p, g in zip(pred, label, strict=True))
    np.testing.assert_array_equal(confusion_matrix(pred, label, 4), total)
    assert confusion_matrix(pred, label, 4).sum() == 3 * 5 * 6


def test_confusion_matrix_errors():
    with pytest.raises(ValueError, match=r"pred \(2, 3\) and label \(3, 2\)"):
        confusion_matrix(np.zeros((2, 3)), np.zeros((3, 2)), 2)
    with pytest.raises(ValueError, match=r"pred contains class id 7, outside \[0, 3\)"):
        confusion_matrix(np.array([0, 7]), np.array([0, 1]), 3)


def test_segmentation_metrics_hand_computed():
    m = segmentation_metrics(CM)
    # TP = [1, 2, 1], GT = row sums [2, 2, 2], P = column sums [2, 3, 1]
    # IoU = TP / (GT + P - TP) = [1/3, 2/3, 1/2] -> mean 1.5 / 3 = 0.5
    assert m["class_IoU"] == pytest.approx([1 / 3, 2 / 3, 1 / 2])
    assert m["mIoU"] == pytest.approx(0.5)
    # Dice = 2 TP / (GT + P) = [2/4, 4/5, 2/3]
    assert m["class_Dice"] == pytest.approx([0.5, 0.8, 2 / 3])
    assert m["mDice"] == pytest.approx((0.5 + 0.8 + 2 / 3) / 3)
    # Acc = 4 / 6
    assert m["Acc"] == pytest.approx(2 / 3)
    # p_o = 2/3, p_e = (2*2 + 2*3 + 2*1) / 6^2 = 1/3, kappa = (2/3 - 1/3) / (1 - 1/3) = 0.5
    assert m["Kappa"] == pytest.approx(0.5)
    assert all(type(m[k]) is float for k in ("mIoU", "mDice", "Acc", "Kappa"))
    assert all(type(v) is float for v in m["class_IoU"] + m["class_Dice"])


def test_kappa_matches_sklearn():
    rng = np.random.default_rng(1)
    label = rng.integers(0, 5, size=(40, 30))
    # a prediction that agrees more than chance: 60 % copied from the label
    pred = np.where(rng.random(label.shape) < 0.6, label, rng.integers(0, 5, label.shape))
    m = segmentation_metrics(confusion_matrix(pred, label, 5))
    expected = cohen_kappa_score(label.ravel(), pred.ravel())
    assert m["Kappa"] == pytest.approx(expected, abs=1e-12)
    assert m["Acc"] == pytest.approx(np.mean(pred == label))


def test_absent_class_is_nan_and_skipped_by_the_means():
    # same pixels as CM but with a 4th class that appears nowhere
    m = segmentation_metrics(confusion_matrix(PRED, LABEL, num_classes=4))
    assert math.isnan(m["class_IoU"][3])
    assert math.isnan(m["class_Dice"][3])
    assert m["mIoU"] == pytest.approx(0.5)
    assert m["mDice"] == pytest.approx((0.5 + 0.8 + 2 / 3) / 3)


def test_class_predicted_but_absent_from_gt_scores_zero():
    label = np.array([0, 0, 0, 0])
    pred = np.array([0, 0, 1, 1])
    m = segmentation_metrics(confusion_matrix(pred, label, 2))
    # class 0: IoU 2/4, class 1: TP 0 over union 2 -> 0 (not NaN)
    assert m["class_IoU"] == pytest.approx([0.5, 0.0])
    assert m["mIoU"] == pytest.approx(0.25)
    # single class in the label: p_e = (4*2 + 0*2)/16 = 0.5, p_o = 0.5 -> kappa 0
    assert m["Kappa"] == pytest.approx(0.0)


def test_degenerate_matrices():
    empty = segmentation_metrics(np.zeros((3, 3), dtype=np.int64))
    assert math.isnan(empty["mIoU"]) and math.isnan(empty["Acc"]) and math.isnan(empty["Kappa"])
    # one class everywhere: perfect but kappa undefined (0/0), as in scikit-learn
    single = segmentation_metrics(np.array([[5, 0], [0, 0]]))
    assert single["mIoU"] == 1.0 and single["Acc"] == 1.0
    assert math.isnan(single["Kappa"])
    with pytest.raises(ValueError, match=r"must be square \(C, C\), got shape \(2, 3\)"):
        segmentation_metrics(np.zeros((2, 3)))


def test_lpcvc_image_dice_nanmean_semantics():
    assert lpcvc_image_dice(LP_PRED, LP_LABEL, num_classes=4) == pytest.approx(LP_SCORE)
    # with 14 classes, the 10 extra classes are absent from both and change nothing
    assert lpcvc_image_dice(LP_PRED, LP_LABEL) == pytest.approx(LP_SCORE)
    # a perfect prediction scores 1 whatever the number of absent classes
    assert lpcvc_image_dice(LP_LABEL, LP_LABEL) == 1.0


def test_lpcvc_image_dice_differs_from_dataset_dice():
    # second image: everything is class 3, predicted as 3 -> image score 1
    label2 = np.full((2, 2), 3, dtype=np.uint8)
    assert lpcvc_accuracy([LP_PRED, label2], [LP_LABEL, label2], num_classes=4) == pytest.approx(
        (LP_SCORE + 1.0) / 2
    )
    # dataset-level Dice of the same pixels: class 2 (0) and 3 (1) now both count, and
    # classes 0/1 keep 2/3 and 1 -> (2/3 + 1 + 0 + 1) / 4 = 2/3, not (5/9 + 1) / 2 = 7/9
    acc = SegMetricAccumulator(num_classes=4, lpcvc=True)
    acc.update(np.stack([LP_PRED, label2]), np.stack([LP_LABEL, label2]))
    m = acc.compute()
    assert m["mDice"] == pytest.approx(2 / 3)
    assert m["LPCVC_Dice"] == pytest.approx(7 / 9)


def test_lpcvc_resizes_both_maps_to_512_nearest():
    # a 4x4 label that is the 2x2 one with every pixel doubled: same proportions after resizing
    label4 = np.kron(LP_LABEL, np.ones((2, 2), dtype=np.uint8))
    assert lpcvc_image_dice(LP_PRED, label4) == pytest.approx(LP_SCORE)
    # 3x3 -> 512: nearest rows/cols 0..2 cover 171, 171, 170 pixels (floor(i * 3 / 512))
    label3 = np.array([[0, 0, 0], [0, 0, 0], [0, 0, 1]], dtype=np.uint8)
    pred = np.zeros((512, 512), dtype=np.int64)
    # class 1 covers 170 * 170 = 28900 pixels of the 512x512 label, never predicted:
    # class 0: TP = 512^2 - 28900, pred 512^2, gt 512^2 - 28900; class 1: 0
    n = 512 * 512
    dice0 = 2 * (n - 28900) / (n + n - 28900)
    assert lpcvc_image_dice(pred, label3) == pytest.approx((dice0 + 0.0) / 2)
    # the size is a parameter: at 3x3 nothing is resized, class 1 is 1 pixel of 9
    assert lpcvc_image_dice(np.zeros((3, 3)), label3, size=3) == pytest.approx(
        (2 * 8 / 17 + 0.0) / 2
    )


def test_resize_nearest_matches_opencv():
    rng = np.random.default_rng(2)
    for shape, size in (((3, 5), 512), ((700, 300), 512), ((17, 17), (8, 11))):
        label = rng.integers(0, 14, size=shape).astype(np.uint8)
        out_h, out_w = (size, size) if isinstance(size, int) else size
        expected = cv2.resize(label, (out_w, out_h), interpolation=cv2.INTER_NEAREST)
        np.testing.assert_array_equal(resize_nearest(label, size), expected)
        # int64 (argmax output) is handled too, where OpenCV refuses the dtype
        np.testing.assert_array_equal(resize_nearest(label.astype(np.int64), size), expected)


def test_lpcvc_accuracy_errors():
    with pytest.raises(ValueError, match="got 1 predictions but 2 labels"):
        lpcvc_accuracy([LP_PRED], [LP_LABEL, LP_LABEL])
    with pytest.raises(ValueError, match="at least one image"):
        lpcvc_accuracy([], [])


def test_accumulator_batches_singles_and_channel_axis_agree():
    rng = np.random.default_rng(3)
    label = rng.integers(0, 3, size=(4, 6, 6)).astype(np.uint8)
    label[0, 0, :] = 255
    pred = rng.integers(0, 3, size=(4, 6, 6))

    batched = SegMetricAccumulator(3, lpcvc=True, lpcvc_size=6)
    batched.update(pred[:2], label[:2])
    batched.update(pred[2:, None], label[2:, None])  # (N, 1, H, W) as PaddleSeg val labels
    singles = SegMetricAccumulator(3, lpcvc=True, lpcvc_size=6)
    for p, g in zip(pred, label, strict=True):
        singles.update(p, g)

    np.testing.assert_array_equal(batched.confusion, singles.confusion)
    np.testing.assert_array_equal(batched.confusion, confusion_matrix(pred, label, 3))
    assert batched.num_images == singles.num_images == 4
    expected_dice = np.mean(
        [lpcvc_image_dice(p, g, num_classes=3, size=6) for p, g in zip(pred, label, strict=True)]
    )
    assert batched.compute()["LPCVC_Dice"] == pytest.approx(expected_dice)
    assert batched.compute() == singles.compute()
    assert batched.compute()["mIoU"] == pytest.approx(
        segmentation_metrics(confusion_matrix(pred, label, 3))["mIoU"]
    )

    plain = SegMetricAccumulator(3)
    plain.update(pred, label)
    assert "LPCVC_Dice" not in plain.compute()
    plain.reset()
    assert plain.confusion.sum() == 0 and plain.num_images == 0


def test_accumulator_rejects_bad_layout():
    acc = SegMetricAccumulator(3)
    with pytest.raises(ValueError, match=r"pred must be \(H, W\), \(N, H, W\) or \(N, 1, H, W\)"):
        acc.update(np.zeros((2, 3, 4, 4)), np.zeros((2, 3, 4, 4)))
