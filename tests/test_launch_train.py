"""launch/train.py: trains one task's ensemble from an .npz and resumes on rerun; every
launcher starts as a module and as a file."""
import json
import os
import subprocess
import sys

import jax
import numpy as np
import pytest

import train_toys as toys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


LAUNCHERS = ("study", "synthesize", "ingest", "prepare", "train", "audit")


def run_launcher(data, workdir, epochs, as_file=False):
  start = [os.path.join(ROOT, "launch", "train.py")] if as_file else ["-m", "launch.train"]
  command = [sys.executable, *start, "--config=configs/smoke.py", "--task=spheres",
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
  run_launcher(data, workdir, epochs=2, as_file=True)  # resumes after epoch 1, one more
  lines = (workdir / "metrics.jsonl").read_text().splitlines()
  assert lines[:2] == first  # epoch 0 kept as written (wall seconds included), not retrained
  records = [json.loads(line) for line in lines]
  assert sorted((r["epoch"], r["member"]) for r in records) == [(0, 0), (0, 1), (1, 0), (1, 1)]
  assert all(np.isfinite(r["train_loss"]) for r in records)
  assert json.loads((workdir / "train_config.json").read_text())["num_epochs"] == 2


@pytest.mark.parametrize("name", LAUNCHERS)
def test_launcher_runs_as_a_file_from_any_directory(name, tmp_path):
  """`python launch/<name>.py` finds configs/ (smoke.py imports configs.default) wherever it
  is started; with no output folder given, it stops at the flags, naming the missing one."""
  command = [sys.executable, os.path.join(ROOT, "launch", f"{name}.py"),
             f"--config={os.path.join(ROOT, 'configs', 'smoke.py')}"]
  result = subprocess.run(command, cwd=tmp_path, capture_output=True, text=True, timeout=300)
  assert result.returncode != 0
  assert "Error" not in result.stderr.replace("Flags parsing error", ""), result.stderr[-2000:]
  assert "Flags parsing error" in result.stderr and "must have a value" in result.stderr
