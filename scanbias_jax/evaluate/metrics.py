"""Classification and segmentation metrics from per-member outputs.

Scores are probabilities in [0, 1] (the sigmoid output); a study is called
positive when its score is >= `threshold`. A metric that is undefined on the
data it is given (AUROC with one class present, sensitivity without positives,
Dice of two empty masks) is NaN, and `reasons[metric]` says why. Nothing here
raises on such data, so one degenerate test subset never stops a study.
"""
from typing import Sequence

import numpy as np
from sklearn import metrics as skm

CLASSIFICATION = ("accuracy", "sensitivity", "specificity", "auroc")
NAN = float("nan")


def _counts(labels: np.ndarray, predicted: np.ndarray) -> tuple[int, int, int, int]:
  """(tn, fp, fn, tp) from scikit-learn, with both classes always on the axes."""
  tn, fp, fn, tp = skm.confusion_matrix(labels, predicted, labels=[0, 1]).ravel()
  return int(tn), int(fp), int(fn), int(tp)


def _as_binary(labels) -> np.ndarray:
  labels = np.asarray(labels).astype(int).ravel()
  if not np.isin(labels, (0, 1)).all():
    raise ValueError(f"labels must be 0/1, got values {np.unique(labels).tolist()}")
  return labels


def classification(labels, scores, threshold: float = 0.5) -> dict:
  """Accuracy, sensitivity, specificity and AUROC of one set of scores.

  Returns a JSON-ready dict: the four metrics (floats, NaN when undefined),
  `n`, `n_positive`, `n_negative`, and `reasons` (metric -> why it is NaN).
  """
  labels = _as_binary(labels)
  scores = np.asarray(scores, dtype=np.float64).ravel()
  if scores.shape != labels.shape:
    raise ValueError(f"{scores.shape[0]} scores for {labels.shape[0]} labels")
  n_pos, n_neg = int(labels.sum()), int((1 - labels).sum())
  out = dict(n=int(labels.size), n_positive=n_pos, n_negative=n_neg, reasons={})
  if labels.size == 0:
    out.update({m: NAN for m in CLASSIFICATION})
    out["reasons"] = {m: "no studies" for m in CLASSIFICATION}
    return out
  if not np.isfinite(scores).all():
    out.update({m: NAN for m in CLASSIFICATION})
    out["reasons"] = {m: "non-finite model outputs" for m in CLASSIFICATION}
    return out
  tn, fp, fn, tp = _counts(labels, (scores >= threshold).astype(int))
  out["accuracy"] = (tp + tn) / labels.size
  if n_pos:
    out["sensitivity"] = tp / (tp + fn)
  else:
    out["sensitivity"], out["reasons"]["sensitivity"] = NAN, "no positive studies"
  if n_neg:
    out["specificity"] = tn / (tn + fp)
  else:
    out["specificity"], out["reasons"]["specificity"] = NAN, "no negative studies"
  if n_pos and n_neg:
    out["auroc"] = float(skm.roc_auc_score(labels, scores))
  else:
    present = "positive" if n_pos else "negative"
    out["auroc"] = NAN
    out["reasons"]["auroc"] = f"one class present (all {present})"
  return out


def roc(labels, scores) -> dict:
  """ROC curve points {fpr, tpr, auroc}, or {reason} when it is undefined."""
  labels = _as_binary(labels)
  scores = np.asarray(scores, dtype=np.float64).ravel()
  if labels.size == 0:
    return dict(reason="no studies")
  if labels.min() == labels.max():
    present = "positive" if labels[0] else "negative"
    return dict(reason=f"one class present (all {present})")
  if not np.isfinite(scores).all():
    return dict(reason="non-finite model outputs")
  fpr, tpr, _ = skm.roc_curve(labels, scores)
  return dict(fpr=fpr.tolist(), tpr=tpr.tolist(),
              auroc=float(skm.roc_auc_score(labels, scores)))


def dice(probabilities, masks, threshold: float = 0.5) -> np.ndarray:
  """Hard Dice per volume of thresholded predictions against binary masks.

  `probabilities` and `masks` are (N, ...): the first axis indexes volumes;
  returns (N,). Two empty masks give NaN: agreement on nothing is not a
  segmentation score, and averaging a 1.0 in would flatter the model.
  """
  predicted = np.asarray(probabilities) >= threshold
  truth = np.asarray(masks) > 0
  if predicted.shape != truth.shape or predicted.ndim < 2:
    raise ValueError(f"prediction {predicted.shape} and mask {truth.shape} must be "
                     "equal (N, ...) shapes")
  axes = tuple(range(1, predicted.ndim))
  overlap = np.logical_and(predicted, truth).sum(axis=axes).astype(np.float64)
  total = (predicted.sum(axis=axes) + truth.sum(axis=axes)).astype(np.float64)
  return np.divide(2.0 * overlap, total, out=np.full(total.shape, NAN), where=total > 0)


def dice_volume(probability, mask, threshold: float = 0.5) -> float:
  """Hard Dice of one volume (see `dice`)."""
  return float(dice(np.asarray(probability)[None], np.asarray(mask)[None], threshold)[0])


def segmentation(per_volume_dice) -> dict:
  """Mean Dice over volumes (those where Dice is defined), JSON-ready."""
  values = np.asarray(per_volume_dice, dtype=np.float64).ravel()
  defined = values[np.isfinite(values)]
  out = dict(n=int(values.size), n_undefined=int(values.size - defined.size), reasons={})
  if defined.size:
    out["dice"] = float(defined.mean())
  else:
    out["dice"] = NAN
    out["reasons"]["dice"] = "no volumes" if not values.size else "all masks empty"
  return out


def member_summary(per_member: Sequence[dict], names: Sequence[str],
                   members: Sequence[int] | None = None) -> dict:
  """Mean and sample std (ddof=1) over members of each metric.

  `per_member[i]` is a dict as returned by `classification` or `segmentation`;
  `members` restricts to those indices (e.g. the selected ones). Members where a
  metric is NaN are left out of it and counted; a metric NaN for every member
  is NaN with that member's reason. Std of a single member is NaN.
  """
  chosen = list(range(len(per_member))) if members is None else list(members)
  out = {}
  for name in names:
    values = np.array([per_member[i][name] for i in chosen], dtype=np.float64)
    finite = values[np.isfinite(values)]
    entry = dict(n=int(finite.size), n_undefined=int(values.size - finite.size))
    if finite.size == 0:
      reasons = [per_member[i].get("reasons", {}).get(name) for i in chosen]
      reason = next((r for r in reasons if r), "no members" if not chosen else "undefined")
      entry.update(mean=NAN, std=NAN, reason=reason)
    else:
      entry["mean"] = float(finite.mean())
      entry["std"] = float(finite.std(ddof=1)) if finite.size > 1 else NAN
      if finite.size == 1:
        entry["std_reason"] = "one member"
    out[name] = entry
  return out


def average_scores(member_scores, members: Sequence[int] | None = None) -> np.ndarray:
  """The member-averaged output: mean probability over (the chosen) members."""
  member_scores = np.asarray(member_scores, dtype=np.float64)
  if member_scores.ndim < 2:
    raise ValueError("member_scores must be (members, studies, ...)")
  chosen = slice(None) if members is None else list(members)
  return member_scores[chosen].mean(axis=0)
