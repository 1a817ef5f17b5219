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
vmap of 1 and 2 (see QUICK).
"""
import importlib.util
import json
import math
import os
import platform
import shutil
import statistics
import subprocess
import sys
import time

from absl import app, flags
import flax
import jax
import jaxlib
import numpy as np
import optax

from benchmarks import bench_train, common
from configs import paper, smoke
from scanbias_jax import files
from scanbias_jax.train import ensemble, loop, member

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

# --quick's defaults for flags not given (compiles dominate on a CPU).
QUICK = {"determinism_models": [], "vmap_models": ["shallow_cnn"],
         "vmap_widths": ["1", "2"], "reps": 3, "block": 2}
TASKS = {"shallow_cnn": "name_manufacturer", "resnet3d": "spheres", "unet3d": "segmentation"}
# Determinism runs: paper widths and batch on inputs that compile and run in seconds.
SMALL_SHAPES = {"shallow_cnn": (64, 64, 3), "resnet3d": (32, 32, 16, 1),
                "unet3d": (32, 32, 16, 1)}
EVAL_STEP_FRACTION = 1 / 3  # an eval chunk (forward only) vs a train step (fwd + bwd)
GOAL_S = 3600.0
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


class Run:
  """Results, the clock and the output files of one check."""

  def __init__(self, out: str, budgets: dict, total_budget_s: float):
    self.out, self.budgets, self.total_budget_s = out, budgets, total_budget_s
    self.started = time.perf_counter()
    self.section_started = self.started
    self.results = {"meta": {}, "sections": {}}

  def elapsed(self) -> float:
    return time.perf_counter() - self.started

  def begin(self, name: str) -> dict:
    self.section_started = time.perf_counter()
    section = {"status": "running", "budget_s": self.budgets.get(name)}
    self.results["sections"][name] = section
    return section

  def time_left(self, name: str) -> bool:
    """Whether section `name` may start another measurement."""
    spent = time.perf_counter() - self.section_started
    budget = self.budgets.get(name, float("inf"))
    return spent < budget and self.elapsed() < self.total_budget_s

  def end(self, name: str, status: str = "done") -> None:
    section = self.results["sections"][name]
    section["status"] = status
    section["seconds"] = round(time.perf_counter() - self.section_started, 1)
    self.save()

  def save(self) -> None:
    meta = self.results["meta"]
    meta["elapsed_s"] = round(self.elapsed(), 1)
    stats = jax.devices()[0].memory_stats() if "device" in meta else None  # None on CPU
    if stats:
      meta["peak_memory_gib"] = round(stats.get("peak_bytes_in_use", 0) / 2 ** 30, 2)
    if not self.out:
      return
    for name, text in (("results.json", json.dumps(finite(self.results), indent=1)),
                       ("summary.md", markdown(self.results))):
      files.write_text(os.path.join(self.out, name), text)


def finite(tree):
  """JSON-safe copy: NaN and infinities become None."""
  if isinstance(tree, dict):
    return {k: finite(v) for k, v in tree.items()}
  if isinstance(tree, (list, tuple)):
    return [finite(v) for v in tree]
  if isinstance(tree, float) and not math.isfinite(tree):
    return None
  return tree


def say(line: str = "") -> None:
  print(line, flush=True)


def error_text(e: Exception) -> str:
  return f"{type(e).__name__}: {str(e).strip().splitlines()[0][:300] if str(e).strip() else ''}"


def out_of_memory(e: Exception) -> bool:
  text = str(e).lower()
  return "resource_exhausted" in text or "out of memory" in text


# ----------------------------------------------------------------------------- setup


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


def load_config(quick: bool):
  """configs/paper.py, or for --quick configs/smoke.py at smaller inputs still."""
  if not quick:
    return paper.get_config(), "configs/paper.py"
  config = smoke.get_config()
  # XLA:CPU compiles a folded 3D convolution per depth slice: fewer slices, faster.
  config.ingest.paper_grid.in_plane = 32
  config.experiments.spheres_shape = (16, 16, 4)
  config.experiments.segmentation_shape = (16, 16, 4)
  return config, "configs/smoke.py, inputs 32x32x3, 16x16x4"


def input_shape(config, model: str) -> tuple:
  """The model's input sample shape in the study that `config` describes."""
  exp = config.experiments
  if model == "shallow_cnn":
    in_plane = exp.in_plane or config.ingest.paper_grid.in_plane
    return (in_plane, in_plane, config.prepare.stack_slices)
  return tuple(exp.spheres_shape if model == "resnet3d" else exp.segmentation_shape) + (1,)


def with_overrides(cfg, **overrides):
  cfg = cfg.copy_and_resolve_references()
  cfg.update(overrides)
  return cfg


def train_config(config, model: str, **overrides):
  """The task's training config on one device, with overrides."""
  return with_overrides(member.task_config(config, TASKS[model]), num_devices=1,
                        first_member=0, **overrides)


# ----------------------------------------------------------------------------- steps


def time_step(cfg, shape, reps: int, block: int, max_seconds: float) -> dict:
  """Times the engine's step of cfg.members_per_device members vmapped in one call."""
  width, batch = cfg.members_per_device, cfg.batch_size
  ens = ensemble.make_ensemble(cfg)
  placed = ens.place_data(bench_train.data_for(cfg.model, tuple(shape), batch))
  states = ens.init(jax.random.key(0), placed)
  carry, *rest = common.first_step_args(ens, placed, states)
  del states  # the steps donate the carry
  started = time.perf_counter()
  compiled = ens._step.lower(carry, *rest).compile()
  compile_s = time.perf_counter() - started
  state = {"carry": carry, "loss": None}

  def run_block():
    for _ in range(block):
      state["carry"], state["loss"] = compiled(state["carry"], *rest)
    jax.block_until_ready(state)

  warm_s = common.timed(run_block)
  times = common.median_seconds(run_block, reps, max_seconds)
  s_step = statistics.median(times) / block
  flops = common.compiled_flops(compiled)
  return {
      "model": cfg.model, "dtype": cfg.compute_dtype, "shape": list(shape), "batch": batch,
      "width": width, "compile_s": round(compile_s, 2), "warm_block_s": round(warm_s, 4),
      "s_per_step": s_step, "vol_per_s": width * batch / s_step,
      "xla_mib": round(common.compiled_mib(compiled), 1), "tflop_per_step": flops / 1e12,
      "tflops": flops / s_step / 1e12, "block_s": [round(t, 5) for t in times],
      "loss": float(jax.device_get(state["loss"]).mean()),
  }


def time_step_or_smaller(cfg, shape, timing, retries: int = 2) -> dict:
  """time_step, halving the batch after running out of memory."""
  errors = []
  for _ in range(retries + 1):
    try:
      row = time_step(cfg, shape, **timing)
      if errors:
        row["errors"] = errors
      return row
    except Exception as e:  # pylint: disable=broad-except  (XLA's OOM has no own type)
      errors.append(f"batch {cfg.batch_size}: {error_text(e)}")
      if not out_of_memory(e) or cfg.batch_size < 2:
        break
      cfg = with_overrides(cfg, batch_size=cfg.batch_size // 2)
  return {"model": cfg.model, "dtype": cfg.compute_dtype, "shape": list(shape),
          "width": cfg.members_per_device, "errors": errors}


def step_line(row: dict, baseline: dict = None) -> str:
  if "s_per_step" not in row:
    return f"{row['model']:12} {row['dtype']:9} width {row['width']:2d}  FAILED {row['errors'][-1]}"
  ratio = f" {row['vol_per_s'] / baseline['vol_per_s']:6.2f}x" if baseline else ""
  return (f"{row['model']:12} {row['dtype']:9} {str(tuple(row['shape'])):>17} b{row['batch']:<3d} "
          f"w{row['width']:<3d} compile {row['compile_s']:6.1f} s  {row['s_per_step']:8.4f} s/step "
          f"{row['vol_per_s']:8.1f} vol/s {row['tflops']:6.1f} TFLOP/s {row['xla_mib']:9.0f} MiB"
          f"{ratio}")


def section_steps(run: Run, config, timing) -> None:
  section = run.begin("steps")
  section["rows"] = rows = []
  for dtype in FLAGS.dtypes:
    for model in FLAGS.models:
      if FLAGS.quick and dtype != FLAGS.dtypes[0] and model != FLAGS.models[0]:
        continue
      if not run.time_left("steps"):
        rows.append({"model": model, "dtype": dtype, "skipped": "time budget"})
        say(f"{model:12} {dtype:9} skipped: time budget")
        continue
      cfg = train_config(config, model, num_members=1, members_per_device=1,
                         compute_dtype=dtype)
      rows.append(time_step_or_smaller(cfg, input_shape(config, model), timing))
      say(step_line(rows[-1]))
      run.save()
  run.end("steps")


# ----------------------------------------------------------------------------- vmap


def section_vmap(run: Run, config, timing) -> None:
  section = run.begin("vmap")
  section["rows"] = rows = []
  measured = run.results["sections"].get("steps", {}).get("rows", [])
  for model in FLAGS.vmap_models:
    shape, base = input_shape(config, model), None
    for width in map(int, FLAGS.vmap_widths):
      cfg = train_config(config, model, num_members=width, members_per_device=width,
                         compute_dtype="float32")
      reused = [r for r in measured if width == 1 and r.get("model") == model
                and r.get("dtype") == "float32" and r.get("batch") == cfg.batch_size]
      if reused:
        row = dict(reused[0], reused_from="steps")
      elif not run.time_left("vmap"):
        rows.append({"model": model, "width": width, "skipped": "time budget"})
        say(f"{model:12} width {width} skipped: time budget")
        continue
      else:
        row = time_step_or_smaller(cfg, shape, timing, retries=0)
      base = base or (row if width == 1 and "s_per_step" in row else None)
      if base and "s_per_step" in row and row.get("batch") == base["batch"]:
        row["vs_sequential"] = row["vol_per_s"] / base["vol_per_s"]
      rows.append(row)
      say(step_line(row, base if "vs_sequential" in row else None))
      run.save()
      if "s_per_step" not in row:
        break  # wider vmaps need more memory still
  run.end("vmap")


# ----------------------------------------------------------------------------- determinism


def host_tree(tree):
  return jax.tree.map(np.asarray, jax.device_get(tree))


def bitwise_equal(a, b) -> bool:
  if jax.tree.structure(a) != jax.tree.structure(b):
    return False
  return all(x.dtype == y.dtype and x.shape == y.shape and x.tobytes() == y.tobytes()
             for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b)))


def max_abs_difference(a, b) -> float:
  return max(float(np.max(np.abs(np.asarray(x, np.float64) - np.asarray(y, np.float64))))
             for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b)))


def trained(cfg, key, data):
  """(per-member host variables after training, host metrics history)."""
  states, history = ensemble.make_train(cfg)(key, data)
  chunks = host_tree(ensemble.last(states))
  members = [jax.tree.map(lambda a, i=i: a[i], chunk)
             for chunk in chunks for i in range(jax.tree.leaves(chunk)[0].shape[0])]
  return members[:cfg.num_members], history


def check(section: dict, name: str, passed, detail: str) -> None:
  status = "INFO" if passed is None else ("PASS" if passed else "FAIL")
  section["checks"].append({"name": name, "status": status, "detail": detail})
  say(f"{status} {name}: {detail}")


def train_toys():
  """tests/train_toys.py, by path: tests/ is no package, and a `tests` package that
  some other distribution installs would win over a namespace package."""
  spec = importlib.util.spec_from_file_location(
      "train_toys", os.path.join(ROOT, "tests", "train_toys.py"))
  module = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(module)
  return module


def toy_checks(section: dict) -> None:
  """tests/test_ensemble.py's checks on its toy task: the same config and key twice;
  test_member_of_an_ensemble_equals_member_trained_alone."""
  toys = train_toys()
  key, images = jax.random.key(0), toys.bright_square_images(jax.random.key(1))
  alone, history = trained(toys.config(num_members=1, first_member=2), key, images)
  again, history_again = trained(toys.config(num_members=1, first_member=2), key, images)
  check(section, "toy: same config and key twice", bitwise_equal(alone, again)
        and bitwise_equal(history, history_again), "parameters and metrics bitwise")
  one_each, _ = trained(toys.config(num_members=4, members_per_device=1), key, images)
  vmapped, _ = trained(toys.config(num_members=4), key, images)
  check(section, "toy: member 2 alone == member 2 of 4 at members_per_device=1",
        bitwise_equal(alone[0], one_each[2]), "bitwise (as tests/test_ensemble.py)")
  diff = max_abs_difference(alone[0], vmapped[2])
  check(section, "toy: member 2 alone vs member 2 in one vmap of 4", diff < 1e-5,
        f"max |diff| {diff:.3g} after 8 Adam steps; the test's tolerance 1e-5")


def section_determinism(run: Run, config) -> None:
  section = run.begin("determinism")
  section["checks"] = []
  section["xla_flags"] = os.environ.get("XLA_FLAGS", "")
  try:
    loop._check_reproducibility(train_config(config, "shallow_cnn"))
    check(section, "loop._check_reproducibility", True,
          f"backend {jax.default_backend()}, XLA_FLAGS {section['xla_flags']!r}")
  except RuntimeError as e:
    check(section, "loop._check_reproducibility", False, str(e))
  try:
    toy_checks(section)
  except Exception as e:  # pylint: disable=broad-except
    check(section, "toy checks", False, error_text(e))
  run.save()
  key = jax.random.key(0)
  for model in FLAGS.determinism_models:
    if not run.time_left("determinism"):
      section["checks"].append({"name": f"{model} runs", "status": "SKIPPED",
                                "detail": "time budget"})
      say(f"SKIPPED {model} runs: time budget")
      continue
    shape = SMALL_SHAPES[model] if not FLAGS.quick else input_shape(config, model)
    cfg = train_config(config, model, num_members=2, members_per_device=1, num_epochs=2)
    batch = cfg.batch_size
    n = 2 * batch  # 2 steps an epoch
    full = bench_train.data_for(model, tuple(shape), n + max(batch // 2, 2))["train"]
    data = {"train": {k: v[:n] for k, v in full.items()},
            "val": {k: v[n:] for k, v in full.items()}}
    label = f"{model} {tuple(shape)} batch {batch}"
    try:
      first, history1 = trained(cfg, key, data)
      second, history2 = trained(cfg, key, data)
      check(section, f"{label}: same config and key twice (2 epochs, 2 members)",
            bitwise_equal(first, second) and bitwise_equal(history1, history2),
            "parameters, BatchNorm statistics and metrics bitwise; max |diff| "
            f"{max_abs_difference(first, second):.3g}")
      vmapped, _ = trained(with_overrides(cfg, members_per_device=2), key, data)
      diff = max_abs_difference(first, vmapped)
      check(section, f"{label}: vmap of 2 vs 1 member per call", None,
            f"max |param diff| {diff:.3g} after 4 Adam steps (bitwise: "
            f"{bitwise_equal(first, vmapped)})")
    except Exception as e:  # pylint: disable=broad-except
      check(section, f"{label}: runs", False, error_text(e))
    run.save()
  failed = [c for c in section["checks"] if c["status"] == "FAIL"]
  run.end("determinism", "done" if not failed else "failed")


# ----------------------------------------------------------------------------- estimate


def study_plan(config) -> dict:
  """Per task: train steps and eval chunks of one member over the whole study, and the
  members per condition (BUILD_NOTES.md, "Paper config on one GPU: an estimate")."""
  n = config.synth.num_studies
  train_frac, val_frac, _ = config.cohort.split_fractions
  n_train, n_val = int(n * train_frac), int(n * val_frac)
  # Conditions: mixed, then one per group (a vendor's share of the studies).
  conditions = [(n_train, n_val)] + [(int(n_train * s), int(n_val * s))
                                     for s in config.synth.vendor_mix]
  settings = config.experiments
  if settings.get("manufacturer_input", "slices") == "crops":  # samples are crops, not studies
    naming = [(n_train * settings.train_crops_per_study, n_val * settings.eval_crops_per_study)]
  else:
    naming = conditions[:1]
  per_task = {"name_manufacturer": naming, "spheres": conditions * len(
      config.experiments.difficulties), "segmentation": conditions}
  plan = {}
  for model, task in TASKS.items():
    cfg = member.task_config(config, task)
    steps = [t // cfg.batch_size for t, _ in per_task[task]]
    chunks = [-(-v // cfg.eval_batch_size) for _, v in per_task[task]]
    plan[model] = {"task": task, "conditions": len(steps), "steps_per_epoch": steps,
                   "members": cfg.num_members, "epochs": cfg.num_epochs,
                   "batch": cfg.batch_size, "bn_stats": cfg.bn_stats,
                   "member_steps": sum(steps) * cfg.num_epochs,
                   "member_eval_chunks": sum(chunks) * cfg.num_epochs,
                   "train_steps": sum(steps) * cfg.num_epochs * cfg.num_members}
  return plan


def estimate_seconds(plan: dict, row: dict, width: int = 1) -> float:
  """One model's share of the study at the step time of `row` (vmap `width` per call),
  scaled linearly to the config's batch if the row ran a smaller one. Forward-only
  passes count EVAL_STEP_FRACTION of a step: validation chunks, and with
  bn_stats="precise" one more pass over every batch."""
  s_step = row["s_per_step"] * plan["batch"] / row["batch"]
  rounds = -(-plan["members"] // width)
  forward = plan["member_eval_chunks"] + (
      plan["member_steps"] if plan["bn_stats"] == "precise" else 0)
  return (rounds * s_step * (plan["member_steps"] + EVAL_STEP_FRACTION * forward)
          + row["compile_s"])


def section_estimate(run: Run, config) -> None:
  section = run.begin("estimate")
  plan = section["plan"] = study_plan(config)
  steps = run.results["sections"].get("steps", {}).get("rows", [])
  vmaps = run.results["sections"].get("vmap", {}).get("rows", [])
  section["rows"] = rows = []
  for dtype in FLAGS.dtypes:
    by_model = {r["model"]: r for r in steps if r.get("dtype") == dtype and "s_per_step" in r}
    if set(by_model) != set(TASKS):
      continue
    per_model = {m: estimate_seconds(plan[m], by_model[m]) for m in TASKS}
    rows.append({"dtype": dtype, "layout": "members_per_device=1", "per_model_s": per_model,
                 "total_s": sum(per_model.values())})
    if dtype == "float32":  # the vmap section measures float32
      best = dict(per_model)
      widths = {m: 1 for m in TASKS}
      for r in vmaps:
        if "vs_sequential" in r and r["width"] > 1:
          seconds = estimate_seconds(plan[r["model"]], r, r["width"])
          if seconds < best[r["model"]]:
            best[r["model"]], widths[r["model"]] = seconds, r["width"]
      if widths != {m: 1 for m in TASKS}:
        rows.append({"dtype": dtype, "layout": f"best measured vmap {widths}",
                     "per_model_s": best, "total_s": sum(best.values())})
  for r in rows:
    r["vs_goal"] = r["total_s"] / GOAL_S
    say(f"{r['dtype']:9} {r['layout']:30} " + "  ".join(
        f"{m} {s / 60:6.1f} min" for m, s in r["per_model_s"].items())
        + f"  total {r['total_s'] / 60:6.1f} min = {r['vs_goal']:.2f} x the 1 h goal")
  if not rows:
    say("no estimate: the steps section has no complete set of step times")
  run.end("estimate", "done" if rows else "no data")


# ----------------------------------------------------------------------------- summary


def markdown(results: dict) -> str:
  meta, sections = results["meta"], results["sections"]
  device = meta.get("device", {})
  lines = ["# GPU check (benchmarks/gpu_check.py)", "",
           f"- device: {device.get('device_kind', '?')} ({device.get('backend', '?')}); "
           f"{device.get('nvidia_smi', '')}",
           f"- jax {device.get('jax', '?')}, jaxlib {device.get('jaxlib', '?')}; "
           f"config {meta.get('config')}; quick {meta.get('quick')}",
           f"- XLA_FLAGS: `{meta.get('xla', {}).get('XLA_FLAGS', '')}`",
           f"- elapsed {meta.get('elapsed_s')} s; peak device memory "
           f"{meta.get('peak_memory_gib', '-')} of {device.get('memory_limit_gib', '-')} GiB", ""]
  header = ("| model | dtype | input | batch | width | compile s | s/step | vol/s | TFLOP/s "
            "| XLA MiB | vs 1 |\n" + "| --- " * 11 + "|")
  for name in ("steps", "vmap"):
    if name not in sections:
      continue
    lines += [f"## {name} ({sections[name].get('status')}, {sections[name].get('seconds')} s)",
              "", header]
    for r in sections[name].get("rows", []):
      if "s_per_step" in r:
        vs = r.get("vs_sequential")
        lines.append(
            f"| {r['model']} | {r['dtype']} | {'x'.join(map(str, r['shape']))} | {r['batch']}"
            f"{' (halved: out of memory)' if r.get('errors') else ''} "
            f"| {r['width']} | {r['compile_s']:.1f} | {r['s_per_step']:.4f} | "
            f"{r['vol_per_s']:.1f} | {r['tflops']:.1f} | {r['xla_mib']:.0f} | "
            f"{'' if vs is None else f'{vs:.2f}'} |")
      else:
        why = r.get("skipped") or "; ".join(r.get("errors", []))
        lines.append(f"| {r['model']} | {r.get('dtype', '')} | | | {r.get('width', '')} "
                     f"| {why} | | | | | |")
    lines.append("")
  if "determinism" in sections:
    s = sections["determinism"]
    lines += [f"## determinism ({s.get('status')}, {s.get('seconds')} s)", ""]
    lines += [f"- **{c['status']}** {c['name']}: {c['detail']}" for c in s.get("checks", [])]
    lines.append("")
  if "estimate" in sections:
    s = sections["estimate"]
    lines += [f"## estimate ({s.get('status')})", "",
              "| dtype | layout | " + " | ".join(TASKS) + " | total min | x 1 h goal |",
              "| --- | --- | " + " | ".join("---" for _ in TASKS) + " | --- | --- |"]
    for r in s.get("rows", []):
      lines.append(f"| {r['dtype']} | {r['layout']} | " + " | ".join(
          f"{r['per_model_s'][m] / 60:.1f}" for m in TASKS)
          + f" | {r['total_s'] / 60:.1f} | {r['vs_goal']:.2f} |")
    plan = s.get("plan", {})
    lines += [""] + [f"- {m}: {p['conditions']} conditions, steps/epoch {p['steps_per_epoch']}, "
                     f"{p['members']} members x {p['epochs']} epochs = {p['train_steps']} "
                     "train steps" for m, p in plan.items()]
    lines.append("")
  return "\n".join(lines)


# ----------------------------------------------------------------------------- main


def main(argv):
  del argv
  if FLAGS.quick:
    for name, value in QUICK.items():
      if not FLAGS[name].present:
        FLAGS[name].value = value
  budgets = {k: float(v) for k, v in (item.split("=") for item in FLAGS.budgets)}
  run = Run(FLAGS.out, budgets, FLAGS.total_budget_s)
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
