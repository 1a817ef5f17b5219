"""The prepare loop: an ingested cohort in, the experiment data sets' specs out.

Loop code (I/O, processes); the decisions are in preprocess/skullstrip,
lesions/spheres and cohort/balance. Output layout under `out_dir`:
  masks/<study_id>.nii.gz    uint8 brain mask, the volume's affine
  records/<study_id>.json    per study: brain volume, sphere draw and its measured
                             voxels, Dice vs truth: its done marker
  overlays/<study_id>.png    a few studies per group: mask (red) and truth (green)
  splits.csv                 study_id, group, label, split, small_<difficulty>, paths
  spheres.csv                the sphere table of the positives
  dice.csv, summary.json, summary.md, prepare.json
Per-study work depends only on the volume, the seed and config.prepare, so a
rerun skips studies with a record; labels and splits are recomputed (cheap).
"""
import concurrent.futures
import dataclasses
import json
import multiprocessing
import os
import time

import numpy as np
from absl import logging

from scanbias_jax import files, keys
from scanbias_jax.cohort import balance, manifest
from scanbias_jax.evaluate import metrics
from scanbias_jax.experiments import datasets, prepare_report, truth
from scanbias_jax.lesions import spheres
from scanbias_jax.preprocess import skullstrip


def truth_dice(mask, true_mask) -> float | None:
  """Dice of the skull-strip mask against the simulator's brain (`metrics.dice`); None
  where it is undefined (both empty), as where there is no truth."""
  value = metrics.dice_volume(mask, true_mask)
  return value if np.isfinite(value) else None


def strip_params(settings) -> skullstrip.StripParams:
  fields = {f.name for f in dataclasses.fields(skullstrip.StripParams)}
  return skullstrip.StripParams(**{k: v for k, v in settings.skullstrip.items() if k in fields})


def sphere_params(settings) -> spheres.SphereParams:
  return spheres.params_from_settings(settings.spheres)


def read_cohort(cohort_dir, match: bool) -> tuple[list[dict], bool]:
  """(rows, matched): with `match`, ingest's matched cohort.csv if there; else the manifest.

  cohort.csv's own split column (stratified by group only) is dropped: prepare
  splits again over group x label, and that split is the one every set uses.
  """
  path = os.path.join(cohort_dir, "cohort.csv")
  matched = match and os.path.exists(path)
  with open(path if matched else os.path.join(cohort_dir, "manifest.csv")) as f:
    rows = manifest.from_csv(f.read())
  return [{k: v for k, v in r.items() if k != "split"} for r in rows], matched


def cohort_rows(rows, matched, key, config) -> list[dict]:
  """The studies of the experiments: ingested ok, with a group value, matched if asked."""
  group, cohort = config.cohort.group, config.cohort
  rows = [r for r in rows if r.get("status") == "ok" and r.get(group)]
  if config.prepare.match and not matched:
    rows = balance.match_cohort(rows, keys.stream(key, "match"), size=cohort.size,
                                group=group, age_bin_years=cohort.age_bin_years,
                                one_study_per_patient=cohort.one_study_per_patient)
  elif cohort.size and not matched:
    rows = sorted(rows, key=lambda r: r["study_id"])[:cohort.size]
  values = sorted({r[group] for r in rows})
  if len(values) < 2:
    raise ValueError(f"group column {group!r} has {len(values)} value(s) {values} among the "
                     "usable studies; the experiments compare two or more")
  return sorted(rows, key=lambda r: r["study_id"])


def plan(rows, key, config, anatomies: dict | None = None,
         responses: dict | None = None) -> list[dict]:
  """Adds label, split and small_<difficulty> to each row (pure, deterministic).

  `anatomies` (study_id -> anatomy id, from the synthesizer's truth) keeps the
  acquisitions of one traveling head in one split; it is used only when some
  anatomy was acquired more than once, and each row then records its anatomy.
  `responses` (study_id -> truth.scanner_response columns) are added where every
  study has one: the acquired sphere insertion needs them all.
  """
  group, params = config.cohort.group, sphere_params(config.prepare)
  labels = spheres.assign_labels(rows, key, group, params.positive_fraction)
  rows = [dict(r, label=labels[r["study_id"]]) for r in rows]
  if responses and all(responses.get(r["study_id"]) for r in rows):
    rows = [dict(r, **responses[r["study_id"]]) for r in rows]
  shared = anatomies and len(set(anatomies.values())) < len(anatomies)
  if shared:
    rows = [dict(r, anatomy=anatomies.get(r["study_id"], "")) for r in rows]
  split = balance.stratified_split(rows, keys.stream(key, "split"),
                                   fractions=tuple(config.cohort.split_fractions),
                                   strata=(group, "label"),
                                   units=anatomies if shared else None)
  rows = [dict(r, split=split[r["study_id"]]) for r in rows]
  small = spheres.choose_small(rows, key, group, params.small_fraction)
  return [dict(r, **{f"small_{d}": int(r["study_id"] in small[d])
                     for d in spheres.DIFFICULTIES}) for r in rows]


def write_mask(path, mask, affine):
  files.save_nifti(path, np.asarray(mask, np.uint8), affine)


def measure_sphere(hu, draw, kind, spacing, key, study_id, reach) -> dict:
  """Voxel count, mean and std of the sphere as `insert_sphere` makes it."""
  spec = spheres.spec_from_row(draw, "hard" if kind == "small" else "easy",
                               kind == "small", spacing)
  inserted, inside = (np.asarray(a) for a in spheres.inserted_and_mask(
      hu, spec, spheres.voxel_key(key, study_id, kind), reach))
  values = inserted[inside]
  return dict(voxels=int(inside.sum()), mean_hu=float(values.mean()),
              std_hu=float(values.std(ddof=1)) if values.size > 1 else 0.0)


def process_study(task) -> dict:
  """Skull strip, sphere draw, Dice for one study; writes its mask and record."""
  study_id, volume_path, out_dir, seed, settings, truth_path = task
  started = time.perf_counter()
  image = files.load_nifti(volume_path)
  hu, spacing = image.data.astype(np.float32), image.spacing
  mask = skullstrip.brain_mask(hu, spacing, strip_params(settings))
  write_mask(os.path.join(out_dir, "masks", f"{study_id}.nii.gz"), mask, image.affine)
  key = datasets.prepare_key(seed)
  params = sphere_params(settings)
  draw = spheres.draw_sphere(spheres.study_key(key, study_id), mask, spacing, params)
  # One reach for every study (the largest radius drawn): one compilation per process.
  reach = spheres.reach(max(params.large_radius_mm[1], draw["large_radius_mm"]), spacing)
  centre_mm = image.affine @ np.array([draw["centre_i"], draw["centre_j"], draw["centre_k"], 1])
  draw.update(centre_x_ras=float(centre_mm[0]), centre_y_ras=float(centre_mm[1]),
              centre_z_ras=float(centre_mm[2]))
  record = dict(study_id=study_id, brain_ml=float(mask.sum() * np.prod(spacing) / 1000.0),
                sphere=draw, dice=None,
                measured={kind: measure_sphere(hu, draw, kind, spacing, key, study_id, reach)
                          for kind in ("large", "small")})
  true_mask = truth.truth_on_grid(truth_path, hu.shape, image.affine) if truth_path else None
  if true_mask is not None:
    record["dice"] = truth_dice(mask, true_mask)
  if study_id in settings.get("_overlay_ids", ()):
    prepare_report.overlay(os.path.join(out_dir, "overlays", f"{study_id}.png"), hu, mask,
                           true_mask, draw, spacing, key, study_id, reach)
  record["seconds"] = round(time.perf_counter() - started, 3)
  relative = os.path.join("masks", f"{study_id}.nii.gz")
  record["outputs"] = {relative: files.fingerprint(os.path.join(out_dir, relative))}
  files.write_text(os.path.join(out_dir, "records", f"{study_id}.json"), json.dumps(record))
  return record



def settings_fingerprint(config, cohort_dir) -> dict:
  return json.loads(json.dumps(dict(
      cohort=os.path.abspath(cohort_dir), group=config.cohort.group, seed=config.seed,
      skullstrip=config.prepare.skullstrip.to_dict(), skullstrip_version=skullstrip.VERSION,
      spheres=config.prepare.spheres.to_dict())))


def check_settings(out_dir, fingerprint):
  path = os.path.join(out_dir, datasets.SETTINGS_FILE)
  if os.path.exists(path):
    with open(path) as f:
      old = json.load(f)
    if {k: old.get(k) for k in fingerprint} != fingerprint:
      raise ValueError(f"{out_dir} was prepared from another cohort or with other seed / "
                       "skullstrip / spheres settings or code; use a new output directory")


def prepare_cohort(cohort_dir, out_dir, config, truth_dir=None, progress=None) -> dict:
  """Prepares every study of the cohort not yet done; returns the summary dict."""
  started = time.perf_counter()
  settings = config.prepare
  for sub in ("masks", "records", "overlays"):
    os.makedirs(os.path.join(out_dir, sub), exist_ok=True)
  fingerprint = settings_fingerprint(config, cohort_dir)
  check_settings(out_dir, fingerprint)
  key = datasets.prepare_key(config.seed)
  secret = truth.read_secret(cohort_dir, config.ingest.secret) if truth_dir else None
  index = truth.index_truth(truth_dir, secret) if truth_dir and secret else {}
  anatomies = {study_id: str(record["anatomy"]) for study_id, record in index.items()
               if "anatomy" in record}
  grid_slice_mm = float(config.ingest.paper_grid.slice_mm)
  lesion_hu = dict(large=settings.spheres.large_hu[0], small=settings.spheres.small_hu[0])
  cohort = cohort_rows(*read_cohort(cohort_dir, settings.match), key, config)
  responses = {r["study_id"]: truth.scanner_response(
      index[r["study_id"]], r.get("series_number", ""), grid_slice_mm, lesion_hu)
      for r in cohort if r["study_id"] in index}
  rows = plan(cohort, key, config, anatomies, responses)
  truths = {}
  if truth_dir and secret:
    truths = {r["study_id"]: truth.mask_file(truth_dir, index[r["study_id"]],
                                             r.get("series_number", ""))
              for r in rows if r["study_id"] in index}
  elif truth_dir:
    logging.warning("no ingest secret found: cannot link %s to the cohort; no Dice", truth_dir)
  group = config.cohort.group
  overlay_ids = set()
  for value in sorted({r[group] for r in rows}):
    overlay_ids.update(sorted(r["study_id"] for r in rows if r[group] == value)
                       [:settings.overlays])
  task_settings = settings.to_dict() | {"_overlay_ids": sorted(overlay_ids)}
  records, tasks = {}, []
  for r in rows:
    path = os.path.join(out_dir, "records", f"{r['study_id']}.json")
    mask = os.path.join(out_dir, "masks", f"{r['study_id']}.nii.gz")
    record = files.intact_record(path, out_dir, "prepare") if os.path.exists(mask) else None
    if record is not None:
      records[r["study_id"]] = record
      if record["dice"] is None and truths.get(r["study_id"]):  # truth given only now
        image = files.load_nifti(mask)
        record["dice"] = truth_dice(image.data > 0, truth.truth_on_grid(
            truths[r["study_id"]], image.data.shape, image.affine))
        files.write_text(path, json.dumps(record))
    else:
      tasks.append((r["study_id"], os.path.join(cohort_dir, r["path"]), out_dir, config.seed,
                    _Settings(task_settings), truths.get(r["study_id"])))
  skipped = len(records)
  for done, record in enumerate(_run(process_study, tasks, settings.workers), start=1):
    records[record["study_id"]] = record
    if progress:
      progress(done, len(tasks))
  files.write_text(os.path.join(out_dir, datasets.SETTINGS_FILE),
                   json.dumps(fingerprint, indent=1, sort_keys=True))
  summary = prepare_report.write_tables(out_dir, rows, records, group, config)
  summary.update(studies=len(rows), prepared_now=len(tasks), skipped_as_done=skipped,
                 seconds=round(time.perf_counter() - started, 3))
  files.write_text(os.path.join(out_dir, "summary.json"), json.dumps(summary, indent=1))
  return summary


class _Settings(dict):
  """config.prepare as a picklable dict with attribute access (crosses process pools)."""

  def __getattr__(self, name):
    value = self[name]
    return _Settings(value) if isinstance(value, dict) else value


def _run(function, tasks, workers):
  if workers <= 1 or len(tasks) <= 1:
    yield from map(function, tasks)
    return
  # spawn, not fork: the parent holds JAX's threads.
  context = multiprocessing.get_context("spawn")
  with concurrent.futures.ProcessPoolExecutor(workers, mp_context=context) as pool:
    futures = [pool.submit(function, task) for task in tasks]
    for future in concurrent.futures.as_completed(futures):
      yield future.result()

