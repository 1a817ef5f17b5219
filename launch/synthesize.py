"""Writes a synthetic head-CT cohort as a DICOM export (plus the simulator's truth).

  python -m launch.synthesize --config=configs/default.py --out=runs/cohort
  python -m launch.synthesize --config=configs/paper.py --out=/tmp/two --num_studies=2
  python -m launch.synthesize --config=configs/default.py --config.synth.signature_strength=0 --out=...
"""
import os
import sys
import time
from pathlib import Path

if not __package__:  # run as a file (python launch/synthesize.py): configs/ is in the repository root
  sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from absl import app, flags, logging
from ml_collections import config_flags

from scanbias_jax import console, keys
from scanbias_jax.report import figures
from scanbias_jax.synth import cohort, export

_CONFIG = config_flags.DEFINE_config_file("config", "configs/default.py")
_OUT = flags.DEFINE_string("out", None, "Output directory.", required=True)
_NUM_STUDIES = flags.DEFINE_integer("num_studies", None, "Override synth.num_studies.")


def main(argv):
  del argv
  console.setup()
  config = _CONFIG.value
  if _NUM_STUDIES.value is not None:
    config.synth.num_studies = _NUM_STUDIES.value
  out = Path(_OUT.value)
  start = time.time()

  key = keys.stream(keys.root(config.seed), "synth")
  records = export.write_cohort(key, config.synth, out, console.progress("synthesize"))
  preview = figures.vendor_slices(cohort.vendor_preview(key, config.synth),
                                  config.synth.fov_mm / config.synth.matrix,
                                  out / "vendor_preview.png")
  for vendor, s in export.summarize(records).items():
    logging.info("%s: %d studies, %d series, %d files, %.1f MB", vendor,
                 s["studies"], s["series"], s["files"], s["bytes"] / 1e6)
  print(f"synthesized {len(records)} studies in {time.time() - start:.1f} s: "
        f"DICOM export in {out / 'dicom'}, ground truth in {out / 'truth'}, "
        f"one slice per vendor in {preview}")


if __name__ == "__main__":
  app.run(main)
