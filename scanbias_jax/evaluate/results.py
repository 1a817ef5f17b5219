"""Builds the results structure that `report.render` reads, from model outputs.

The structure is plain JSON (dicts, lists, str, float, int; NaN written as null
by `to_jsonable`). "mixed" names the set of all groups together and is reserved.

  results = {
    "schema_version": 1,
    "title": str,                            # optional
    "group_attribute": "vendor",             # manifest column the groups come from
    "groups": ["GE", "Siemens"],             # its values, in column order (>= 2)
    "name_manufacturer": {cond: Condition},  # usually {"mixed": ...}; positive_class
                                             # says which group label 1 is
    "spheres": {"easy"|"medium"|"hard": {cond: Condition}},
    "segmentation": {cond: Condition},
    "provenance": {
      "config": {...},                       # resolved config (secrets are redacted)
      "keys": {"seed": 0, ...},              # root seed and any named streams used
      "stages": {name: {"wall_s": float, "skipped": bool}},  # in run order
      "environment": {...},                  # optional: report.render fills it
    },
  }
  cond is "mixed" or a group value: the data the members were trained on.

  Condition (classification_condition / segmentation_condition):
    kind: "classification" | "segmentation"; train_group: cond; threshold: float
    positive_class: str (classification: what label 1 means, e.g. "sphere")
    n_members: int
    selection: {selected: [int], k, n_members, metrics: [str], criterion, reason}
    validation: Split                   # the condition's own validation set
    test: {"mixed": Split, group: Split, ...}
    transfer: {other_group: {metric: {difference, ci: [lo, hi], p_value, mdd, se, df,
               n_units, design, method}, reasons: {...}, level}}
               # metric(test[train_group]) - metric(test[other]), member-averaged
               # selected output (evaluate/harm.py); {} for "mixed"
    planted: {other_group: as transfer}  # the other group's test set with the planted
               # harm (experiments/planted.py); absent where none was planted
  Split, classification:
    n, n_positive, n_negative: int; n_studies: int where a study gives several samples
      (the paired sphere test); its intervals then resample studies
    members: [metrics.classification(...) per member, index = member]
    summary: {"selected"|"all": {metric: {mean, std, n, n_undefined, reason?}}}
    averaged: {"selected"|"all": {metrics: metrics.classification(...),
               ci: {metric: [lo, hi], reasons, n_resamples, level},
               roc: {fpr, tpr, auroc} | {reason}}}
    outputs: {labels: [int], scores: [[float] per member]}   # only if keep_outputs
  Split, segmentation: as above with n; members/averaged metrics from
    metrics.segmentation ({dice, n, n_undefined, reasons}); ci: {dice: [lo, hi], ...};
    no roc.

Metrics are fractions in [0, 1]; the report converts to the paper's units.
"""
import math
from typing import Mapping, Sequence

import jax
import numpy as np

from scanbias_jax import keys
from scanbias_jax.evaluate import bootstrap, harm, metrics, selection

MIXED = "mixed"
SCHEMA_VERSION = 1


def classification_split(key: jax.Array, labels, member_scores, selected: Sequence[int],
                         threshold: float = 0.5, n_resamples: int = 1000,
                         keep_outputs: bool = False, clusters=None) -> dict:
  """A Split from 0/1 labels (N,) and per-member probabilities (M, N); `clusters` (N,):
  the study each sample comes from, where a study gives several (then `n_studies`)."""
  labels = np.asarray(labels).astype(int).ravel()
  member_scores = np.asarray(member_scores, dtype=np.float64)
  per_member = [metrics.classification(labels, s, threshold) for s in member_scores]
  member_sets = dict(selected=list(selected), all=list(range(len(member_scores))))
  split = dict(n=int(labels.size), n_positive=int(labels.sum()),
               n_negative=int(labels.size - labels.sum()), members=per_member,
               summary={}, averaged={})
  if clusters is not None:
    split["n_studies"] = int(np.unique(np.asarray(clusters)).size)
  for name, chosen in member_sets.items():
    split["summary"][name] = metrics.member_summary(per_member, metrics.CLASSIFICATION, chosen)
    averaged = metrics.average_scores(member_scores, chosen)
    split["averaged"][name] = dict(
        metrics=metrics.classification(labels, averaged, threshold),
        ci=bootstrap.classification_ci(keys.stream(key, name), labels, averaged,
                                       n_resamples, threshold=threshold, clusters=clusters),
        roc=metrics.roc(labels, averaged))
  if keep_outputs:
    split["outputs"] = dict(labels=labels.tolist(), scores=member_scores.tolist())
  return split


def classification_condition(key: jax.Array, train_group: str, validation: tuple,
                             tests: Mapping[str, tuple], k: int | None,
                             positive_class: str,
                             selection_metrics: Sequence[str] = ("accuracy", "auroc"),
                             criterion: str = "mean", threshold: float = 0.5,
                             n_resamples: int = 1000, keep_outputs: bool = False,
                             planted: Mapping[str, tuple] | None = None) -> dict:
  """A Condition: selects on validation, then evaluates every test set.

  `validation` and each `tests[name]` are (labels (N,), member_scores (M, N)), or
  (labels, member_scores, clusters (N,)) where a study gives several samples.
  `planted[other]`: another group's test set with the planted harm
  (experiments/planted.py), compared with the own group's as `transfer` is.
  """
  val_labels, val_scores = validation[:2]
  val_members = [metrics.classification(val_labels, s, threshold)
                 for s in np.asarray(val_scores, dtype=np.float64)]
  chosen = selection.select_members(val_members, k, selection_metrics, criterion)

  def split(name, data):
    return classification_split(keys.stream(key, name), *data[:2], chosen.indices, threshold,
                                n_resamples, keep_outputs, *data[2:])

  condition = dict(kind="classification", train_group=train_group, threshold=threshold,
                   positive_class=positive_class, n_members=len(val_members),
                   selection=chosen.to_dict(), validation=split("validation", validation),
                   test={name: split(f"test/{name}", data) for name, data in tests.items()},
                   transfer={})
  if train_group != MIXED and train_group in tests:
    own_labels, own_scores = tests[train_group][:2]
    own = (own_labels, metrics.average_scores(own_scores, chosen.indices))

    def versus(data):  # own group's test set against another's
      clusters = ((tests[train_group][2], data[2]) if len(data) > 2 else None)
      return harm.classification_difference(
          own, (data[0], metrics.average_scores(data[1], chosen.indices)), threshold,
          clusters)

    condition["transfer"] = {other: versus(data) for other, data in tests.items()
                             if other not in (MIXED, train_group)}
    if planted:
      condition["planted"] = {other: versus(data) for other, data in planted.items()}
  return condition


def segmentation_split(key: jax.Array, member_dice, averaged_dice: Mapping[str, Sequence],
                       selected: Sequence[int], n_resamples: int = 1000,
                       clusters=None) -> dict:
  """A Split from per-member per-volume Dice (M, N) and the per-volume Dice of the
  member-averaged output, `averaged_dice = {"selected": (N,), "all": (N,)}`;
  `clusters` (N,): each volume's unit where a unit gives several (then `n_units`)."""
  member_dice = np.asarray(member_dice, dtype=np.float64)
  per_member = [metrics.segmentation(row) for row in member_dice]
  member_sets = dict(selected=list(selected), all=list(range(len(member_dice))))
  split = dict(n=int(member_dice.shape[1]), members=per_member, summary={}, averaged={})
  if clusters is not None:
    split["n_units"] = int(np.unique(np.asarray(clusters)).size)
  for name, chosen in member_sets.items():
    split["summary"][name] = metrics.member_summary(per_member, ("dice",), chosen)
    split["averaged"][name] = dict(
        metrics=metrics.segmentation(averaged_dice[name]),
        ci=bootstrap.mean_ci(keys.stream(key, name), averaged_dice[name], n_resamples,
                             clusters=clusters))
  return split


def select_by_dice(validation_member_dice, k: int | None) -> selection.Selection:
  """The segmentation selection: best k members by mean validation Dice."""
  per_member = [metrics.segmentation(row) for row in np.asarray(validation_member_dice)]
  return selection.select_members(per_member, k, ("dice",))


def segmentation_condition(key: jax.Array, train_group: str,
                           chosen: selection.Selection, validation: Mapping,
                           tests: Mapping[str, Mapping], threshold: float = 0.5,
                           n_resamples: int = 1000) -> dict:
  """A segmentation Condition. Flow: `chosen = select_by_dice(val_member_dice, k)`,
  then average the chosen (and all) members' probability masks per volume and
  take `metrics.dice_volume`; pass each set as
  {"member_dice": (M, N), "averaged_dice": {"selected": (N,), "all": (N,)}} and
  optionally "clusters" (N,)."""

  def split(name, data):
    return segmentation_split(keys.stream(key, name), data["member_dice"],
                              data["averaged_dice"], chosen.indices, n_resamples,
                              data.get("clusters"))

  condition = dict(kind="segmentation", train_group=train_group, threshold=threshold,
                   n_members=chosen.n_members, selection=chosen.to_dict(),
                   validation=split("validation", validation),
                   test={name: split(f"test/{name}", data) for name, data in tests.items()},
                   transfer={})
  if train_group != MIXED and train_group in tests:
    own = tests[train_group]["averaged_dice"]["selected"]
    for other, data in tests.items():
      if other not in (MIXED, train_group):
        clusters = tests[train_group].get("clusters"), data.get("clusters")
        condition["transfer"][other] = harm.mean_difference(
            own, data["averaged_dice"]["selected"],
            None if clusters[0] is None or clusters[1] is None else clusters)
  return condition


def to_jsonable(value):
  """Numpy scalars/arrays to Python, non-finite floats to None (strict JSON)."""
  if isinstance(value, Mapping):
    return {str(k): to_jsonable(v) for k, v in value.items()}
  if isinstance(value, (list, tuple)):
    return [to_jsonable(v) for v in value]
  if isinstance(value, np.ndarray):
    return to_jsonable(value.tolist())
  if isinstance(value, (np.bool_, bool)):
    return bool(value)
  if isinstance(value, (np.integer,)):
    return int(value)
  if isinstance(value, (float, np.floating)):
    return float(value) if math.isfinite(value) else None
  return value
