"""The estimate section of benchmarks/gpu_check.py (the paper study's wall time from
measured step times) and the summary it writes."""

from absl import flags

from benchmarks.gpu_steps import EVAL_STEP_FRACTION, GOAL_S, Run, TASKS, say
from scanbias_jax.train import member

FLAGS = flags.FLAGS


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


