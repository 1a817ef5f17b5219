"""Sphere classification (paper 3.3.2): easy / medium / hard x training condition.

Inputs are the ingested volumes with the study's sphere inserted (positives),
windowed 50/100 -> [0, 1], then resampled to `experiments.spheres_shape` (the
paper's 256 x 256 x 35 in configs/paper.py, smaller on CPU).
"""
import functools
import os

import jax
import numpy as np

from scanbias_jax import keys
from scanbias_jax.evaluate import results
from scanbias_jax.experiments import common, datasets

TASK = "spheres"


def inputs(config, prepared, difficulty: str, split: str, group_value=None):
  """(x float32 [n, *shape, 1], y float32 [n]) of one split."""
  data = datasets.spheres_set(prepared, difficulty, split, group_value)
  shape = tuple(config.experiments.spheres_shape)
  if not len(data["volumes"]):
    return np.zeros((0, *shape, 1), np.float32), np.zeros(0, np.float32)
  batch = _batcher(*config.prepare.spheres_window)
  x = np.concatenate([
      common.resize(batch(data["volumes"][i:i + 8],
                          jax.tree.map(lambda a: a[i:i + 8], data["specs"]),
                          data["voxel_keys"][i:i + 8]), shape)
      for i in range(0, len(data["volumes"]), 8)])
  return x[..., None], data["labels"].astype(np.float32)


@functools.cache
def _batcher(level: float, width: float):
  return jax.jit(lambda v, s, k: datasets.spheres_batch(v, s, k, level=level, width=width))


def run_condition(config, prepared, difficulty: str, condition: str, key: jax.Array,
                  workdir: str, tests: dict) -> dict:
  group_value = common.group_filter(condition)
  train = inputs(config, prepared, difficulty, "train", group_value)
  val = inputs(config, prepared, difficulty, "val", group_value)
  ens, variables, _ = common.fit(config, TASK, keys.stream(key, "train"),
                                 dict(x=train[0], y=train[1]), dict(x=val[0], y=val[1]),
                                 os.path.join(workdir, TASK, difficulty, condition))
  scored = {name: (y, common.predict(ens, variables, x)) for name, (x, y) in tests.items()}
  settings = config.experiments
  return results.classification_condition(
      keys.stream(key, "evaluate"), condition,
      (val[1], common.predict(ens, variables, val[0])), scored, settings.select_k,
      positive_class="sphere", n_resamples=settings.bootstrap_resamples)


def run(config, prepared: datasets.Prepared, key: jax.Array, workdir: str) -> dict:
  """{difficulty: {condition: Condition}}."""
  out = {}
  for difficulty in config.experiments.difficulties:
    tests = {results.MIXED: inputs(config, prepared, difficulty, "test")}
    tests.update({g: inputs(config, prepared, difficulty, "test", g)
                  for g in prepared.group_values})
    out[difficulty] = {
        condition: run_condition(config, prepared, difficulty, condition,
                                 keys.stream(key, f"{difficulty}/{condition}"), workdir, tests)
        for condition in common.conditions(prepared.group_values)}
  return out
