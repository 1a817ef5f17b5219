"""The audit's CNN: "Name the X" by a ShallowCNN seed ensemble, for the attributes the
config names (`audit.cnn_attributes`) and the `audit.cnn_strongest` strongest by the
probe's AUROC.

Inputs are Name the Manufacturer's (experiments/brain_crops.py): stacks of brain crops
of each ingested volume at its own resolution, windowed as the paper's Original set,
the brain found by thresholds (probe.brain_mask) as an export has no prepared masks.
The network and its training are the study's (`config.models.name_manufacturer`) with
one softmax output a group (`task_config`), trained by the engine's vmapped ensembles.

One split, grouped by patient and stratified by the attribute (`audit.held_out_split`
over `audit.folds` folds: 1 fold tests, 1 validates, the rest train). A CNN costs a
fit, so it is not cross-fitted over the folds as the probe is: it is scored on the
test studies alone (crop probabilities averaged per study, then over the members),
and the probe, fitted on the same training and validation studies, is scored on the
same test studies beside it.
"""
from pathlib import Path

import joblib
import ml_collections
import numpy as np

from scanbias_jax import keys
from scanbias_jax.evaluate import audit, probe
from scanbias_jax.experiments import brain_crops, common, datasets

TASK = "name_attribute"


def chosen(settings: audit.Settings, named: dict) -> list[str]:
  """The attributes the CNN names: those listed, then the `cnn_strongest` testable ones
  of highest probe AUROC; an attribute the probe could not test is left out."""
  testable = [a for a, r in named.items() if r.get("testable")]
  picked = [a for a in settings.cnn_attributes if a in testable]
  ranked = sorted(testable, key=lambda a: -named[a]["auroc"])
  picked += [a for a in ranked if a not in picked][:settings.cnn_strongest]
  return picked


def crop_settings(config) -> dict:
  """Name the Manufacturer's crop settings: the audit's CNN sees what the study's sees."""
  exp = config.experiments
  level, width = config.prepare.original_window
  return dict(size=exp.crop_size, n_slices=config.prepare.stack_slices, level=level,
              width=width, per_purpose={"train": exp.train_crops_per_study,
                                        "eval": exp.eval_crops_per_study})


def crops_of(path: Path, study_key, size: int, n_slices: int, level: float, width: float,
             per_purpose: dict) -> tuple:
  """({purpose: crops} of one ingested volume, None) or (None, why it has none)."""
  volume, spacing = datasets.read_nifti(path)
  volume = np.asarray(volume, np.float32)
  mask = probe.brain_mask(volume, float(spacing[0]))
  try:
    return {purpose: brain_crops.study_crops(
        volume, mask, size, n, n_slices, keys.stream(study_key, purpose), level, width)
        for purpose, n in per_purpose.items()}, None
  except ValueError as error:
    return None, str(error)


def study_crops(config, cohort_dir: Path, rows, key, workers: int) -> tuple[list, list]:
  """Each row's {purpose: crops} (None where no crop fits) and the reasons, in
  `workers` processes; a study's crops depend on its id alone."""
  settings = crop_settings(config)
  crops_key = keys.stream(key, "crops")
  out = joblib.Parallel(n_jobs=workers)(
      joblib.delayed(crops_of)(cohort_dir / row["path"], keys.stream(crops_key, row["study_id"]),
                               **settings) for row in rows)
  return [c for c, _ in out], [f"study {row['study_id']}: {why}"
                               for row, (_, why) in zip(rows, out) if why]


def task_config(config, classes: int) -> ml_collections.ConfigDict:
  """The config with `models.name_attribute`: Name the Manufacturer's network and
  training (`models.name_manufacturer`, whatever the config made of it) with one
  softmax output a group, its members chosen by balanced accuracy."""
  config = ml_collections.ConfigDict(config.to_dict())
  config.models[TASK] = ml_collections.ConfigDict(config.models.name_manufacturer.to_dict())
  config.models[TASK].update(dict(loss="softmax_cross_entropy",
                                  select_metric="val_balanced_accuracy"))
  config.models[TASK].model_kwargs.classes = classes
  return config


def _stacked(crops: list, rows, purpose: str) -> tuple:
  """x [crops, ...], study row of each crop [crops] for the studies `rows`."""
  x = np.concatenate([crops[r][purpose] for r in rows])
  study = np.repeat(np.arange(len(rows)), [len(crops[r][purpose]) for r in rows])
  return x, study


def name_attribute(config, settings: audit.Settings, values, patients, crops: list,
                   features, key, workdir: str) -> dict:
  """{"cnn": held-out numbers, "probe": the probe's on the same test studies, "split"}
  of one attribute; `values`, `patients`, `crops`, `features` per study; the ensemble
  trains (or resumes) under `workdir`."""
  has_crops = np.array([c is not None for c in crops])
  values = [v if ok else "" for v, ok in zip(values, has_crops)]
  groups, keep, labels, reason = audit.labelled(values, settings)
  if reason:
    return {"testable": False, "reason": reason}
  units = np.asarray(patients)[keep]
  if int(np.bincount(labels).min()) < max(settings.folds, 3):
    return {"testable": False, "reason": "too few studies a group for a held-out split"}
  train, val, test = audit.held_out_split(labels, units, settings.folds, config.seed)
  # Unequal groups (a site's kVp, say) would tilt the softmax towards the larger: each
  # training study of a smaller group is repeated (its crops flipped afresh each time)
  # so every group gives about as many training crops.
  counts = np.bincount(labels[train], minlength=len(groups))
  if counts.min() == 0:
    return {"testable": False, "reason": "a group has no study in the training split"}
  per_group = np.rint(counts.max() / counts).astype(int)
  repeats = per_group[labels[train]]
  train_x, train_study = _stacked(crops, np.repeat(keep[train], repeats), "train")
  train_labels = np.repeat(labels[train], repeats)
  val_x, val_study = _stacked(crops, keep[val], "eval")
  test_x, test_study = _stacked(crops, keep[test], "eval")
  ens, variables, _ = common.fit(
      task_config(config, len(groups)), TASK, keys.stream(key, "train"),
      dict(x=train_x, y=train_labels[train_study].astype(np.float32)),
      dict(x=val_x, y=labels[val][val_study].astype(np.float32)),
      workdir, augment=brain_crops.flip_augment)
  member_scores = common.predict(ens, variables, test_x)            # [M, crops, classes]
  membership = (test_study[:, None] == np.arange(len(test))).astype(np.float64)
  per_study = np.einsum("mcg,cs->msg", member_scores, membership) / membership.sum(0)[:, None]
  cnn_scores = per_study.mean(0)
  x = np.asarray(features, np.float64)[keep]
  fitted_on = np.concatenate([train, val])
  probe_scores = np.zeros((len(test), len(groups)))
  probe_scores[:, np.unique(labels[fitted_on])] = probe.fit_and_score(
      x[fitted_on], labels[fitted_on], x[test])
  return {"testable": True, "groups": groups,
          "split": {"train": len(train), "val": len(val), "test": len(test)},
          "train_repeats": dict(zip(groups, per_group.tolist())),
          "members": int(member_scores.shape[0]),
          "cnn": audit.held_out(labels[test], cnn_scores, groups, settings, config.seed),
          "probe": audit.held_out(labels[test], probe_scores, groups, settings, config.seed)}
