"""Prepare the experiment data sets from an ingested cohort (paper 3.2).

  python -m launch.prepare --config=configs/default.py --cohort=runs/default/cohort \
      --out=runs/default/prepared [--truth=runs/default/synth/truth]

Writes brain masks, the splits (70/9/21 over group x label), the sphere table,
overlays and summary.md / summary.json (see scanbias_jax/experiments/prepare.py).
With --truth (the synthesizer's truth/ folder) it also scores the skull stripping
against the ground-truth brain masks. Rerunning skips finished studies.
"""
import os
import sys

if not __package__:  # run as a file (python launch/prepare.py): configs/ is in the repository root
  sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from absl import app
from absl import flags
from ml_collections import config_flags

from scanbias_jax import console
from scanbias_jax.experiments import prepare

_CONFIG = config_flags.DEFINE_config_file(
    "config", "configs/default.py", "ml_collections config file (a get_config() module).",
    lock_config=True)
_COHORT = flags.DEFINE_string("cohort", None, "Ingest output directory.", required=True)
_OUT = flags.DEFINE_string("out", None, "Output directory.", required=True)
_TRUTH = flags.DEFINE_string("truth", None, "Synthesizer truth/ folder (optional).")


def main(argv):
  del argv
  console.setup()
  summary = prepare.prepare_cohort(_COHORT.value, _OUT.value, _CONFIG.value, _TRUTH.value,
                                   console.progress("prepare"))
  with open(f"{_OUT.value}/summary.md") as f:
    print(f.read())
  print(f"prepare: {summary['studies']} studies ({summary['prepared_now']} now, "
        f"{summary['skipped_as_done']} done before) in {summary['seconds']:.1f} s -> {_OUT.value}")


if __name__ == "__main__":
  app.run(main)
