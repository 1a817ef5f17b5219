"""Shared pieces of benchmarks/gpu_check.py: the run's record and clock, configs and
inputs, and the timing of one train step (the steps and vmap sections)."""
import json
import math
import os
import statistics
import time

from absl import flags
import jax

from benchmarks import bench_train, common
from configs import paper, smoke
from scanbias_jax import files
from scanbias_jax.train import ensemble, member

FLAGS = flags.FLAGS


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

  def __init__(self, out: str, budgets: dict, total_budget_s: float, summarise):
    self.out, self.budgets, self.total_budget_s = out, budgets, total_budget_s
    self.summarise = summarise  # results -> summary.md text
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
                       ("summary.md", self.summarise(self.results))):
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


