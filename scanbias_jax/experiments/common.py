"""What the three experiments share: conditions, resizing, training a condition.

A condition is the data a seed ensemble trains on: "mixed" (every group) or one
group value (the paper's _GE / _Si sets). Every condition is tested on the mixed
test set and on each group's.

Conditions are independent: with `experiments.concurrent_conditions` = n > 1 the
study trains and evaluates n of them at once, each in a thread of one pool
(`condition_pool`, `submit`). One small-network fit keeps ~1.5 of this 2-core CPU's
cores busy (the host's dispatch and the networks' serial layers leave gaps); two
fill both. Every program is the same, so are the bits (tests/test_study.py).
"""
import concurrent.futures
import contextlib
import functools
import hashlib
import os

import jax
import jax.numpy as jnp
import numpy as np

from scanbias_jax.evaluate.results import MIXED
from scanbias_jax.train import ensemble, loop, member


def conditions(groups) -> list[str]:
  return [MIXED, *groups]


def by_condition(group_values, groups, *arrays) -> dict:
  """{"mixed": arrays, group value: each array's rows of that group}: the sets of every
  condition from one mixed set; `groups` [n] indexes `group_values`."""
  groups = np.asarray(groups)
  sets = {MIXED: arrays}
  for index, value in enumerate(group_values):
    sets[value] = tuple(a[groups == index] for a in arrays)
  return sets


def group_filter(condition: str):
  """The `group_value` argument of the data-set builders for a condition."""
  return None if condition == MIXED else condition


def resize(volumes, shape, method: str = "linear") -> np.ndarray:
  """float32 [n, *shape]: each volume resampled (antialiased when shrinking)."""
  volumes = np.asarray(volumes)
  if volumes.shape[0] == 0 or tuple(volumes.shape[1:]) == tuple(shape):
    return volumes.astype(np.float32)
  one = _resizer(tuple(shape), method)
  return np.stack([np.asarray(one(v)) for v in volumes])


@functools.cache
def _resizer(shape, method):
  """One jitted function per (shape, method), so every condition reuses its compilation."""
  return jax.jit(lambda v: jax.image.resize(v.astype(jnp.float32), shape, method))


@contextlib.contextmanager
def condition_pool(config):
  """An Executor of `experiments.concurrent_conditions` threads, or None (one at a time)."""
  workers = int(config.experiments.concurrent_conditions)
  if workers <= 1:
    yield None
    return
  pool = concurrent.futures.ThreadPoolExecutor(workers, thread_name_prefix="condition")
  try:
    yield pool
  finally:  # an error in one condition drops those not started; running ones finish
    pool.shutdown(wait=True, cancel_futures=True)


def submit(pool, fn, *args, **kwargs) -> concurrent.futures.Future:
  """fn(*args, **kwargs) on `pool`, or run now when `pool` is None (its errors raised
  here); either way a Future."""
  if pool is not None:
    return pool.submit(fn, *args, **kwargs)
  done = concurrent.futures.Future()
  done.set_result(fn(*args, **kwargs))
  return done


def fit(config, task: str, key: jax.Array, train: dict, val: dict, workdir: str,
        augment=None, eval_transform=None):
  """Trains (or resumes, or reloads) the seed ensemble of one condition.

  `train` and `val` are {"x", "y"} arrays. Returns (ensemble, best variables per
  round, metrics history).
  """
  os.makedirs(workdir, exist_ok=True)
  parts = os.path.normpath(workdir).split(os.sep)
  label = "/".join(parts[len(parts) - 1 - parts[::-1].index(task):]) if task in parts else workdir
  result = loop.run(key, member.task_config(config, task), {"train": train, "val": val},
                    workdir, augment, eval_transform, label=label)
  return result.ensemble, ensemble.best(result.states), result.history


def predict(ens: ensemble.Ensemble, variables, x, chunk: int = 32) -> np.ndarray:
  """Per-member probabilities [members, n, ...], `chunk` samples at a time.

  Every call sees `chunk` samples (the last chunk padded by repetition), so one
  compiled program serves all test sets. Samples identical byte for byte (a paired
  sphere set's sphere-free copies of a study) are scored once: a sample's output
  does not depend on the others in its chunk.
  """
  if len(x) == 0:
    return np.zeros((ens.layout.num_members, 0), np.float32)
  x = np.asarray(x)
  digests = np.array([hashlib.blake2b(row.tobytes(), digest_size=16).digest() for row in x])
  _, first, copy_of = np.unique(digests, return_index=True, return_inverse=True)
  if len(first) < len(x):
    return _predict_chunks(ens, variables, x[first], chunk)[:, copy_of.ravel()]
  return _predict_chunks(ens, variables, x, chunk)


def _predict_chunks(ens: ensemble.Ensemble, variables, x, chunk: int) -> np.ndarray:
  parts = []
  for i in range(0, len(x), chunk):
    part = np.asarray(x[i:i + chunk])
    padded = np.concatenate([part, np.repeat(part[-1:], chunk - len(part), axis=0)])
    parts.append(np.asarray(ens.predict(variables, jnp.asarray(padded)))[:, :len(part)])
  return np.concatenate(parts, axis=1)


def use_compilation_cache(path: str) -> None:
  """Persist compiled programs under `path`: conditions and difficulties with the
  same shapes (and reruns) load them instead of compiling again. The cache holds
  executable code: keep it private to the user."""
  os.makedirs(path, exist_ok=True)
  jax.config.update("jax_compilation_cache_dir", path)
  jax.config.update("jax_persistent_cache_min_entry_size_bytes", -1)
  jax.config.update("jax_persistent_cache_min_compile_time_secs", 0)
