"""seg_runtime.evaluate_export: the val metrics of several exported models and their label
agreement, checked against IoUs and agreements counted by hand."""

import numpy as np
import pytest
from seg_runtime import evaluate_export

# Two 2x3 images, 3 classes, 255 ignored. Ground truth and two models' labels per image.
GT = [np.array([[0, 0, 1], [1, 2, 255]]), np.array([[2, 2, 2], [0, 1, 1]])]
A = [np.array([[0, 0, 1], [1, 2, 2]]), np.array([[2, 2, 2], [0, 1, 1]])]  # perfect
B = [np.array([[0, 1, 1], [1, 2, 0]]), np.array([[2, 0, 0], [0, 1, 2]])]


def lookup(labels):
    return lambda i: labels[i]


def hand_miou(pred, gt):
    """IoU per class over the non-ignored pixels of both images, mean over present classes."""
    pred = np.concatenate([p.ravel() for p in pred])
    gt = np.concatenate([g.ravel() for g in gt])
    keep = gt != 255
    pred, gt = pred[keep], gt[keep]
    ious = []
    for c in range(3):
        union = np.sum((pred == c) | (gt == c))
        if union:
            ious.append(np.sum((pred == c) & (gt == c)) / union)
    return float(np.mean(ious)), float(np.mean(pred == gt))


def test_metrics_and_agreement_match_a_hand_count():
    report = evaluate_export({"a": lookup(A), "b": lookup(B)}, enumerate(GT), 3, 255)
    assert report["models"]["a"]["mIoU"] == pytest.approx(1.0)
    miou, acc = hand_miou(B, GT)
    assert report["models"]["b"]["mIoU"] == pytest.approx(miou)
    assert report["models"]["b"]["Acc"] == pytest.approx(acc)
    assert report["models"]["b"]["images"] == 2
    # Agreement counts every pixel, ignored ones included: 4/6 and 3/6 equal to a's labels.
    pair = report["agreement"]["b vs a"]
    assert pair["mean"] == pytest.approx((4 / 6 + 3 / 6) / 2)
    assert pair["min_image"] == pytest.approx(3 / 6)
    assert set(report["agreement"]) == {"b vs a"}


def test_explicit_pairs_and_batched_label_maps():
    models = {
        "a": lambda i: A[i][None, None],  # (1, 1, H, W), as a runner returns labels
        "b": lookup(B),
        "c": lookup(A),
    }
    report = evaluate_export(models, enumerate(GT), 3, 255, pairs=[("c", "a"), ("b", "c")])
    assert report["agreement"]["c vs a"] == {"mean": 1.0, "min_image": 1.0}
    assert report["agreement"]["b vs c"]["mean"] < 1.0
    assert set(report["agreement"]) == {"c vs a", "b vs c"}


def test_labels_of_another_size_are_resized_nearest_to_the_ground_truth():
    gt = np.repeat(np.repeat(A[0], 2, axis=0), 2, axis=1)  # 4x6
    report = evaluate_export({"half": lambda _: A[0]}, [(None, gt)], 3, 255)
    assert report["models"]["half"]["mIoU"] == pytest.approx(1.0)


def test_errors_name_the_problem():
    with pytest.raises(ValueError, match="at least one model"):
        evaluate_export({}, enumerate(GT), 3)
    with pytest.raises(ValueError, match="no model named 'z'"):
        evaluate_export({"a": lookup(A)}, enumerate(GT), 3, pairs=[("a", "z")])
    with pytest.raises(ValueError, match="got no samples"):
        evaluate_export({"a": lookup(A)}, [], 3)
    with pytest.raises(ValueError, match=r"model 'two' returned \(2, 2, 3\)"):
        evaluate_export({"two": lambda i: np.stack(A)}, enumerate(GT), 3)
