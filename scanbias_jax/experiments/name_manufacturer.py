"""Name the Manufacturer (paper 3.3.1): can a shallow CNN tell the groups apart?

Training samples are three distinct random slices of a study, stacked as
channels, drawn afresh per sample and epoch; validation and test use one fixed
stack per study (drawn from the "eval" stream), so every member sees the same
evaluation inputs. Label 1 is the second group value (the paper's Siemens).
"""
import functools
import os

import jax
import numpy as np

from scanbias_jax import keys
from scanbias_jax.evaluate import metrics, results
from scanbias_jax.experiments import common, controls, datasets

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
  grid = config.ingest.paper_grid
  in_plane = config.experiments.in_plane or grid.in_plane
  return dict(train_x=(in_plane, in_plane, grid.n_slices),
              eval_x=(in_plane, in_plane, config.prepare.stack_slices), y=())


def augment(config):
  """The training augmentation: a fresh random slice stack per sample and epoch."""
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


def run(config, prepared: datasets.Prepared, key: jax.Array, workdir: str) -> dict:
  """{"mixed": Condition} (empty with a reason when there are not two groups)."""
  groups = list(prepared.group_values)
  if len(groups) != 2:
    return {"reason": f"Name the Manufacturer is a binary task; {len(groups)} groups"}
  settings = config.experiments
  window = dict(n_slices=config.prepare.stack_slices,
                level=config.prepare.original_window[0],
                width=config.prepare.original_window[1])
  eval_key = keys.stream(key, "eval")

  def stacks(split, group_value=None):
    volumes, labels = _volumes(prepared, split, group_value, settings.in_plane)
    return _stacks(keys.stream(eval_key, split), volumes, window), labels.astype(np.float32)

  train_volumes, train_labels = _volumes(prepared, "train", None, settings.in_plane)
  val_x, val_y = stacks("val")
  ens, variables, _ = common.fit(
      config, TASK, keys.stream(key, "train"),
      dict(x=train_volumes, y=train_labels.astype(np.float32)), dict(x=val_x, y=val_y),
      os.path.join(workdir, TASK, results.MIXED), augment=augment(config))
  tests = {results.MIXED: stacks("test")}
  tests.update({g: stacks("test", g) for g in groups})
  scored = {name: (y, common.predict(ens, variables, x)) for name, (x, y) in tests.items()}
  condition = results.classification_condition(
      keys.stream(key, "evaluate"), results.MIXED,
      (val_y, common.predict(ens, variables, val_x)), scored, settings.select_k,
      positive_class=groups[1], n_resamples=settings.bootstrap_resamples)
  # Control: the member-averaged selected output against shuffled test labels, with
  # the accuracy's Wilson interval beside the bootstrap's.
  labels, member_scores = scored[results.MIXED]
  averaged = metrics.average_scores(member_scores, condition["selection"]["selected"])
  condition["controls"] = controls.binary_scores(
      keys.stream(key, "controls"), labels, averaged, settings.bootstrap_resamples)
  return {results.MIXED: condition}
