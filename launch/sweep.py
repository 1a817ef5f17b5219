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

from launch import cluster
from scanbias_jax import console, processes, run_lock
from scanbias_jax.report import sweep_report
from scanbias_jax.sweep import run as sweep_run

_CONFIG = config_flags.DEFINE_config_file(
    "config", "configs/sweep.py", "ml_collections config file (a get_config() module).",
    lock_config=True)
_WORKDIR = flags.DEFINE_string("workdir", None, "Run directory.", required=True)


def main(argv):
  del argv
  console.setup()
  config, workdir = _CONFIG.value, Path(_WORKDIR.value)
  started = time.time()
  cluster.start("launch.sweep", workdir, as_file=not __package__)
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
