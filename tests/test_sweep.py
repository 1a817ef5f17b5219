"""Sweeps: the grid, the vendor mix, the smoke sweep end to end (resume, growth, bits).

The smoke sweep (configs/sweep.py:smoke: strength 0 and 1 x majority share 0.5 and
1.0, 24 studies) runs once for the module through the launcher, as `make sweep` does.
"""
import fcntl
import json
import shutil
import subprocess
import sys
from pathlib import Path

import ml_collections
import numpy as np
import pytest

from configs import sweep as sweep_config
from scanbias_jax import keys
from scanbias_jax.report import sweep_report
from scanbias_jax.sweep import grid, mix

ROOT = Path(__file__).resolve().parents[1]


def _launch(workdir: Path, *overrides: str) -> str:
  done = subprocess.run(
      [sys.executable, "-m", "launch.sweep", "--config=configs/sweep.py:smoke",
       f"--workdir={workdir}", *overrides], cwd=ROOT, capture_output=True, text=True,
      timeout=600, check=False)
  assert done.returncode == 0, done.stderr[-4000:]
  return done.stdout + done.stderr


@pytest.fixture(scope="module")
def smoke_sweep(tmp_path_factory):
  """The smoke sweep's workdir, run once for the whole test run: pytest-xdist tears
  a module fixture down whenever a worker runs dry, so it lives under the run's
  shared temporary root, built under a lock by whichever worker comes first."""
  workdir = tmp_path_factory.getbasetemp().parent / "smoke_sweep"
  with open(f"{workdir}.lock", "w") as lock:
    fcntl.flock(lock, fcntl.LOCK_EX)
    if not (workdir / "results.json").exists():
      _launch(workdir)
  return workdir


# --- the grid ---------------------------------------------------------------------------

def test_axes_mirror_the_config_and_points_are_their_product():
  config = sweep_config.get_config("smoke")
  assert grid.axes(config) == {"sweep.majority_share": (0.5, 1.0),
                               "synth.signature_strength": (0.0, 1.0)}
  points = grid.points(config)
  assert len(points) == 4 and points[0] == {"sweep.majority_share": 0.5,
                                            "synth.signature_strength": 0.0}
  one = grid.point_config(config, points[3])  # the last axis varies fastest
  assert one.synth.signature_strength == 1.0 and one.sweep.majority_share == 1.0
  assert config.synth.signature_strength == 1.0 and config.sweep.majority_share == 0.5


def test_an_axis_must_name_an_existing_field():
  config = sweep_config.get_config("smoke")
  with config.sweep.axes.unlocked():
    config.sweep.axes.synth.no_such_field = (1, 2)
  with pytest.raises(ValueError, match="synth.no_such_field"):
    grid.axes(config)


def test_the_mix_shares_the_data_and_the_axes_do_not_enter_the_point_key():
  config = sweep_config.get_config("smoke")
  a, b, c, d = (grid.point_config(config, p) for p in grid.points(config))
  assert grid.data_key(a) == grid.data_key(c) != grid.data_key(b) == grid.data_key(d)
  assert grid.nameability_key(a) == grid.nameability_key(c)
  assert len({grid.point_key(x) for x in (a, b, c, d)}) == 4
  grown = sweep_config.get_config("smoke")
  grown.sweep.axes.sweep.majority_share = (0.5, 0.75, 1.0)
  assert grid.point_key(grid.point_config(grown, grid.points(grown)[0])) == grid.point_key(a)


def test_variants():
  assert sweep_config.get_config("paper").synth.design == "traveling"
  with pytest.raises(ValueError, match="variant"):
    sweep_config.get_config("nope")


# --- the vendor mix ---------------------------------------------------------------------

def _rows(heads: int, missing=()):
  return [dict(study_id=f"{v}-{h:02d}", anatomy=str(h), vendor=v)
          for h in range(heads) for v in ("GE", "Siemens") if (h, v) not in missing]


def test_a_mix_keeps_the_size_and_moves_only_the_composition():
  key = keys.root(3)
  for share in (0.5, 0.75, 0.9, 1.0):
    chosen, summary = mix.compose(_rows(40), "vendor", ("GE", "Siemens"), share, key)
    assert len(chosen) == 40 and summary["missing"] == 0
    assert summary["studies"] == {"GE": round(share * 40), "Siemens": 40 - round(share * 40)}
    heads = {s.split("-")[1] for s in chosen}
    assert len(heads) == 40  # every head once


def test_mixes_are_nested_and_even_is_even_whichever_vendor_leads():
  key = keys.root(3)
  minority = {}
  for share in (0.5, 0.75, 0.9, 1.0):
    chosen, _ = mix.compose(_rows(40), "vendor", ("GE", "Siemens"), share, key)
    minority[share] = {s for s in chosen if s.startswith("Siemens")}
  assert minority[1.0] <= minority[0.9] <= minority[0.75] <= minority[0.5]
  ge_led = mix.first_vendor_share(("GE", "Siemens"), "GE", 0.5)
  siemens_led = mix.first_vendor_share(("GE", "Siemens"), "Siemens", 0.5)
  assert mix.compose(_rows(40), "vendor", ("GE", "Siemens"), ge_led, key) == \
      mix.compose(_rows(40), "vendor", ("GE", "Siemens"), siemens_led, key)
  assert mix.first_vendor_share(("GE", "Siemens"), "Siemens", 0.9) == pytest.approx(0.1)


def test_a_head_without_the_asked_acquisition_is_counted_not_replaced():
  rows = _rows(10, missing={(h, "GE") for h in range(10)})
  chosen, summary = mix.compose(rows, "vendor", ("GE", "Siemens"), 1.0, keys.root(0))
  assert chosen == [] and summary["missing"] == 10
  with pytest.raises(ValueError, match="sweep.majority"):
    mix.first_vendor_share(("GE", "Siemens"), "Philips", 0.9)
  with pytest.raises(ValueError, match="majority_share"):
    mix.first_vendor_share(("GE", "Siemens"), "GE", 1.5)


# --- the report's words -----------------------------------------------------------------

def _point(strength, share, difference, ci, mdd):
  gap = dict(difference=difference, ci=ci, p_value=0.01, mdd=mdd)
  return dict(axes={"synth.signature_strength": strength, "sweep.majority_share": share},
              minority="Siemens", majority="GE", nameability={},
              tasks={"spheres/medium": dict(metric="accuracy", by_vendor={},
                                            minority_minus_majority=gap)})


def test_the_answer_says_the_cost_from_the_minority_side_and_where_it_passes_the_mdd():
  results = dict(tasks=["spheres/medium"], points=[
      _point(0.0, 0.9, 0.01, [-0.05, 0.07], 0.08), _point(1.0, 0.9, -0.06, [-0.1, -0.02], 0.08),
      _point(2.0, 0.9, -0.2, [-0.28, -0.12], 0.09), _point(1.0, 1.0, -0.3, [-0.4, -0.2], 0.1)])
  lines = sweep_report.answer(results)
  assert "a 90/10 GE/Siemens mix costs Siemens 6.0 [2.0, 10.0] points (harm" in lines[0]
  assert "training on GE alone costs Siemens 30.0 [20.0, 40.0]" in lines[1]
  assert lines[2].endswith("first exceeds its MDD at strength 1.")


# --- the smoke sweep --------------------------------------------------------------------

def test_every_point_reports_its_metrics_on_one_shared_test_set(smoke_sweep):
  workdir = smoke_sweep
  results = json.loads((workdir / "results.json").read_text())
  assert results["test_set"]["same_heads_every_point"]
  assert [p["axes"] for p in results["points"]] == grid.points(sweep_config.get_config("smoke"))
  for p in results["points"]:
    assert set(p["nameability"]) == {"cnn", "probe"}
    for side in ("cnn", "probe"):
      low, high = p["nameability"][side]["auroc_ci"]
      assert low <= p["nameability"][side]["auroc"] <= high
    assert set(p["tasks"]) == {"spheres/medium", "segmentation"}
    for task in p["tasks"].values():
      assert set(task["by_vendor"]) == {"GE", "Siemens"}
      gap = task["minority_minus_majority"]
      assert gap["design"] == "paired" and gap["ci"][0] <= gap["difference"] <= gap["ci"][1]
      assert gap["mdd"] > 0 and 0 <= gap["p_value"] <= 1
    train = p["training_set"]["train"]
    share = p["axes"]["sweep.majority_share"]
    assert train["studies"]["GE"] == round(share * train["heads"])
  for name in ("report.md", "report.html", "figures/sweep_spheres_medium.png",
               "figures/sweep_names_cnn.png"):
    assert (workdir / name).stat().st_size > 0
  html = (workdir / "report.html").read_text()
  assert "data:image/png;base64," in html and "src='figures/" not in html
  assert (workdir / "report.md").read_text().splitlines()[4].startswith("- Medium spheres: at ")


def test_the_strength_zero_control_shows_no_harm_and_no_vendor(smoke_sweep):
  workdir = smoke_sweep
  results = json.loads((workdir / "results.json").read_text())
  for p in results["points"]:
    if p["axes"]["synth.signature_strength"] != 0.0:
      continue
    for task in p["tasks"].values():
      low, high = task["minority_minus_majority"]["ci"]
      assert low <= 0.0 <= high
    low, high = p["nameability"]["cnn"]["accuracy_ci"]
    assert low <= 0.5 <= high


def test_a_rerun_reuses_every_point_and_writes_the_same_bytes(smoke_sweep, tmp_path):
  workdir = tmp_path / "sweep"  # a copy: the other tests read the original meanwhile
  shutil.copytree(smoke_sweep, workdir)
  before = (workdir / "results.json").read_bytes()
  points = {p.name: p.read_bytes() for p in (workdir / "points").glob("*.json")}
  log = _launch(workdir, "--config.sweep.axes.sweep.majority_share=(0.5, 0.75, 1.0)")
  assert "train_loss" in log  # the two new points train
  grown = json.loads((workdir / "results.json").read_text())
  assert len(grown["points"]) == 6
  for name, data in points.items():
    assert (workdir / "points" / name).read_bytes() == data
  log = _launch(workdir)
  assert "train_loss" not in log
  assert (workdir / "results.json").read_bytes() == before


def test_a_fresh_point_has_the_same_bits(smoke_sweep, tmp_path):
  """A point run again from nothing, alone, equals the fixture's byte for byte. (Two
  processes give the same bytes too, BUILD_NOTES "Sweeps": 2.5 minutes of the suite's
  2 cores, so it is not repeated here.)"""
  workdir = smoke_sweep
  _launch(tmp_path, "--config.sweep.axes.synth.signature_strength=(1.0,)",
          "--config.sweep.axes.sweep.majority_share=(1.0,)")
  (name,) = [p.name for p in (tmp_path / "points").glob("*.json")]
  assert (tmp_path / "points" / name).read_bytes() == (workdir / "points" / name).read_bytes()
