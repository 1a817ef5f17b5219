"""Ingest a DICOM tree: HU NIfTI volumes, a PHI-free manifest, rejects, a matched cohort.

  python -m launch.ingest --dicom_root=runs/default/dicom --out=runs/default/cohort \
      --config=configs/default.py [--grid=paper|native] [--config.ingest.workers=2]

Outputs (under --out): volumes/<study_id>.nii.gz, manifest.csv, rejects.csv,
summary.json, cohort.csv (matched studies with their split), balance_all.csv and
balance_cohort.csv; .done (the summary). Rerunning skips finished studies, and a
finished ingest entirely (experiments/study.ingest_into, as `launch/study.py` runs it).
"""
import json
import os
import sys
from pathlib import Path

if not __package__:  # run as a file (python launch/ingest.py): configs/ is in the repository root
  sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from absl import app
from absl import flags
from ml_collections import config_flags

from scanbias_jax import console
from scanbias_jax.experiments import study

_CONFIG = config_flags.DEFINE_config_file(
    "config", "configs/default.py", "ml_collections config file (a get_config() module).",
    lock_config=True)
_DICOM_ROOT = flags.DEFINE_string("dicom_root", None, "Tree of DICOM files, any layout.",
                                  required=True)
_OUT = flags.DEFINE_string("out", None, "Output directory.", required=True)
_GRID = flags.DEFINE_enum("grid", None, ["paper", "native"],
                          "paper: 256x256x35 at 5 mm; native: the series as assembled. "
                          "Default: config.ingest.grid (paper).")


def main(argv):
  del argv
  console.setup()
  config = _CONFIG.value
  if _GRID.value:
    config.ingest.grid = _GRID.value
  out = study.ingest_into(config, Path(_DICOM_ROOT.value), Path(_OUT.value), console.say)
  summary = json.loads((out / ".done").read_text())
  print(f"{summary['studies_ok']} of {summary['studies']} studies ingested "
        f"({summary['studies_rejected']} rejected, {summary['files_rejected']} files "
        f"rejected; see {out / 'rejects.csv'}), matched cohort of {summary['cohort']}")


if __name__ == "__main__":
  app.run(main)
