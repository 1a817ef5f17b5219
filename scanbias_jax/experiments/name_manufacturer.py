"""Name the Manufacturer (paper 3.3.1): can a shallow CNN tell the groups apart?

Two inputs (`experiments.manufacturer_input`):
  "slices" (the paper's): three distinct random whole slices of a study, stacked
    as channels, drawn afresh per sample and epoch; validation and test use one
    fixed stack per study (drawn from the "eval" stream).
  "crops": `brain_crops` stacks, `train_crops_per_study` per training study (each
    randomly flipped per epoch) and `eval_crops_per_study` per evaluated study,
    whose member probabilities are averaged per study before any metric.
Every member sees the same evaluation inputs. Label 1 is the second group value
(the paper's Siemens).
"""
import functools
import os

import jax
import numpy as np

from scanbias_jax import keys
from scanbias_jax.evaluate import metrics, results
from scanbias_jax.experiments import brain_crops, common, controls, datasets

TASK = "name_manufacturer"


def _volumes(prepared, split, group_value, in_plane):
  data = datasets.original_set(prepared, split, group_value)
  volumes = data["volumes"]
  if in_plane and len(volumes) and volumes.shape[1] != in_plane:
    volumes = common.resize(volumes, (in_plane, in_plane, volumes.shape[-1]))
  return volumes.astype(np.float32), data["labels"]


def sample_shapes(config) -> dict:
  """Per-sample shapes: training volumes on the ingest grid (the stack is drawn in the
  step), evaluation stacks, labels; all float32 (`precompile` builds from these)."""
  grid, settings = config.ingest.paper_grid, config.experiments
  n_slices = config.prepare.stack_slices
  if _uses_crops(config):
    crop = (settings.crop_size, settings.crop_size, n_slices)
    return dict(train_x=crop, eval_x=crop, y=())
  in_plane = settings.in_plane or grid.in_plane
  return dict(train_x=(in_plane, in_plane, grid.n_slices),
              eval_x=(in_plane, in_plane, config.prepare.stack_slices), y=())


def _uses_crops(config) -> bool:
  choice = config.experiments.manufacturer_input
  if choice not in ("slices", "crops"):
    raise ValueError(f"experiments.manufacturer_input must be 'slices' or 'crops', got {choice!r}")
  return choice == "crops"


def augment(config):
  """The training augmentation: a fresh random slice stack per sample and epoch
  (slices), a random flip (crops)."""
  if _uses_crops(config):
    return brain_crops.flip_augment
  return _augment(config.prepare.stack_slices, *config.prepare.original_window)


@functools.cache
def _augment(n_slices: int, level: float, width: float):
  # One object per setting, so every run shares one ensemble and its compiled programs.
  return lambda key, volume: datasets.manufacturer_stack(key, volume, n_slices, level, width)


def _stacks(key: jax.Array, volumes, window: dict, chunk: int = 8) -> np.ndarray:
  """`datasets.manufacturer_batch` of all volumes, run `chunk` at a time (the last
  padded) by one compiled program, whatever the number of volumes."""
  n = len(volumes)
  if not n:
    return volumes
  batch = _stacker(**window)
  parts = []
  for i in range(0, n, chunk):
    rows = np.minimum(np.arange(i, i + chunk), n - 1)
    parts.append(np.asarray(batch(key, volumes[rows], rows)))
  return np.concatenate(parts)[:n]


@functools.cache
def _stacker(n_slices: int, level: float, width: float):
  return jax.jit(lambda key, volumes, rows: datasets.manufacturer_batch(
      key, volumes, rows, n_slices, level=level, width=width))


def _slice_sets(config, prepared, key):
  """{split or (split, group): (x, y, study, n_studies)} of the paper's slice stacks
  (one sample per study, so `study` is the identity)."""
  settings = config.experiments
  window = dict(n_slices=config.prepare.stack_slices,
                level=config.prepare.original_window[0],
                width=config.prepare.original_window[1])
  eval_key = keys.stream(key, "eval")

  def stacks(split, group_value=None):
    volumes, labels = _volumes(prepared, split, group_value, settings.in_plane)
    x = _stacks(keys.stream(eval_key, split), volumes, window)
    return x, labels.astype(np.float32), np.arange(len(labels)), labels

  train_volumes, train_labels = _volumes(prepared, "train", None, settings.in_plane)
  sets = {"train": (train_volumes, train_labels.astype(np.float32), None, None),
          "val": stacks("val"), "test": stacks("test")}
  sets.update({("test", g): stacks("test", g) for g in prepared.group_values})
  return sets, []


def _crop_sets(config, prepared):
  """The same layout for brain crops (`brain_crops.crop_set`) and the studies skipped;
  a group's test set is the mixed test set's studies of that group."""
  settings = config.experiments
  common_args = dict(size=settings.crop_size, n_slices=config.prepare.stack_slices,
                     level=config.prepare.original_window[0],
                     width=config.prepare.original_window[1])
  data = {split: brain_crops.crop_set(
      prepared, split, None, per_study=settings.train_crops_per_study if split == "train"
      else settings.eval_crops_per_study, purpose="train" if split == "train" else "eval",
      **common_args) for split in ("train", "val", "test")}
  for index, value in enumerate(prepared.group_values):
    data[("test", value)] = brain_crops.select_studies(data["test"],
                                                       data["test"]["labels"] == index)
  sets = {name: (d["x"], d["y"], d["study"], d["labels"], d["study_ids"])
          for name, d in data.items()}
  return sets, [why for split in ("train", "val", "test") for why in data[split]["skipped"]]


def run(config, prepared: datasets.Prepared, key: jax.Array, workdir: str, pool=None) -> dict:
  """{"mixed": Condition} (empty with a reason when there are not two groups); the
  condition trains on `pool` when given."""
  groups = list(prepared.group_values)
  if len(groups) != 2:
    return {"reason": f"Name the Manufacturer is a binary task; {len(groups)} groups"}
  if _uses_crops(config):
    sets, skipped = _crop_sets(config, prepared)
  else:
    sets, skipped = _slice_sets(config, prepared, key)
  return {results.MIXED: common.submit(pool, run_condition, config, prepared, key, workdir,
                                       sets, skipped).result()}


def run_condition(config, prepared: datasets.Prepared, key: jax.Array, workdir: str,
                  sets: dict, skipped: list) -> dict:
  """The mixed condition: trained, scored per study, with its controls."""
  groups = list(prepared.group_values)
  settings = config.experiments
  train_x, train_y = sets["train"][:2]
  val_x, val_y = sets["val"][:2]
  ens, variables, _ = common.fit(
      config, TASK, keys.stream(key, "train"), dict(x=train_x, y=train_y),
      dict(x=val_x, y=val_y), os.path.join(workdir, TASK, results.MIXED),
      augment=augment(config))

  def study_scores(name):
    x, _, study, labels = sets[name][:4]
    scores = common.predict(ens, variables, x)
    return labels.astype(np.float32), brain_crops.per_study_scores(scores, study, len(labels))

  test_ids = (sets["test"][4] if len(sets["test"]) > 4 else
              [r["study_id"] for r in datasets.select(prepared, "test")])
  clusters = datasets.repeated_units(prepared, test_ids)  # traveling heads: both vendors
  scored = {results.MIXED: study_scores("test") + (() if clusters is None else (clusters,))}
  scored.update({g: study_scores(("test", g)) for g in groups})
  condition = results.classification_condition(
      keys.stream(key, "evaluate"), results.MIXED, study_scores("val"), scored,
      settings.select_k, positive_class=groups[1], n_resamples=settings.bootstrap_resamples)
  condition["input"] = dict(kind=settings.manufacturer_input, skipped=skipped)
  if _uses_crops(config):
    condition["input"].update({name: settings[name] for name in (
        "crop_size", "train_crops_per_study", "eval_crops_per_study")})
  # Control: the member-averaged selected output against shuffled test labels, with
  # the accuracy's Wilson interval beside the bootstrap's.
  labels, member_scores = scored[results.MIXED][:2]
  averaged = metrics.average_scores(member_scores, condition["selection"]["selected"])
  condition["controls"] = controls.binary_scores(
      keys.stream(key, "controls"), labels, averaged, settings.bootstrap_resamples, clusters)
  return condition
