"""Skull-stripping segmentation (paper 3.3.3): a 3D U-Net per training condition.

Inputs: the Skull set (volume and brain mask, 35 -> 32 slices) windowed like the
sphere task and resampled to `experiments.segmentation_shape`; masks resampled
linearly and thresholded at 0.5. Dice is computed chunk by chunk, so full-size
probability masks of all members are never held at once.
"""
import os

import jax
import numpy as np

from scanbias_jax import keys
from scanbias_jax.evaluate import metrics, results
from scanbias_jax.experiments import common, datasets

TASK = "segmentation"


def sample_shapes(config) -> dict:
  """Per-sample shapes of inputs and masks, all float32 (`precompile` builds from these)."""
  shape = tuple(config.experiments.segmentation_shape)
  return dict(train_x=shape + (1,), eval_x=shape + (1,), y=shape)


def augment(config):  # pylint: disable=unused-argument
  """No training augmentation."""
  return None


def split_sets(config, prepared, split: str) -> dict:
  """{"mixed": (x float32 [n, *shape, 1], masks float32 [n, *shape]), group value: its
  rows of them} of one split, read and resized once; a third array, the unit of each
  volume, where a unit (a traveling head) gives several."""
  data = datasets.skull_set(prepared, split, None, config.prepare.skull_slices)
  arrays = inputs(config, data)
  if datasets.repeats(data["units"]):
    arrays += (data["units"],)
  return common.by_condition(prepared.group_values, data["groups"], *arrays)


def inputs(config, data: dict) -> tuple[np.ndarray, np.ndarray]:
  """(x float32 [n, *shape, 1], masks float32 [n, *shape]) of a `datasets.skull_set`:
  windowed like the sphere task, resized, masks thresholded at 0.5."""
  shape = tuple(config.experiments.segmentation_shape)
  if not len(data["volumes"]):
    return np.zeros((0, *shape, 1), np.float32), np.zeros((0, *shape), np.float32)
  level, width = config.prepare.spheres_window
  x = common.resize(np.asarray(datasets.skull_input(data["volumes"], level, width)), shape)
  masks = (common.resize(data["masks"], shape) >= 0.5).astype(np.float32)
  return x[..., None], masks


def dice_of(ens, variables, x, masks, chosen, chunk: int = 16) -> dict:
  """{"member_dice": (M, N), "averaged_dice": {"selected": (N,), "all": (N,)}}."""
  member_dice, selected, every = [], [], []
  for i in range(0, len(x), chunk):
    probs = common.predict(ens, variables, x[i:i + chunk], chunk)       # [M, n, ...]
    member_dice.append(np.stack([metrics.dice(p, masks[i:i + chunk]) for p in probs]))
    if chosen is not None:
      selected.append(metrics.dice(probs[list(chosen)].mean(0), masks[i:i + chunk]))
      every.append(metrics.dice(probs.mean(0), masks[i:i + chunk]))
  out = dict(member_dice=np.concatenate(member_dice, axis=1))
  if chosen is not None:
    out["averaged_dice"] = dict(selected=np.concatenate(selected), all=np.concatenate(every))
  return out


def run_condition(config, prepared, condition: str, key: jax.Array, workdir: str,
                  train: tuple, val: tuple, tests: dict) -> dict:
  ens, variables, _ = common.fit(config, TASK, keys.stream(key, "train"),
                                 dict(x=train[0], y=train[1]), dict(x=val[0], y=val[1]),
                                 os.path.join(workdir, TASK, condition))
  chosen = results.select_by_dice(dice_of(ens, variables, *val[:2], None)["member_dice"],
                                  config.experiments.select_k)
  return results.segmentation_condition(
      keys.stream(key, "evaluate"), condition, chosen,
      dict(dice_of(ens, variables, *val[:2], chosen.indices), clusters=_clusters(val)),
      {name: dict(dice_of(ens, variables, *data[:2], chosen.indices), clusters=_clusters(data))
       for name, data in tests.items()},
      n_resamples=config.experiments.bootstrap_resamples)


def _clusters(data: tuple):
  return data[2] if len(data) > 2 else None


def run(config, prepared: datasets.Prepared, key: jax.Array, workdir: str, pool=None) -> dict:
  """{condition: Condition}; the conditions train on `pool` when given."""
  sets = {split: split_sets(config, prepared, split) for split in ("train", "val", "test")}
  pending = {condition: common.submit(pool, run_condition, config, prepared, condition,
                                      keys.stream(key, condition), workdir,
                                      sets["train"][condition], sets["val"][condition],
                                      sets["test"])
             for condition in common.conditions(prepared.group_values)}
  return {condition: done.result() for condition, done in pending.items()}
