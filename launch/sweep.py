"""Runs a sweep (configs/sweep.py): the grid of `sweep.axes`, each point's harm and
nameability, then report.md and report.html; finished points are reused.

  python -m launch.sweep --config=configs/sweep.py --workdir=runs/sweep
  python -m launch.sweep --config=configs/sweep.py:smoke --workdir=/tmp/sweep
  python -m launch.sweep --config=configs/sweep.py --workdir=runs/sweep --processes=2

Several processes or hosts: the study's options (launch/study.py); process 0 runs the
data stages and writes every output, each process trains its block of every
ensemble's members.
"""
import os
import sys
import time
from pathlib import Path

if not __package__:  # run as a file: configs/ is in the repository root
  sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from absl import app, flags
from ml_collections import config_flags

from scanbias_jax import console, processes, run_lock
from scanbias_jax.report import sweep_report
from scanbias_jax.sweep import run as sweep_run

_CONFIG = config_flags.DEFINE_config_file(
    "config", "configs/sweep.py", "ml_collections config file (a get_config() module).",
    lock_config=True)
_WORKDIR = flags.DEFINE_string("workdir", None, "Run directory.", required=True)
_PROCESSES = flags.DEFINE_integer("processes", 1, "Local CPU processes to run the sweep on.")
_COORDINATOR = flags.DEFINE_string("coordinator_address", None,
                                   "host:port of process 0 (several hosts or processes).")
_NUM_PROCESSES = flags.DEFINE_integer("num_processes", 1, "Processes in the cluster.")
_PROCESS_ID = flags.DEFINE_integer("process_id", 0, "This process's index in the cluster.")


def main(argv):
  del argv
  console.setup()
  config, workdir = _CONFIG.value, Path(_WORKDIR.value)
  started = time.time()
  address, num_processes = _COORDINATOR.value, _NUM_PROCESSES.value
  try:
    if _PROCESS_ID.value == 0:
      run_lock.refuse_if_busy(workdir)
  except run_lock.WorkdirBusy as busy:
    sys.exit(f"error: {busy}")
  if _PROCESSES.value > 1 and not address:
    argv = [a for a in sys.argv if not a.startswith("--processes")]
    launcher = ["-m", "launch.sweep"] if __package__ else [argv[0]]
    address, _ = processes.spawn_local(launcher + argv[1:], _PROCESSES.value, str(workdir))
    num_processes = _PROCESSES.value
  if address:
    processes.initialize(address, num_processes, _PROCESS_ID.value)
  try:
    results = sweep_run.run(config, workdir, console.say)
  except run_lock.WorkdirBusy as busy:
    sys.exit(f"error: {busy}")
  if processes.writes():
    written = sweep_report.render(results, workdir)
    console.say("report", f"{written['report.md']} and {written['report.html']}")
  print(f"sweep finished in {time.time() - started:.0f} s; outputs in {workdir}")


if __name__ == "__main__":
  app.run(main)
