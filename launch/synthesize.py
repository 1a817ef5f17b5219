"""Writes a synthetic head-CT cohort as a DICOM export (plus the simulator's truth).

  python -m launch.synthesize --config=configs/default.py --out=runs/cohort
  python -m launch.synthesize --config=configs/paper.py --out=/tmp/two --num_studies=2
  python -m launch.synthesize --config=configs/default.py --config.synth.signature_strength=0 --out=...
"""
import json
import os
import sys
import time
from pathlib import Path

if not __package__:  # run as a file (python launch/synthesize.py): configs/ is in the repository root
  sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from absl import app, flags
from ml_collections import config_flags

from scanbias_jax import console
from scanbias_jax.experiments import study

_CONFIG = config_flags.DEFINE_config_file(
    "config", "configs/default.py", "ml_collections config file (a get_config() module).",
    lock_config=True)
_OUT = flags.DEFINE_string("out", None, "Output directory.", required=True)
_NUM_STUDIES = flags.DEFINE_integer("num_studies", None, "Override synth.num_studies.")


def main(argv):
  del argv
  console.setup()
  config = _CONFIG.value
  if _NUM_STUDIES.value is not None:
    config.synth.num_studies = _NUM_STUDIES.value
  start = time.time()
  out = study.synthesize_into(config, Path(_OUT.value), console.say)
  for vendor, s in json.loads((out / ".done").read_text()).items():
    console.say("synthesize", f"{vendor}: {s['studies']} studies, {s['series']} series, "
                f"{s['files']} files, {s['bytes'] / 1e6:.1f} MB")
  print(f"synthesized {config.synth.num_studies} studies in {time.time() - start:.1f} s: "
        f"DICOM export in {out / 'dicom'}, "
        f"ground truth in {out / 'truth'}, one slice per vendor in "
        f"{out / 'vendor_preview.png'}")


if __name__ == "__main__":
  app.run(main)
