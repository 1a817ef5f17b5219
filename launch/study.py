"""Runs the study end to end for one config; finished stages are skipped.

  python -m launch.study --config=configs/default.py --workdir=runs/default
  python -m launch.study --config=configs/paper.py --workdir=runs/paper

Stages so far: synthesize (the DICOM export of the synthetic cohort). Ingest,
prepare, train and report are added as they land (see the open issues).
"""
import time
from pathlib import Path

from absl import app, flags, logging
from ml_collections import config_flags

from scanbias_jax import keys
from scanbias_jax.synth import export

_CONFIG = config_flags.DEFINE_config_file("config", "configs/default.py")
_WORKDIR = flags.DEFINE_string("workdir", None, "Run directory.", required=True)


def main(argv):
  del argv
  config, workdir = _CONFIG.value, Path(_WORKDIR.value)
  workdir.mkdir(parents=True, exist_ok=True)
  (workdir / "config.json").write_text(config.to_json_best_effort(indent=1))
  start = time.time()
  records = export.write_cohort(keys.stream(keys.root(config.seed), "synth"),
                                config.synth, workdir / "synth")
  for vendor, s in export.summarize(records).items():
    logging.info("%s: %d studies, %d files", vendor, s["studies"], s["files"])
  print(f"synthesize: {len(records)} studies in {time.time() - start:.1f} s -> "
        f"{workdir / 'synth' / 'dicom'} (truth in {workdir / 'synth' / 'truth'})")


if __name__ == "__main__":
  app.run(main)
