"""The study as a chain of stages, each resumable, each leaving a folder behind.

  synth/     synthetic DICOM export and its truth (unless the user brings DICOM)
  cohort/    ingest: HU volumes on the paper grid, manifest, matched cohort, split
  prepared/  prepare: brain masks, sphere table, data-set summary
  train/     one folder per experiment and condition: checkpoints, metrics.jsonl
  report.md, report.html, results.json   the paper's tables, figures, provenance
A stage that finished writes `<stage>/.done`; rerunning skips it. Stages that
resume inside (synthesis, ingest, prepare skip finished studies) are rerun after an
interruption and pick up where they stopped. On several processes (processes.py)
process 0 runs the data stages and writes the outputs; training is split by members.
"""
import concurrent.futures
import contextlib
import errno
import json
import os
import time
from pathlib import Path

from scanbias_jax import console, files, keys, processes, run_lock
from scanbias_jax.cohort import balance
from scanbias_jax.cohort.ingest import ingest_tree
from scanbias_jax.evaluate import results as results_lib
from scanbias_jax.experiments import common, controls, datasets, precompile, samples
from scanbias_jax.experiments import prepare as prepare_lib
from scanbias_jax.experiments.tasks import TASKS
from scanbias_jax.report import figures, render
from scanbias_jax.synth import cohort, export


class StageFailed(RuntimeError):
  """A stage stopped for a reason outside the code (a full disk); the message says what
  to do."""


@contextlib.contextmanager
def _stage(name: str, directory: Path):
  """Turns a full disk inside a stage into one clear error naming the stage and where
  it writes. Every file goes through files.atomic_path, so nothing half-written is left
  for a resumed run to trust."""
  try:
    yield
  except OSError as error:
    if error.errno != errno.ENOSPC:
      raise
    raise StageFailed(f"the {name} stage stopped: no space left on the device that holds "
                      f"{directory} ({error}). What finished is kept; free some space and "
                      "rerun the same command to resume.") from error


def _done(path: Path) -> bool:
  return (path / ".done").exists()


def _intact(path: Path, stage: str, say) -> bool:
  """Whether a finished stage's recorded files are as it wrote them; if not, says which
  and unmarks the stage, whose rerun redoes just those studies."""
  if not _done(path):
    return False
  damaged = files.damaged_records(path)
  for study_id, what in damaged.items():
    say(stage, f"{what} (study {study_id}): redoing that study's {stage}")
  if damaged:
    (path / ".done").unlink()
  return not damaged


def _finish(path: Path, info: dict) -> None:
  files.write_json(path / ".done", info, indent=1, default=str)


def use_synthetic_secret(config) -> None:
  """Synthetic studies carry no real PHI, and pseudonyms key the split and the spheres:
  unless one is configured, a secret derived from the seed makes the run reproducible."""
  if not config.ingest.secret:
    config.ingest.secret = f"scanbias-synthetic-seed-{config.seed}"


def synthesize(config, workdir: Path, say) -> Path:
  return synthesize_into(config, workdir / "synth", say)


def synthesize_into(config, out: Path, say) -> Path:
  """The synthetic export in `out` (dicom/, truth/, vendor_preview.png; `.done` holds
  each vendor's counts), unless it is there already (launch/synthesize.py too)."""
  if not _done(out):
    records = export.write_cohort(synth_key(config), config.synth, out,
                                  console.progress("synthesize", out=say))
    finish_synthesis(config, out, records)
  say("synthesize", f"{config.synth.num_studies} studies -> {out / 'dicom'}")
  return out


def synth_key(config):
  return keys.stream(keys.root(config.seed), "synth")


def finish_synthesis(config, out: Path, records: list[dict]) -> None:
  """The vendor preview and the `.done` marker of a written synthetic export."""
  figures.vendor_slices(cohort.vendor_preview(synth_key(config), config.synth),
                        config.synth.fov_mm / config.synth.matrix,
                        out / "vendor_preview.png")
  _finish(out, export.summarise(records))


def ingest(config, dicom_root: Path, workdir: Path, say) -> Path:
  return ingest_into(config, dicom_root, workdir / "cohort", say)


def ingest_into(config, dicom_root: Path, out: Path, say) -> Path:
  """Ingest of `dicom_root` into `out` (volumes, manifest, rejects, matched cohort),
  unless it is there already (launch/ingest.py too)."""
  if not _intact(out, "ingest", say):
    summary = ingest_tree(str(dicom_root), str(out), config, console.progress("ingest", out=say))
    cohort, _, after = balance.write_cohort_tables(str(out), config)
    _finish(out, dict(summary, cohort=len(cohort)))
    say("ingest", f"{summary['studies_ok']} of {summary['studies']} studies ok, "
        f"matched cohort of {len(cohort)}:\n" + balance.format_table(after, config.cohort.group))
  say("ingest", f"volumes, manifest.csv, rejects.csv, cohort.csv -> {out}")
  return out


def prepare(config, cohort_dir: Path, truth: Path | None, workdir: Path, say) -> Path:
  out = workdir / "prepared"
  if not _intact(out, "prepare", say):
    summary = prepare_lib.prepare_cohort(str(cohort_dir), str(out), config,
                                         str(truth) if truth else None,
                                         console.progress("prepare", out=say))
    _finish(out, summary)
  say("prepare", f"masks, splits, sphere table, summary.md -> {out}")
  return out


def experiments(config, prepared_dir: Path, workdir: Path, say) -> dict:
  """Trains and evaluates the three experiments; results.json is the done marker."""
  path = workdir / "results.json"
  if path.exists():
    say("train", f"done before: {path}")
    return json.loads(path.read_text())
  prepared = datasets.load_prepared(str(prepared_dir))
  key = keys.stream(keys.root(config.seed), "experiments")
  train_dir = str(workdir / "train")
  results = dict(schema_version=results_lib.SCHEMA_VERSION, title=config.experiments.title,
                 group_attribute=prepared.group, groups=list(prepared.group_values))
  started = time.time()

  def run_task(task):
    out = TASKS[task].run(config, prepared, keys.stream(key, task), train_dir, pool)
    say("train", f"{task}: done after {time.time() - started:.0f} s")
    return out

  with common.condition_pool(config) as pool:
    # With a pool the tasks build their data sets at once, each in its own thread,
    # and queue their conditions on the pool; without one, one after another.
    tasks = config.experiments.tasks
    probe = None
    if "name_manufacturer" in tasks:
      probe = common.submit(pool, controls.texture_probe, config, prepared,
                            keys.stream(key, "controls/probe"))
    if pool is None or not tasks:
      results.update({task: run_task(task) for task in tasks})
    else:
      with concurrent.futures.ThreadPoolExecutor(len(tasks), thread_name_prefix="task") as threads:
        running = {task: threads.submit(run_task, task) for task in tasks}
        try:
          results.update({task: done.result() for task, done in running.items()})
        except BaseException:
          pool.shutdown(wait=False, cancel_futures=True)  # the others stop at their next wait
          raise
    if probe is not None:
      results["controls"] = dict(texture_probe=probe.result())
  if not processes.writes():  # every process evaluates the same; process 0 writes
    return results_lib.to_jsonable(results)
  files.write_json(path, results_lib.to_jsonable(results), indent=1, sort_keys=True)
  return json.loads(path.read_text())


def report(config, results: dict, prepared_dir: Path, workdir: Path, timings: dict,
           source: str = "synthetic") -> dict:
  results = dict(results, provenance=dict(
      config=config.to_dict(), source=source, keys=dict(seed=config.seed, streams=[
          "synth", "cohort", "prepare", "experiments/<task>/<difficulty>/<condition>"]),
      stages={name: dict(wall_s=seconds, skipped=seconds < 1.0)
              for name, seconds in timings.items()}))
  return render.render_report(results, workdir,
                              samples.sample_slices(datasets.load_prepared(str(prepared_dir))))


def run(config, workdir: Path, dicom_root: str | None = None, say=console.say) -> dict:
  """Runs every stage, holding the workdir (run_lock: a second run refuses at once);
  returns seconds per stage."""
  with run_lock.held(workdir, holds=processes.writes()):
    return _run(config, workdir, dicom_root, say)


def _run(config, workdir: Path, dicom_root: str | None, say) -> dict:
  workdir.mkdir(parents=True, exist_ok=True)
  common.use_compilation_cache(os.environ.get(
      "SCANBIAS_XLA_CACHE", os.path.expanduser("~/.cache/scanbias_jax/xla")))
  if processes.writes():
    (workdir / "config.json").write_text(config.to_json_best_effort(indent=1))
  timings = {}
  start = time.time()
  if not dicom_root:
    use_synthetic_secret(config)
  compiling = None
  if config.experiments.precompile and not (workdir / "results.json").exists():
    compiling = precompile.start(config)  # overlaps the data stages; joined before training
  # Several processes (scanbias_jax/processes.py): process 0 runs the data stages, the
  # others find them done after the barrier.
  if not processes.writes():
    processes.barrier("study data stages")
  if dicom_root:
    root, truth = Path(dicom_root), None
  else:
    with _stage("synthesize", workdir / "synth"):
      synth = synthesize(config, workdir, say)
    root, truth = synth / "dicom", synth / "truth"
  timings["synthesize"] = time.time() - start
  with _stage("ingest", workdir / "cohort"):
    cohort_dir = ingest(config, root, workdir, say)
  timings["ingest"] = time.time() - start - sum(timings.values())
  with _stage("prepare", workdir / "prepared"):
    prepared_dir = prepare(config, cohort_dir, truth, workdir, say)
  timings["prepare"] = time.time() - start - sum(timings.values())
  if processes.writes():
    processes.barrier("study data stages")
  if compiling is not None:
    compiling.join()
  with _stage("train", workdir / "train"):
    results = experiments(config, prepared_dir, workdir, say)
  timings["train"] = time.time() - start - sum(timings.values())
  if not processes.writes():
    return timings  # the report is process 0's
  with _stage("report", workdir):
    written = report(config, results, prepared_dir, workdir, timings,
                     source="dicom" if dicom_root else "synthetic")
  timings["report"] = time.time() - start - sum(timings.values())
  say("report", f"{written['report.md']} and {written['report.html']}")
  return timings
