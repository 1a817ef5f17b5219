"""A sweep end to end: data once per data key, nameability once per data key, each point
once, then the results and the report.

  <workdir>/data/<data key>/     synth/, cohort/, prepared/ (the study's stages; the
                                 strengths' exports rendered together, each head's
                                 anatomy sampled once)
  <workdir>/nameability/<key>.json   Name the Manufacturer (CNN) and the probe
  <workdir>/points/<point key>.json       a finished point (its conditions and summary)
  <workdir>/train/<point key>/            its ensembles' checkpoints
  <workdir>/results.json, report.md, report.html, figures/
A point whose file is there is not run again: an interrupted sweep resumes and a grown
one reuses what it finished (grid.point_key). results.json carries no timings, so a
rerun writes it byte for byte the same; timings.json has them.

Name the Manufacturer depends on the data, not on the mix: it is trained once per data
key on every training study (both vendors, as the study's), and each point of that key
reports it.
"""
import concurrent.futures
import json
import os
import time
from pathlib import Path

from scanbias_jax import console, files, keys, processes, run_lock
from scanbias_jax.evaluate import results as results_lib
from scanbias_jax.experiments import common, controls, datasets, name_manufacturer, precompile
from scanbias_jax.experiments import study
from scanbias_jax.sweep import grid, mix, point, sets
from scanbias_jax.synth import export

SCHEMA = "sweep/1"
TASK_METRIC = dict(spheres="accuracy", segmentation="dice")


def tasks(config) -> list[str]:
  """sweep.tasks, checked: "name_manufacturer", "spheres/<difficulty>", "segmentation"."""
  known = ("name_manufacturer", "segmentation",
           *(f"spheres/{d}" for d in ("easy", "medium", "hard")))
  for task in config.sweep.tasks:
    if task not in known:
      raise ValueError(f"sweep.tasks: {task!r} is not one of {known}")
  return list(config.sweep.tasks)


def data_stages(config, out: Path, say) -> Path:
  """synth/, cohort/ and prepared/ of one data key under `out`; returns prepared/."""
  synth = study.synthesize_into(config, out / "synth", say)
  cohort = study.ingest_into(config, synth / "dicom", out / "cohort", say)
  return study.prepare(config, cohort, synth / "truth", out, say)


def synthesize_together(configs: list, outs: list, say) -> None:
  """The synthetic exports of data settings that differ only in signature strength,
  rendered together (export.write_cohorts: each head's anatomy sampled once); the data
  stages then find them done."""
  todo = [(c, out) for c, out in zip(configs, outs) if not (out / ".done").exists()]
  if len(todo) < 2:
    return  # one setting: the study's own stage
  records = export.write_cohorts(study.synth_key(todo[0][0]), [c.synth for c, _ in todo],
                                 [out for _, out in todo],
                                 console.progress("synthesize", out=say))
  for (c, out), rows in zip(todo, records):
    study.finish_synthesis(c, out, rows)


def nameability(config, prepared, key, workdir: str) -> dict:
  """Name the Manufacturer (CNN ensemble) and the texture probe on one cohort, as the
  study runs them: {"cnn": {...}, "probe": {...}} with intervals and permutation p."""
  out = {}
  cnn = name_manufacturer.run(config, prepared, keys.stream(key, "cnn"), workdir)
  if results_lib.MIXED in cnn:
    condition = cnn[results_lib.MIXED]
    out["cnn"] = dict(condition["controls"], positive_class=condition["positive_class"])
  else:
    out["cnn"] = dict(reason=cnn.get("reason", "not run"))
  out["probe"] = controls.texture_probe(config, prepared, keys.stream(key, "probe"))
  return results_lib.to_jsonable(out)


def _sides(config) -> tuple[str, str]:
  """(minority, majority) vendor names of a point."""
  vendors = tuple(config.sweep.vendors)
  majority = config.sweep.majority
  mix.first_vendor_share(vendors, majority, config.sweep.majority_share)
  return next(v for v in vendors if v != majority), majority


def composition(config, prepared) -> dict:
  """{split: (study ids, summary)} of the point's training and validation sets."""
  vendors = tuple(config.sweep.vendors)
  share = mix.first_vendor_share(vendors, config.sweep.majority, config.sweep.majority_share)
  key = keys.stream(keys.root(config.seed), "sweep/mix")
  return {split: mix.compose(datasets.select(prepared, split), prepared.group, vendors, share,
                             keys.stream(key, split))
          for split in ("train", "val")}


def run_point(config, prepared, data: dict, workdir: str, pool) -> dict:
  """Trains and evaluates the point's tasks (on `pool`); returns its record."""
  minority, majority = _sides(config)
  chosen = composition(config, prepared)
  (train_ids, train_mix), (val_ids, val_mix) = chosen["train"], chosen["val"]
  key = keys.stream(keys.root(config.seed), "sweep")
  groups = list(prepared.group_values)
  jobs = {}
  for task in tasks(config):
    if task.startswith("spheres/"):
      difficulty = task.split("/")[1]
      jobs[task] = common.submit(pool, point.spheres_point, config, difficulty,
                                 keys.stream(key, task), workdir, data[task], train_ids,
                                 val_ids, groups, (minority, majority))
    elif task == "segmentation":
      jobs[task] = common.submit(pool, point.segmentation_point, config,
                                 keys.stream(key, task), workdir, data[task], train_ids,
                                 val_ids, groups, (minority, majority))
  conditions, summaries = {}, {}
  for task, job in jobs.items():
    condition, gap = job.result()
    conditions[task] = condition
    summaries[task] = point.summary(condition, TASK_METRIC[task.split("/")[0]], gap,
                                    (minority, majority))
  return results_lib.to_jsonable(dict(
      minority=minority, majority=majority,
      training_set=dict(train=train_mix, val=val_mix), tasks=summaries,
      conditions=conditions))


def shared_sets(config, prepared) -> dict:
  """{task: {split: Arrays}} of the tasks a point trains, built once for the cohort."""
  wanted = tasks(config)
  difficulties = [t.split("/")[1] for t in wanted if t.startswith("spheres/")]
  data = {}
  if difficulties:
    built = sets.sphere_sets(config, prepared, difficulties)
    data.update({f"spheres/{d}": built[d] for d in difficulties})
  if "segmentation" in wanted:
    data["segmentation"] = sets.segmentation_sets(config, prepared)
  return data


def test_heads(prepared) -> dict:
  """The test split's heads and studies per vendor: the set every point is tested on."""
  rows = datasets.select(prepared, "test")
  return dict(heads=sorted({r.get("anatomy") or r["study_id"] for r in rows}),
              studies={v: sum(r[prepared.group] == v for r in rows)
                       for v in prepared.group_values})


def run(config, workdir: Path, say=console.say) -> dict:
  """Runs the sweep, holding the workdir (run_lock); returns the results."""
  with run_lock.held(workdir, holds=processes.writes()):
    return _run(config, workdir, say)


def _run(config, workdir: Path, say) -> dict:
  workdir.mkdir(parents=True, exist_ok=True)
  common.use_compilation_cache(os.environ.get(
      "SCANBIAS_XLA_CACHE", os.path.expanduser("~/.cache/scanbias_jax/xla")))
  started = time.time()
  timings = {}
  grid_points = grid.points(config)
  configs = [grid.point_config(config, p) for p in grid_points]
  for c in configs:  # before any key is taken: the secret is part of the config
    study.use_synthetic_secret(c)
  by_data = {}
  for p, c in zip(grid_points, configs):
    by_data.setdefault(grid.data_key(c), []).append((p, c))
  records, tested_on = [], {}
  compiling = None
  if config.experiments.precompile and not (workdir / "results.json").exists():
    compiling = precompile.start(configs[0])  # overlaps the first data stages
  if processes.writes():
    by_render = {}
    for data_key, members in by_data.items():
      by_render.setdefault(grid.render_key(members[0][1]), []).append(
          (members[0][1], workdir / "data" / data_key / "synth"))
    t0 = time.time()
    for alike in by_render.values():
      synthesize_together([c for c, _ in alike], [out for _, out in alike], say)
    timings["synthesize together"] = time.time() - t0
  for data_key, members in by_data.items():
    first = members[0][1]
    say("sweep", f"data {data_key}: {len(members)} point(s), "
        + "; ".join(grid.label(p) for p, _ in members))
    t0 = time.time()
    if processes.writes():
      data_stages(first, workdir / "data" / data_key, say)
    processes.barrier(f"sweep data {data_key}")
    prepared_dir = workdir / "data" / data_key / "prepared"
    prepared = datasets.load_prepared(str(prepared_dir))
    tested_on[data_key] = test_heads(prepared)
    timings[f"data/{data_key}"] = time.time() - t0
    if compiling is not None:
      compiling.join()
      compiling = None
    by_setting = {}  # points that differ only in sweep.*: one Name the Manufacturer, one set
    for p, c in members:
      by_setting.setdefault(grid.nameability_key(c), []).append((p, c))
    for names_key, alike in by_setting.items():
      t0 = time.time()
      names = _train_points(alike, names_key, prepared, workdir, started, say)
      timings[f"train/{data_key}/{names_key}"] = time.time() - t0
      for p, c in alike:
        record = json.loads((workdir / "points" / f"{grid.point_key(c)}.json").read_text())
        records.append(dict(axes=p, point_key=grid.point_key(c), data_key=data_key,
                            nameability=names, minority=record["minority"],
                            majority=record["majority"], training_set=record["training_set"],
                            tasks=record["tasks"]))
  order = {grid.point_key(c): i for i, c in enumerate(configs)}
  records.sort(key=lambda r: order[r["point_key"]])
  out = results_lib.to_jsonable(dict(
      schema=SCHEMA, title=config.sweep.title, axes=grid.axes(config),
      vendors=list(config.sweep.vendors), tasks=tasks(config),
      test_set=_shared_test_set(tested_on), points=records,
      provenance=dict(config=config.to_dict(), seed=config.seed)))
  if processes.writes():
    files.write_json(workdir / "results.json", out, indent=1, sort_keys=True)
    timings["total"] = time.time() - started
    files.write_json(workdir / "timings.json", timings, indent=1, sort_keys=True)
  return out


def _train_points(alike: list, names_key: str, prepared, workdir: Path, started: float,
                  say) -> dict:
  """Name the Manufacturer and every unfinished point of `alike` (points of one cohort
  that differ only in sweep.*: they share it and the sets); returns the nameability."""
  first = alike[0][1]
  names_path = workdir / "nameability" / f"{names_key}.json"
  todo = [(p, c) for p, c in alike
          if not (workdir / "points" / f"{grid.point_key(c)}.json").exists()]
  need_names = "name_manufacturer" in tasks(first) and not names_path.exists()
  processes.barrier(f"sweep points {names_key}")  # every process skips the same work
  if need_names:
    names = nameability(first, prepared, keys.stream(keys.root(first.seed), "sweep/names"),
                        str(workdir / "train" / "nameability" / names_key))
    if processes.writes():
      files.write_json(names_path, names, indent=1, sort_keys=True)
  if todo:
    data = shared_sets(first, prepared)
    with common.condition_pool(first) as pool, concurrent.futures.ThreadPoolExecutor(
        len(todo), thread_name_prefix="point") as threads:
      running = [threads.submit(run_point, c, prepared, data,
                                str(workdir / "train" / grid.point_key(c)), pool)
                 for _, c in todo]
      for (p, c), job in zip(todo, running):
        record = job.result()
        if processes.writes():
          files.write_json(workdir / "points" / f"{grid.point_key(c)}.json", record,
                           indent=1, sort_keys=True)
        say("sweep", f"point {grid.label(p)} done after {time.time() - started:.0f} s")
  if not names_path.exists():
    return {}
  return json.loads(names_path.read_text())


def _shared_test_set(tested_on: dict) -> dict:
  """The test heads every point shares, and whether every data key tests the same heads
  (the synthesizer's traveling heads keep them; an export that drops a study does not)."""
  first = next(iter(tested_on.values()))
  same = all(t["heads"] == first["heads"] for t in tested_on.values())
  return dict(heads=len(first["heads"]), studies=first["studies"], same_heads_every_point=same)
