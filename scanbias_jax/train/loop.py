"""The training run: epochs of the ensemble with metrics, logging and checkpoints.

All I/O of training lives here. A run directory holds:
  train_config.json   the resolved training config
  metrics.jsonl       one line per member per epoch
  checkpoints/        orbax checkpoints (numbered by completed epochs)
A run that finds a checkpoint resumes from it and ends with the same bits as a run
that was never interrupted (same compiled epoch program, same keys by epoch index),
provided its config matches the stored one (see `run`).
"""
import json
import os
import time
from pathlib import Path
from typing import Any, NamedTuple, Optional

import jax
import ml_collections
import numpy as np
from absl import logging

from scanbias_jax import files, processes
from scanbias_jax.train import checkpoint, ensemble, member

# Run-to-run identical bits on GPU: deterministic kernels only (scatter, reductions,
# convolutions), and no autotuning, whose timing-based kernel choice can differ
# between compilations. Costs speed; CPU needs neither.
DETERMINISTIC_XLA_FLAGS = ("--xla_gpu_deterministic_ops=true", "--xla_gpu_autotune_level=0")


def request_exact_reproducibility() -> None:
  """Add the deterministic-GPU flags to XLA_FLAGS; call before JAX starts a backend."""
  flags = os.environ.get("XLA_FLAGS", "").split()
  os.environ["XLA_FLAGS"] = " ".join(flags + [f for f in DETERMINISTIC_XLA_FLAGS if f not in flags])


def _check_reproducibility(config) -> None:
  if not config.exact_reproducibility or jax.default_backend() != "gpu":
    return
  missing = [f for f in DETERMINISTIC_XLA_FLAGS if f not in os.environ.get("XLA_FLAGS", "")]
  if missing:
    raise RuntimeError(f"config asks for exact reproducibility but XLA_FLAGS lacks {missing}; "
                       "call loop.request_exact_reproducibility() before using JAX")


class RunResult(NamedTuple):
  states: list                 # round states (see ensemble.best / ensemble.last)
  history: list[dict]          # metrics.jsonl as records, oldest first
  ensemble: ensemble.Ensemble  # for predict()


# Config fields a resumed run may change: they do not alter any epoch's result.
# num_epochs only says where training stops; the epoch program and the keys do not
# depend on it (constant learning rate, keys by epoch index), so raising it
# continues training exactly as if the longer run had been asked for at first.
RESUMABLE_FIELDS = ("num_epochs", "checkpoint_every_epochs", "keep_checkpoints")


def _check_resume(config: ml_collections.ConfigDict, config_path: str, workdir: str,
                  done: int) -> None:
  """Raises ValueError if a resumed run's config differs from the stored one."""
  if done > config.num_epochs:
    raise ValueError(f"run directory {workdir} holds a checkpoint after epoch {done}, "
                     f"past num_epochs={config.num_epochs}; raise num_epochs or use a new "
                     "directory")
  if not os.path.exists(config_path):
    logging.warning("%s has checkpoints but no train_config.json; cannot check the config",
                    workdir)
    return
  with open(config_path) as f:
    old = json.load(f)
  new = json.loads(config.to_json())
  absent = "<absent>"
  differing = [f"{name}: {old.get(name, absent)!r} -> {new.get(name, absent)!r}"
               for name in sorted(set(old) | set(new))
               if name not in RESUMABLE_FIELDS and old.get(name, absent) != new.get(name, absent)]
  if differing:
    raise ValueError(f"run directory {workdir} holds checkpoints trained with a different "
                     f"config (stored -> new): {'; '.join(differing)}. Use the stored config "
                     "or a new directory.")


def read_metrics(path: str) -> list[dict]:
  if not os.path.exists(path):
    return []
  with open(path) as f:
    return [json.loads(line) for line in f if line.strip()]


def _records(metrics: dict, epoch: int, seconds: float) -> list[dict]:
  """One JSON-ready record per member from metrics with leading member axis."""
  metrics = jax.device_get(metrics)
  num_members = len(metrics["epoch"])
  records = []
  for i in range(num_members):
    record = {"member": i, "epoch": epoch, "seconds": round(seconds, 3)}
    record.update({k: float(v[i]) for k, v in metrics.items() if k not in ("epoch",)})
    record["best_epoch"] = int(record["best_epoch"])
    records.append(record)
  return records


def _progress(records: list[dict], epoch: int, num_epochs: int, metric: str, seconds: float) -> str:
  def mean_sd(name):
    values = np.array([r[name] for r in records])
    return f"{np.nanmean(values):.4f}±{np.nanstd(values):.4f}"
  return (f"epoch {epoch + 1}/{num_epochs} members {len(records)} "
          f"train_loss {mean_sd('train_loss')} {metric} {mean_sd(metric)} "
          f"(best {mean_sd('best_metric')}) {seconds:.1f}s")


def run(key: jax.Array, config: ml_collections.ConfigDict, data: dict, workdir: str,
        augment: Optional[member.Augment] = None,
        eval_transform: Optional[member.Transform] = None,
        mesh: Optional[Any] = None, stop_after_epochs: Optional[int] = None,
        label: Optional[str] = None) -> RunResult:
  """Train the ensemble of `config` (a train section) on `data`, resuming in `workdir`.

  `label` names the run in the console's epoch lines (default: `workdir`).

  `stop_after_epochs` ends the run early, as an interruption would (for tests and
  for time-sliced jobs); the next call resumes from the newest checkpoint.

  Resuming requires the config that wrote the checkpoints: every field but
  RESUMABLE_FIELDS must equal the one in `train_config.json`, else ValueError
  (naming the directory and each differing field). Of those, `num_epochs` may be
  raised to train a finished or interrupted run further, with the same bits as a
  run asked for that many epochs from the start; it may not fall below the
  checkpoint's epochs (ValueError), as those states cannot be undone. The
  bookkeeping fields (how often to save, how many to keep) may change freely.
  Fields that only seem to be about speed (layout, `scan_unroll`, `parallel`,
  `eval_batch_size`) are compared: they change the compiled program, hence the
  bits or the checkpoint's structure. `key` and `data` are not stored, so not checked.

  Under jax.distributed (several processes) each process trains its block of the
  members in `<workdir>/members_<first>-<last>` and returns the whole ensemble
  (`_train_in_blocks`).
  """
  if processes.count() > 1:
    return _train_in_blocks(key, config, data, workdir, augment, eval_transform, mesh,
                            stop_after_epochs, label)
  return _train(key, config, data, workdir, augment, eval_transform, mesh, stop_after_epochs,
                label)


def _train(key, config, data, workdir, augment, eval_transform, mesh, stop_after_epochs,
           label) -> RunResult:
  _check_reproducibility(config)
  os.makedirs(workdir, exist_ok=True)
  checkpoints = checkpoint.Checkpoints(os.path.join(workdir, "checkpoints"),
                                       config.keep_checkpoints)
  start = checkpoints.latest() or 0
  config_path = os.path.join(workdir, "train_config.json")
  if start:
    try:
      _check_resume(config, config_path, workdir, start)
    except ValueError:
      checkpoints.close()
      raise
  files.write_text(config_path, config.to_json(indent=2))
  ens = ensemble.shared_ensemble(config, augment, eval_transform, mesh)
  data = ens.place_data(data)
  states = ens.init(key, data)

  if start:
    states = checkpoints.restore(start, states)
    logging.info("resumed from the checkpoint after epoch %d", start)
  metrics_path = os.path.join(workdir, "metrics.jsonl")
  # Epochs after the checkpoint will be recomputed, bit for bit: drop their lines.
  kept = [r for r in read_metrics(metrics_path) if r["epoch"] < start]
  files.write_text(metrics_path, "".join(json.dumps(r) + "\n" for r in kept))

  every = config.checkpoint_every_epochs
  for epoch in range(start, config.num_epochs):
    started = time.perf_counter()
    states, metrics = ens.epoch(states, data)
    jax.block_until_ready(metrics)
    seconds = time.perf_counter() - started
    records = _records(metrics, epoch, seconds)
    with open(metrics_path, "a") as f:
      f.writelines(json.dumps(r) + "\n" for r in records)
    for r in records:
      logging.vlog(1, "member metrics %s", json.dumps(r))
    logging.info("[train] %s %s", label or workdir,
                 _progress(records, epoch, config.num_epochs, config.select_metric, seconds))
    done = epoch + 1
    if done % every == 0 or done == config.num_epochs:
      checkpoints.save(done, states)
    if stop_after_epochs is not None and done >= stop_after_epochs:
      break
  checkpoints.close()
  return RunResult(states, read_metrics(metrics_path), ens)


BLOCK_DONE = "block_done"  # a block's run directory: its epochs, once all are saved


def _read_or_empty(path: str) -> str:
  return Path(path).read_text() if os.path.exists(path) else ""


def _train_in_blocks(key, config, data, workdir, augment, eval_transform, mesh,
                     stop_after_epochs, label) -> RunResult:
  """`run` on several processes (scanbias_jax/processes.py): this process trains its
  block of members, then reads every block's final checkpoint and metrics, so it
  returns what one process training them all would."""
  if stop_after_epochs is not None:
    raise ValueError("stop_after_epochs is for one process")
  if jax.local_device_count() != 1:
    raise ValueError("several processes: one device a process (one process a GPU); "
                     f"this one has {jax.local_device_count()}")
  os.makedirs(workdir, exist_ok=True)
  ens = ensemble.shared_ensemble(config, augment, eval_transform, mesh)
  chunk = ens.layout.members_per_device
  spans = processes.blocks(config.num_members, chunk, processes.count())
  first_member = config.first_member
  dirs = [os.path.join(workdir, f"members_{first_member + f}-{first_member + f + n - 1}")
          for f, n in spans]
  first, n = spans[processes.index()]
  if n:
    own = ml_collections.ConfigDict(config.to_dict())
    own.update(first_member=first_member + first, num_members=n)
    _train(key, own, data, dirs[processes.index()], augment, eval_transform, mesh, None,
           f"{label or workdir} members {own.first_member}-{own.first_member + n - 1}")
    # The block's last checkpoint and metrics are on disk: the others may read them.
    files.write_text(os.path.join(dirs[processes.index()], BLOCK_DONE), f"{config.num_epochs}\n")
  template = ens.init(key, ens.place_data(data))
  states, history = [], []
  for (f, n), directory in zip(spans, dirs):
    if not n:
      continue
    done = os.path.join(directory, BLOCK_DONE)
    processes.wait_until(lambda path=done: _read_or_empty(path) == f"{config.num_epochs}\n",
                         f"{done} (another process's members)")
    reader = checkpoint.Checkpoints(os.path.join(directory, "checkpoints"), read_only=True)
    try:
      states += reader.restore(config.num_epochs, template[f // chunk:-(-(f + n) // chunk)])
    finally:
      reader.close()
    history += [dict(r, member=r["member"] + f)
                for r in read_metrics(os.path.join(directory, "metrics.jsonl"))]
  history.sort(key=lambda r: (r["epoch"], r["member"]))
  return RunResult(states, history, ens)
