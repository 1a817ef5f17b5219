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

from absl import logging

from scanbias_jax.experiments.tasks import TASKS
from scanbias_jax.train import ensemble, member


def programs(config, task: str) -> list:
  """[(name, jitted program, abstract arguments)] of one task's ensemble, as training
  will call them (`Ensemble.batch_programs`)."""
  module = TASKS[task]
  shapes = module.sample_shapes(config)
  ens = ensemble.shared_ensemble(member.task_config(config, task), module.augment(config))
  return ens.batch_programs(shapes["train_x"], shapes["y"], shapes["eval_x"])


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
