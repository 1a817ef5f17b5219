"""Runs the study end to end for one config; finished stages are skipped.

  python -m launch.study --config=configs/default.py --workdir=runs/default
  python -m launch.study --config=configs/paper.py --workdir=runs/paper
  python -m launch.study --config=configs/default.py --workdir=runs/mine --dicom_root=/data/export
  python -m launch.study --config=configs/smoke.py --workdir=runs/two --processes=2

Several processes (jax.distributed; scanbias_jax/processes.py): `--processes=N` starts
a local cluster of N CPU processes (the others log to <workdir>/process_<i>.log); on
several hosts, or one process a GPU, run the same command on each with
`--coordinator_address=host0:port --num_processes=N --process_id=i` and a shared
--workdir. Process 0 runs the data stages and writes every output; each process
trains its block of every ensemble's members; results.json is one process's.

Stages (each writes an inspectable folder or file under --workdir and resumes):
synth/ (skipped with --dicom_root), cohort/ (ingest), prepared/ (prepare), train/ and
results.json (the experiments), report.md and report.html.
"""
import json
import os
import sys
import time
from pathlib import Path

if not __package__:  # run as a file (python launch/study.py): configs/ is in the repository root
  sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from absl import app, flags, logging
from ml_collections import config_flags

from launch import cluster
from scanbias_jax import console, processes, run_lock
from scanbias_jax.experiments import study

_CONFIG = config_flags.DEFINE_config_file(
    "config", "configs/default.py", "ml_collections config file (a get_config() module).",
    lock_config=True)
_WORKDIR = flags.DEFINE_string("workdir", None, "Run directory.", required=True)
_DICOM_ROOT = flags.DEFINE_string("dicom_root", None,
                                  "Your own DICOM export instead of the synthetic cohort.")


def main(argv):
  del argv
  console.setup()
  config, workdir = _CONFIG.value, Path(_WORKDIR.value)
  started = time.time()
  num_processes = cluster.start("launch.study", workdir, as_file=not __package__)
  try:
    timings = study.run(config, workdir, _DICOM_ROOT.value, console.say)
  except (run_lock.WorkdirBusy, study.StageFailed) as stopped:
    sys.exit(f"error: {stopped}")
  logging.info("stage seconds: %s", json.dumps(timings))
  print(f"study finished in {time.time() - started:.0f} s; outputs in {workdir}"
        + (f" (process {processes.index()} of {num_processes})" if num_processes > 1 else ""))


if __name__ == "__main__":
  app.run(main)
