"""Bias audit of a DICOM export: which acquisition attributes can be named from the
images, and which of them line up with each other, with age and sex, and with labels.

  python -m launch.audit --config=configs/audit.py --workdir=runs/audit
  python -m launch.audit --dicom_root=/data/export --workdir=runs/mine [--labels=labels.csv]

Without --dicom_root it audits the embedded synthetic default (configs/audit.py: four
vendors, two models and kernels each, three sites, a planted null). --labels: a CSV with a
study_id column (the pseudonymised ids of <workdir>/cohort/manifest.csv) and one column
per label. Outputs: <workdir>/audit/report.md, report.html, results.json, features.csv.
"""
import os
import sys
import time
from pathlib import Path

if not __package__:  # run as a file (python launch/audit.py): configs/ is in the repository root
  sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from absl import app, flags
from ml_collections import config_flags

from scanbias_jax import console, run_lock
from scanbias_jax.experiments import audit

_CONFIG = config_flags.DEFINE_config_file(
    "config", "configs/audit.py", "ml_collections config file (a get_config() module).",
    lock_config=True)
_WORKDIR = flags.DEFINE_string("workdir", None, "Run directory.", required=True)
_DICOM_ROOT = flags.DEFINE_string("dicom_root", None, "The DICOM export (any layout); "
                                  "default: the embedded synthetic cohort.")
_LABELS = flags.DEFINE_string("labels", None, "CSV of labels keyed by study_id.")


def main(argv):
  del argv
  console.setup()
  started = time.time()
  try:
    audit.run(_CONFIG.value, Path(_WORKDIR.value), _DICOM_ROOT.value, _LABELS.value,
              console.say)
  except run_lock.WorkdirBusy as busy:
    sys.exit(f"error: {busy}")
  print(f"audit finished in {time.time() - started:.0f} s; outputs in "
        f"{Path(_WORKDIR.value) / 'audit'}")


if __name__ == "__main__":
  app.run(main)
