"""The study as a chain of stages, each resumable, each leaving a folder behind.

  synth/     synthetic DICOM export and its truth (unless the user brings DICOM)
  cohort/    ingest: HU volumes on the paper grid, manifest, matched cohort, split
  prepared/  prepare: brain masks, sphere table, data-set summary
A stage that finished writes `<stage>/.done`; rerunning skips it. Stages that
resume inside (synthesis, ingest, prepare skip finished studies) are rerun after an
interruption and pick up where they stopped.
"""
import json
import os
import time
from pathlib import Path

from scanbias_jax import keys


def _done(path: Path) -> bool:
  return (path / ".done").exists()


def _finish(path: Path, info: dict) -> None:
  tmp = path / ".done.tmp"
  tmp.write_text(json.dumps(info, indent=1, default=str))
  os.replace(tmp, path / ".done")


def synthesize(config, workdir: Path, say) -> Path:
  from scanbias_jax.report import figures  # pylint: disable=g-import-not-at-top
  from scanbias_jax.synth import cohort, export  # pylint: disable=g-import-not-at-top
  out = workdir / "synth"
  if not _done(out):
    key = keys.stream(keys.root(config.seed), "synth")
    records = export.write_cohort(key, config.synth, out)
    figures.vendor_slices(cohort.vendor_preview(key, config.synth),
                          out / "vendor_preview.png")
    _finish(out, export.summarize(records))
  say("synthesize", f"{config.synth.num_studies} studies -> {out / 'dicom'}")
  return out


def ingest(config, dicom_root: Path, workdir: Path, say) -> Path:
  from scanbias_jax.cohort import balance  # pylint: disable=g-import-not-at-top
  from scanbias_jax.cohort.ingest import ingest_tree  # pylint: disable=g-import-not-at-top
  out = workdir / "cohort"
  if not _done(out):
    summary = ingest_tree(str(dicom_root), str(out), config)
    cohort, _, after = balance.write_cohort_tables(str(out), config)
    _finish(out, dict(summary, cohort=len(cohort)))
    say("ingest", f"{summary['studies_ok']} of {summary['studies']} studies ok, "
        f"matched cohort of {len(cohort)}:\n" + balance.format_table(after, config.cohort.group))
  say("ingest", f"volumes, manifest.csv, rejects.csv, cohort.csv -> {out}")
  return out


def prepare(config, cohort_dir: Path, truth: Path | None, workdir: Path, say) -> Path:
  from scanbias_jax.experiments import prepare as prepare_lib  # pylint: disable=g-import-not-at-top
  out = workdir / "prepared"
  if not _done(out):
    summary = prepare_lib.prepare_cohort(str(cohort_dir), str(out), config,
                                         str(truth) if truth else None)
    _finish(out, summary)
  say("prepare", f"masks, splits, sphere table, summary.md -> {out}")
  return out


def run(config, workdir: Path, dicom_root: str | None = None, say=print) -> dict:
  """Runs every stage; returns seconds per stage."""
  workdir.mkdir(parents=True, exist_ok=True)
  (workdir / "config.json").write_text(config.to_json_best_effort(indent=1))
  timings = {}
  start = time.time()
  if dicom_root:
    root, truth = Path(dicom_root), None
  else:
    synth = synthesize(config, workdir, say)
    root, truth = synth / "dicom", synth / "truth"
  timings["synthesize"] = time.time() - start
  cohort_dir = ingest(config, root, workdir, say)
  timings["ingest"] = time.time() - start - sum(timings.values())
  prepare(config, cohort_dir, truth, workdir, say)
  timings["prepare"] = time.time() - start - sum(timings.values())
  return timings
