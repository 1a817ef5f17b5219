"""launch/train.py: trains one task's ensemble from an .npz and resumes on rerun."""
import json
import os
import subprocess
import sys

import jax
import numpy as np

import train_toys as toys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def run_launcher(data, workdir, epochs):
  command = [sys.executable, "-m", "launch.train", "--config=configs/smoke.py", "--task=spheres",
             f"--data={data}", f"--workdir={workdir}", f"--config.models.spheres.num_epochs={epochs}",
             "--config.train.batch_size=4", "--config.train.eval_batch_size=4"]
  result = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=600)
  assert result.returncode == 0, result.stderr[-3000:]


def test_launcher_trains_and_resumes(tmp_path):
  volumes = toys.sphere_volumes(jax.random.key(0), n=16, n_train=8)
  data = tmp_path / "spheres.npz"
  np.savez(data, **{f"{split}_{name}": np.asarray(volumes[split][name])
                    for split in ("train", "val") for name in ("x", "y")})
  workdir = tmp_path / "run"
  run_launcher(data, workdir, epochs=1)
  first = (workdir / "metrics.jsonl").read_text().splitlines()
  run_launcher(data, workdir, epochs=2)  # resumes after epoch 1 and trains one more
  lines = (workdir / "metrics.jsonl").read_text().splitlines()
  assert lines[:2] == first  # epoch 0 kept as written (wall seconds included), not retrained
  records = [json.loads(line) for line in lines]
  assert sorted((r["epoch"], r["member"]) for r in records) == [(0, 0), (0, 1), (1, 0), (1, 1)]
  assert all(np.isfinite(r["train_loss"]) for r in records)
  assert json.loads((workdir / "train_config.json").read_text())["num_epochs"] == 2
