"""benchmarks/gpu_check.py in --quick mode on the CPU: every section, finite numbers, PASS."""
import json
import math
import os
import subprocess
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
STEP_FIELDS = ("compile_s", "s_per_step", "vol_per_s", "xla_mib", "loss")


def test_quick_gpu_check_writes_every_section(tmp_path):
  out = tmp_path / "gpu_check"
  command = [sys.executable, "-m", "benchmarks.gpu_check", "--quick", f"--out={out}"]
  result = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=300)
  assert result.returncode == 0, result.stderr[-3000:]
  results = json.loads((out / "results.json").read_text())
  sections = results["sections"]
  assert list(sections) == ["steps", "estimate", "determinism", "vmap"]
  assert all(s["status"] == "done" for s in sections.values()), sections
  assert results["meta"]["device"]["backend"] == "cpu"
  for name in ("steps", "vmap"):
    rows = sections[name]["rows"]
    assert rows and all(math.isfinite(r[f]) and r[f] >= 0 for r in rows for f in STEP_FIELDS)
    assert all(r["s_per_step"] > 0 for r in rows)
  assert {(r["model"], r["dtype"]) for r in sections["steps"]["rows"]} >= {
      ("shallow_cnn", "float32"), ("resnet3d", "float32"), ("unet3d", "float32"),
      ("shallow_cnn", "bfloat16")}
  vmap = sections["vmap"]["rows"]
  assert [r["width"] for r in vmap] == [1, 2] and vmap[0]["vs_sequential"] == 1.0
  assert math.isfinite(vmap[1]["vs_sequential"])
  estimate = sections["estimate"]
  assert estimate["rows"] and all(math.isfinite(r["total_s"]) and r["total_s"] > 0
                                  for r in estimate["rows"])
  # The smoke config's study: 12 studies split 1/3 each, 4 crops a training study,
  # batch 2, 2 members x 2 epochs.
  assert estimate["plan"]["shallow_cnn"]["train_steps"] == (4 * 4 // 2) * 2 * 2
  checks = sections["determinism"]["checks"]
  assert len(checks) >= 4 and all(c["status"] == "PASS" for c in checks), checks
  summary = (out / "summary.md").read_text()
  assert "## determinism" in summary and "FAIL" not in summary
