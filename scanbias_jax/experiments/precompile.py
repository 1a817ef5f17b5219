"""Compiles a study's training programs while its data stages run.

With an empty compilation cache, XLA:CPU spends seconds per program on each
model's step, BatchNorm pass, evaluation and initialisation: about half of the
smoke study's training time. Their shapes follow from the config alone, so a
background thread compiles them into the persistent cache (see
`common.use_compilation_cache`) during synthesis, ingest and prepare, when one
core is mostly busy with Python (pydicom); training then loads them. The cache
key ignores where a program was built, so the experiment's own programs hit.

Only the per-batch programs are compiled here; the epoch's bookkeeping programs
depend on the data-set sizes and compile in a fraction of a second.
"""
import threading
import time

import jax
import jax.numpy as jnp
from absl import logging

from scanbias_jax.experiments.tasks import TASKS
from scanbias_jax.train import ensemble, member


def programs(config, task: str) -> list:
  """[(name, jitted program, abstract arguments)] of one task's ensemble, as training
  will call them (one chunk of members, on the chunk's device)."""
  module = TASKS[task]
  shapes = module.sample_shapes(config)
  train_config = member.task_config(config, task)
  ens = ensemble.shared_ensemble(train_config, module.augment(config))
  size, batch = ens.chunk_size, train_config.batch_size
  sharding = ens.member_shardings[0]

  def spec(shape, dtype=jnp.float32):
    return jax.ShapeDtypeStruct(tuple(shape), dtype, sharding=sharding)

  def placed(tree):
    """Abstract arrays committed to the chunk's device, as training's arguments are:
    the sharding is part of the lowered program, hence of its cache key."""
    return jax.tree.map(lambda a: spec(a.shape, a.dtype), tree)

  member_keys = jax.device_put(ensemble.member_keys(jax.random.key(0), range(size)), sharding)
  x = spec((size, batch) + shapes["train_x"])
  y = spec((size, batch) + shapes["y"])
  first = {"train": {"x": x, "y": y}}
  state = placed(jax.eval_shape(ens._init, member_keys, first))
  params, batch_stats = state["params"], state["batch_stats"]
  # The engine passes each step's indices as a host (numpy) array: not committed.
  epoch_keys, indices = state["key"], jax.ShapeDtypeStruct((size, batch), jnp.int32)
  out = [("init", ens._init, (member_keys, first)),
         ("step", ens._step, ((params, batch_stats, state["opt_state"]), epoch_keys, indices,
                              x, y)),
         ("eval", ens._eval, ({"params": params, "batch_stats": batch_stats},
                              spec((train_config.eval_batch_size,) + shapes["eval_x"])))]
  if ens.program.batch_moments is not None:
    out.append(("moments", ens._moments, (params, batch_stats, epoch_keys, indices, x)))
  return out


def compile_all(config) -> dict:
  """Compiles every task's programs; returns {"<task>/<program>": seconds}. A program
  that fails to compile is logged and skipped: training compiles what it needs."""
  seconds = {}
  for task in config.experiments.tasks:
    try:
      jobs = programs(config, task)
    except Exception as e:  # pylint: disable=broad-except  (an optimisation must not stop a study)
      logging.warning("precompile: %s skipped: %s", task, e)
      continue
    for name, program, args in jobs:
      started = time.perf_counter()
      try:
        program.lower(*args).compile()
      except Exception as e:  # pylint: disable=broad-except
        logging.warning("precompile: %s/%s failed: %s", task, name, e)
        continue
      seconds[f"{task}/{name}"] = time.perf_counter() - started
  return seconds


def start(config) -> threading.Thread:
  """`compile_all(config)` in a daemon thread; join it before training. Its result is
  the thread's `seconds` attribute once it has finished."""
  def run():
    thread.seconds = compile_all(config)
    logging.info("precompiled %d programs in %.1f s", len(thread.seconds),
                 sum(thread.seconds.values()))

  thread = threading.Thread(target=run, name="precompile", daemon=True)
  thread.seconds = {}
  thread.start()
  return thread
