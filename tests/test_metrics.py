"""Metrics against hand-computed cases and scikit-learn; undefined cases."""
import warnings

import numpy as np
import pytest
from sklearn import metrics as skm

from scanbias_jax.evaluate import metrics


def test_hand_computed_case():
  out = metrics.classification([0, 0, 1, 1], [0.1, 0.6, 0.4, 0.9])
  # Called positive: 0.6 (a false positive) and 0.9; 0.4 is a missed positive.
  assert out["accuracy"] == 0.5
  assert out["sensitivity"] == 0.5
  assert out["specificity"] == 0.5
  # Positive-negative pairs ranked right: (0.4>0.1), (0.9>0.1), (0.9>0.6) = 3 of 4.
  assert out["auroc"] == 0.75
  assert (out["n"], out["n_positive"], out["n_negative"]) == (4, 2, 2)
  assert out["reasons"] == {}


def test_threshold_is_inclusive():
  out = metrics.classification([1, 0], [0.5, 0.4999])
  assert out["accuracy"] == 1.0


def test_matches_scikit_learn():
  rng = np.random.default_rng(0)
  labels = rng.integers(0, 2, 300)
  scores = np.clip(0.3 * labels + rng.random(300) * 0.7, 0, 1).round(2)  # with ties
  out = metrics.classification(labels, scores, threshold=0.45)
  predicted = scores >= 0.45
  assert out["accuracy"] == pytest.approx(skm.accuracy_score(labels, predicted))
  assert out["sensitivity"] == pytest.approx(skm.recall_score(labels, predicted))
  assert out["specificity"] == pytest.approx(skm.recall_score(labels, predicted, pos_label=0))
  assert out["auroc"] == pytest.approx(skm.roc_auc_score(labels, scores))
  curve = metrics.roc(labels, scores)
  fpr, tpr, _ = skm.roc_curve(labels, scores)
  np.testing.assert_allclose(curve["fpr"], fpr)
  np.testing.assert_allclose(curve["tpr"], tpr)


@pytest.mark.parametrize("label", [0, 1])
def test_single_class_is_nan_with_reason_not_a_crash(label):
  with warnings.catch_warnings():
    warnings.simplefilter("error")  # scikit-learn's undefined-metric warnings too
    out = metrics.classification([label] * 5, [0.2, 0.7, 0.9, 0.1, 0.6])
    curve = metrics.roc([label] * 5, [0.2, 0.7, 0.9, 0.1, 0.6])
  assert np.isnan(out["auroc"]) and "one class present" in out["reasons"]["auroc"]
  assert out["accuracy"] == pytest.approx(0.6 if label else 0.4)
  undefined = "specificity" if label else "sensitivity"
  defined = "sensitivity" if label else "specificity"
  assert np.isnan(out[undefined]) and out["reasons"][undefined]
  assert np.isfinite(out[defined])
  assert "fpr" not in curve and "one class present" in curve["reason"]


def test_empty_and_non_finite_inputs():
  empty = metrics.classification([], [])
  assert all(np.isnan(empty[m]) for m in metrics.CLASSIFICATION)
  assert empty["reasons"]["accuracy"] == "no studies"
  broken = metrics.classification([0, 1], [0.2, np.nan])
  assert np.isnan(broken["auroc"]) and "non-finite" in broken["reasons"]["auroc"]
  with pytest.raises(ValueError):
    metrics.classification([0, 2], [0.1, 0.2])


def test_dice_hand_cases():
  truth = np.array([[1, 0, 1, 0]])
  assert metrics.dice([[0.9, 0.8, 0.1, 0.0]], truth)[0] == pytest.approx(0.5)
  assert metrics.dice([[0.9, 0.2, 0.6, 0.0]], truth)[0] == 1.0
  assert metrics.dice([[0.49, 0.0, 0.3, 0.0]], truth)[0] == 0.0  # below threshold
  assert np.isnan(metrics.dice([[0.1, 0.1, 0.1, 0.1]], [[0, 0, 0, 0]])[0])
  assert metrics.dice_volume(np.ones((2, 2, 2)), np.ones((2, 2, 2))) == 1.0
  volumes = np.zeros((3, 4, 4, 2))
  volumes[0, :2] = 1  # 16 voxels
  masks = np.zeros_like(volumes)
  masks[0, :1] = 1    # 8 voxels, all inside the prediction
  masks[1, 0, 0, 0] = 1
  np.testing.assert_allclose(metrics.dice(volumes, masks), [2 * 8 / 24, 0.0, np.nan])
  with pytest.raises(ValueError):
    metrics.dice(np.ones((2, 3)), np.ones((2, 4)))


def test_segmentation_mean_skips_undefined_volumes():
  out = metrics.segmentation([0.8, np.nan, 0.6])
  assert out["dice"] == pytest.approx(0.7)
  assert (out["n"], out["n_undefined"]) == (3, 1)
  none = metrics.segmentation([np.nan])
  assert np.isnan(none["dice"]) and none["reasons"]["dice"] == "all masks empty"


def test_member_summary():
  members = [dict(accuracy=a, reasons={}) for a in (0.6, 0.8, 1.0, np.nan)]
  out = metrics.member_summary(members, ["accuracy"])["accuracy"]
  assert out["mean"] == pytest.approx(0.8)
  assert out["std"] == pytest.approx(0.2)  # sample std (ddof=1) of 0.6, 0.8, 1.0
  assert (out["n"], out["n_undefined"]) == (3, 1)
  one = metrics.member_summary(members, ["accuracy"], members=[1])["accuracy"]
  assert one["mean"] == 0.8 and np.isnan(one["std"]) and one["std_reason"] == "one member"
  nan_members = [dict(auroc=np.nan, reasons=dict(auroc="one class present (all positive)"))]
  out = metrics.member_summary(nan_members * 2, ["auroc"])["auroc"]
  assert np.isnan(out["mean"]) and out["reason"].startswith("one class present")


def test_average_scores():
  scores = np.array([[0.0, 1.0], [0.5, 0.5], [1.0, 0.0]])
  np.testing.assert_allclose(metrics.average_scores(scores), [0.5, 0.5])
  np.testing.assert_allclose(metrics.average_scores(scores, [0, 1]), [0.25, 0.75])


def test_skull_strip_dice_of_empty_masks_is_undefined_not_perfect():
  """One Dice for the whole tool: prepare's skull-strip check records None where
  metrics.dice is NaN (both masks empty), not a perfect score."""
  from scanbias_jax.experiments import prepare
  empty = np.zeros((4, 4, 2), bool)
  assert prepare.truth_dice(empty, empty) is None
  half = empty.copy()
  half[:2] = True
  assert prepare.truth_dice(half, half) == 1.0
  assert prepare.truth_dice(half, np.ones_like(half)) == 2 * 16 / (16 + 32)
