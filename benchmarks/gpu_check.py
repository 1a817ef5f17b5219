"""Issue 7 on one GPU: paper-size step times, vmapped ensembles, determinism, study time.

  python -m benchmarks.gpu_check --out=/tmp/gpu_check    # one GPU: at most ~8 minutes
  python -m benchmarks.gpu_check --quick --out=/tmp/gpuq # CPU, tiny sizes: under a minute
  bash benchmarks/gpu_check.sh                           # on the lent device machine

Sections, run in the order --sections gives:
  steps        one member's train step as the engine runs it (Ensemble._step, a vmap of
               one member) at the config's sizes (configs/paper.py; --quick: smoke.py):
               compile s apart, then s/step, volumes/s, XLA's MiB and TFLOP/s; each
               --dtypes (train.compute_dtype) in turn. On running out of memory the
               batch is halved (twice at most) and the row says so.
  estimate     the study's wall time from those step times: steps per task from the
               cohort size, splits, batch, members and epochs (BUILD_NOTES.md, "Paper
               config on one GPU"), a forward-only pass (validation chunk; the extra
               pass of bn_stats="precise") as a third of a step, one compilation per
               model; against the one-hour goal (the vmap section's best width too,
               when it ran first). Synthesis, ingest and prepare are not in it.
  determinism  tests/test_ensemble.py's checks on its toy task: the same config and key
               twice give the same bits; member 2 alone == member 2 of 4 at
               members_per_device=1 (bitwise) and within 1e-5 in one vmap of 4 (the
               test's tolerance). Then per model, paper widths and batch on small
               inputs, 2 epochs of 2 steps: trained twice, bitwise; a vmap of 2 vs 1
               member per call (INFO: no tolerance is established at these widths).
               Both runs of a pair compile afresh in this one process.
  vmap         ensemble throughput (volumes/s, all members) of 1 member per call, the
               sequential baseline measured in this run, vs a vmap of 2, 4, 10 members
               per call, float32; a width that fails (memory) ends that model's row.
Timing: compile (lower + compile) timed alone; one warm-up block; then --reps blocks
of --block steps, each ended by block_until_ready; the median block, per step.
XLA_FLAGS get train/loop.py's deterministic GPU flags when the config's
exact_reproducibility asks for them (as the study runs), checked first in a child
process (XLA aborts on an unknown flag). --out=DIR: results.json and summary.md,
rewritten after every measurement, so a run stopped by a time limit keeps what it
measured. A section starts no new measurement past its --budgets seconds, nor any
section past --total_budget_s (a measurement already started runs to its end).
--quick: configs/smoke.py at 32x32x3 and 16x16x4 inputs, the first dtype for every
model and the others for the first model only, the toy determinism checks alone, a
vmap of 1 and 2 (see QUICK). The sections live in gpu_steps.py (steps, vmap, and what
they share), gpu_estimate.py and gpu_determinism.py; this file is flags and main.
"""
import os
import platform
import shutil
import subprocess
import sys

from absl import app, flags
import flax
import jax
import jaxlib
import numpy as np
import optax

from benchmarks.gpu_steps import (QUICK, Run, error_text, load_config, say, section_steps,
                                  section_vmap)
from benchmarks.gpu_determinism import section_determinism
from benchmarks.gpu_estimate import markdown, section_estimate
from scanbias_jax.train import loop

FLAGS = flags.FLAGS


flags.DEFINE_bool("quick", False, "tiny sizes, fewer repetitions and models (a CPU test)")
flags.DEFINE_bool("require_gpu", False, "exit at once unless JAX's backend is a GPU")
flags.DEFINE_string("out", "", "directory for results.json and summary.md")
flags.DEFINE_list("sections", ["steps", "estimate", "determinism", "vmap"], "in this order")
flags.DEFINE_list("models", ["shallow_cnn", "resnet3d", "unet3d"], "models of the steps section")
flags.DEFINE_list("determinism_models", ["shallow_cnn", "resnet3d", "unet3d"],
                  "models trained twice by the determinism section")
flags.DEFINE_list("dtypes", ["float32", "bfloat16"], "compute dtypes of the steps section")
flags.DEFINE_list("vmap_models", ["shallow_cnn", "resnet3d"], "models of the vmap section")
flags.DEFINE_list("vmap_widths", ["1", "2", "4", "10"], "members per call; 1 is the baseline")
flags.DEFINE_list("budgets", ["steps=180", "determinism=90", "vmap=120"],
                  "section=seconds after which a section starts no new measurement")
flags.DEFINE_float("total_budget_s", 400.0, "no new measurement after this many seconds")
flags.DEFINE_integer("reps", 5, "timed blocks per measurement (fewer past 20 s)")
flags.DEFINE_integer("block", 4, "steps per timed block")
flags.DEFINE_enum("xla_determinism", "config", ["config", "on", "off"],
                  "deterministic GPU flags: as the config's train.exact_reproducibility, or forced")


def set_xla_flags(config, mode: str) -> dict:
  """Adds the deterministic GPU flags to XLA_FLAGS if asked, after checking in a child
  process that this jaxlib accepts them. Call before JAX starts a backend."""
  wanted = {"config": bool(config.train.exact_reproducibility), "on": True,
            "off": False}[mode]
  record = {"requested": wanted, "applied": False}
  if wanted:
    env = dict(os.environ)
    flags_now = env.get("XLA_FLAGS", "").split()
    env["XLA_FLAGS"] = " ".join(flags_now + [f for f in loop.DETERMINISTIC_XLA_FLAGS
                                             if f not in flags_now])
    probe = subprocess.run([sys.executable, "-c", "import jax; print(jax.default_backend())"],
                           env=env, capture_output=True, text=True, timeout=180)
    if probe.returncode == 0:
      loop.request_exact_reproducibility()
      record["applied"] = True
    else:
      record["probe_error"] = (probe.stderr or probe.stdout)[-800:]
      say(f"WARNING: this jaxlib refused {loop.DETERMINISTIC_XLA_FLAGS}; running without "
          f"them:\n{record['probe_error']}")
  record["XLA_FLAGS"] = os.environ.get("XLA_FLAGS", "")
  return record


def device_description() -> dict:
  devices = jax.devices()
  info = {
      "backend": jax.default_backend(), "devices": [str(d) for d in devices],
      "device_kind": devices[0].device_kind, "jax": jax.__version__,
      "jaxlib": jaxlib.__version__, "python": platform.python_version(),
      "platform_version": getattr(getattr(devices[0], "client", None), "platform_version", ""),
  }
  info.update(flax=flax.__version__, optax=optax.__version__, numpy=np.__version__)
  stats = devices[0].memory_stats()  # None on CPU
  if stats:
    info["memory_limit_gib"] = round(stats.get("bytes_limit", 0) / 2 ** 30, 1)
  if shutil.which("nvidia-smi"):
    smi = subprocess.run(["nvidia-smi", "--query-gpu=name,memory.total,driver_version,"
                          "clocks.max.sm", "--format=csv,noheader"],
                         capture_output=True, text=True, timeout=30)
    info["nvidia_smi"] = smi.stdout.strip() or smi.stderr.strip()
  return info


def main(argv):
  del argv
  if FLAGS.quick:
    for name, value in QUICK.items():
      if not FLAGS[name].present:
        FLAGS[name].value = value
  budgets = {k: float(v) for k, v in (item.split("=") for item in FLAGS.budgets)}
  run = Run(FLAGS.out, budgets, FLAGS.total_budget_s, markdown)
  config, config_name = load_config(FLAGS.quick)
  # Before JAX starts its backend: the study's flags, and room for paper-size batches.
  os.environ.setdefault("XLA_PYTHON_CLIENT_MEM_FRACTION", "0.92")
  run.results["meta"].update(config=config_name, quick=FLAGS.quick,
                             sections=FLAGS.sections,
                             xla=set_xla_flags(config, FLAGS.xla_determinism))
  run.results["meta"]["device"] = device = device_description()
  say(f"{device['device_kind']} ({device['backend']}): {device['devices']}; "
      f"{device.get('nvidia_smi', '')}")
  say(f"jax {device['jax']} jaxlib {device['jaxlib']} flax {device['flax']} python "
      f"{device['python']} {device['platform_version']}; XLA_FLAGS "
      f"{os.environ.get('XLA_FLAGS', '')!r}; config {config_name}")
  if FLAGS.require_gpu and device["backend"] != "gpu":
    run.save()
    sys.exit(f"gpu_check: JAX's backend is {device['backend']!r}, not a GPU (--require_gpu)")
  timing = {"reps": FLAGS.reps, "block": FLAGS.block,
            "max_seconds": 5.0 if FLAGS.quick else 20.0}
  run.save()
  for name in FLAGS.sections:
    say(f"\n## {name}")
    try:
      if name == "steps":
        section_steps(run, config, timing)
      elif name == "vmap":
        section_vmap(run, config, timing)
      elif name == "determinism":
        section_determinism(run, config)
      elif name == "estimate":
        section_estimate(run, config)
      else:
        raise ValueError(f"unknown section {name!r}")
    except Exception as e:  # pylint: disable=broad-except  (keep the other sections)
      say(f"section {name} failed: {error_text(e)}")
      run.results["sections"].setdefault(name, {})["error"] = error_text(e)
      run.end(name, "error")
  order = FLAGS.sections
  if "estimate" in order and "vmap" in order and order.index("vmap") > order.index("estimate"):
    say("\n## estimate, again with the vmap widths")
    section_estimate(run, config)
  run.save()
  say("\n" + markdown(run.results))


if __name__ == "__main__":
  app.run(main)
