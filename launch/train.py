"""Train one task's seed ensemble on arrays saved as .npz (train_x, train_y, val_x, val_y).

  python -m launch.train --config=configs/default.py --task=spheres \
      --data=runs/default/spheres.npz --workdir=runs/default/train/spheres

Experiments call scanbias_jax.train.loop.run directly; this is for training on
arrays prepared elsewhere. Rerunning resumes from the newest checkpoint.
"""
import os
import sys

if not __package__:  # run as a file (python launch/train.py): configs/ is in the repository root
  sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from absl import app, flags
from ml_collections import config_flags

from scanbias_jax import console  # JAX-free: the backend still starts after the flags

config_flags.DEFINE_config_file("config", None, "ml_collections config file", lock_config=True)
flags.DEFINE_string("task", None, "entry of config.models (name_manufacturer, spheres, segmentation)")
flags.DEFINE_string("data", None, ".npz with train_x, train_y, val_x, val_y")
flags.DEFINE_string("workdir", None, "run directory (checkpoints, metrics.jsonl)")
flags.mark_flags_as_required(["config", "task", "data", "workdir"])
FLAGS = flags.FLAGS


def main(argv):
  del argv
  console.setup()
  config = FLAGS.config
  from scanbias_jax.train import loop  # imports JAX; flags must be set before its backend starts
  if config.train.exact_reproducibility:
    loop.request_exact_reproducibility()
  import numpy as np
  from scanbias_jax import keys
  from scanbias_jax.train import member
  arrays = np.load(FLAGS.data)
  data = {split: {"x": arrays[f"{split}_x"], "y": arrays[f"{split}_y"]} for split in ("train", "val")}
  key = keys.stream(keys.root(config.seed), f"train/{FLAGS.task}")
  loop.run(key, member.task_config(config, FLAGS.task), data, os.path.join(FLAGS.workdir))


if __name__ == "__main__":
  app.run(main)
