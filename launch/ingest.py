"""Ingest a DICOM tree: HU NIfTI volumes, a PHI-free manifest, rejects, a matched cohort.

  python -m launch.ingest --dicom_root=runs/default/dicom --out=runs/default/cohort \
      --config=configs/default.py [--grid=paper|native] [--config.ingest.workers=2]

Outputs (under --out): volumes/<study_id>.nii.gz, manifest.csv, rejects.csv,
summary.json, cohort.csv (matched studies with their split), balance_all.csv and
balance_cohort.csv. Rerunning skips finished studies; see scanbias_jax/cohort/ingest.py.
"""
import os
import sys

if not __package__:  # run as a file (python launch/ingest.py): configs/ is in the repository root
  sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from absl import app
from absl import flags
from absl import logging
from ml_collections import config_flags

from scanbias_jax import console
from scanbias_jax.cohort.ingest import ingest_tree

_CONFIG = config_flags.DEFINE_config_file("config", "configs/default.py", "Config file.")
_DICOM_ROOT = flags.DEFINE_string("dicom_root", None, "Tree of DICOM files, any layout.",
                                  required=True)
_OUT = flags.DEFINE_string("out", None, "Output directory.", required=True)
_GRID = flags.DEFINE_enum("grid", None, ["paper", "native"],
                          "paper: 256x256x35 at 5 mm; native: the series as assembled. "
                          "Default: config.ingest.grid (paper).")


def main(argv):
  del argv
  console.setup()
  # JAX (via keys) is imported after ingest: spawned workers re-import this module.
  config = _CONFIG.value
  if _GRID.value:
    config.ingest.grid = _GRID.value
  summary = ingest_tree(_DICOM_ROOT.value, _OUT.value, config, console.progress("ingest"))
  logging.info("ingest: %s", summary)
  from scanbias_jax.cohort import balance  # pylint: disable=g-import-not-at-top
  cohort, before, after = balance.write_cohort_tables(_OUT.value, config)
  group = config.cohort.group
  print(f"{summary['studies_ok']} of {summary['studies']} studies ingested "
        f"({summary['studies_rejected']} rejected, {summary['files_rejected']} files "
        f"rejected); see {_OUT.value}/rejects.csv")
  if before:
    print("All usable studies:\n" + balance.format_table(before, group))
  if after:
    print(f"Matched cohort ({len(cohort)} studies):\n" + balance.format_table(after, group))


if __name__ == "__main__":
  app.run(main)
