"""Puts a synthetic cohort on disk: a DICOM export plus the simulator's answer key.

Layout of `out`:
  dicom/   the export, as a hospital would hand it over: studies in one of three
           folder layouts (patient-named folders, UID folders, flat anonymous
           files), fake PHI in names and tags. This is ingest's input.
  truth/   what only the simulator knows: study_NNNN.json (plan, vendor physics),
           study_NNNN_<kind>_brain.nii.gz (ground-truth brain mask on the
           series' own grid, RAS affine), and studies.csv. Never read by ingest.
A study is finished when its json exists (written last, atomically), so a rerun
skips it and an interrupted run resumes.
"""
import concurrent.futures
import csv
import hashlib
import json
import multiprocessing
import os
from pathlib import Path

import jax
import numpy as np

from scanbias_jax import files
from scanbias_jax.synth import dicom_write as write
from scanbias_jax.synth import cohort, geometry as geo

SERIES_NUMBERS = {"scout": 1, "routine": 2, "thin": 3}


def _safe(text: str) -> str:
  return "".join(c if c.isalnum() else "_" for c in text).strip("_")


def file_path(plan: cohort.StudyPlan, series: write.SeriesTags, ds) -> Path:
  """Where one image goes, by the study's folder layout."""
  t = plan.tags
  if plan.layout == "patient":
    return (Path(f"{_safe(t.patient_name)}_{t.patient_id}")
            / f"{t.study_date}_CT_HEAD" / f"{series.number:03d}_{_safe(series.description)}"
            / f"IM{ds.InstanceNumber:05d}.dcm")
  if plan.layout == "uid":
    return Path(ds.StudyInstanceUID) / ds.SeriesInstanceUID / f"{ds.SOPInstanceUID}.dcm"
  name = hashlib.sha1(ds.SOPInstanceUID.encode()).hexdigest()[:10].upper()
  return Path(f"EXPORT_{t.accession}") / name


def write_mask(path: Path, mask: np.ndarray, geometry: geo.SeriesGeometry) -> None:
  """Brain mask [slices, rows, cols] as NIfTI (col, row, slice) with a RAS affine."""
  files.save_nifti(path, np.transpose(mask.astype(np.uint8), (2, 1, 0)),
                   files.ras_affine(geo.affine_lps(geometry)))


def write_study(out: Path, plan: cohort.StudyPlan, rendered, synth) -> dict:
  """Writes one rendered study; returns its truth record."""
  profile = cohort.plan_profile(plan, synth)
  dicom_root, truth_root = out / "dicom", out / "truth"
  truth_root.mkdir(parents=True, exist_ok=True)
  file_count = size = 0
  series_records = []
  for series in rendered:
    thickness = series.geometry.thickness_mm
    template = profile.description_5mm if series.kind == "routine" \
        else profile.description_thin
    tags = write.SeriesTags(SERIES_NUMBERS[series.kind], template.format(t=thickness),
                            "axial")
    images = write.axial_datasets(plan.tags, tags, series.geometry, series.acquired.stored,
                                  profile)
    size += write.save_series(images, [dicom_root / file_path(plan, tags, ds) for ds in images],
                              profile.transfer_syntax)
    file_count += len(images)
    mask_name = f"study_{plan.index:04d}_{series.kind}_brain.nii.gz"
    write_mask(truth_root / mask_name, series.acquired.brain, series.geometry)
    series_records.append(dict(kind=series.kind, thickness_mm=thickness,
                               slices=series.geometry.num_slices,
                               description=tags.description,
                               series_uid=write.uid(plan.tags, "series", tags.number),
                               brain_mask=mask_name))
  if synth.write_scout:
    tags = write.SeriesTags(SERIES_NUMBERS["scout"], profile.description_scout, "scout")
    for ds in write.scout_datasets(plan.tags, tags, *write.scout_images(rendered[0]),
                                   profile):
      size += write.save(ds, dicom_root / file_path(plan, tags, ds))
      file_count += 1
  record = dict(
      index=plan.index, anatomy=plan.anatomy, design=synth.design, vendor=plan.vendor, manufacturer=profile.manufacturer,
      model=plan.model, kernel="\\".join(profile.kernel), iterative=profile.iterative,
      age_years=plan.age_years,
      sex=plan.tags.sex, dose=plan.dose, thin_mm=plan.thin_mm,
      thin_only=plan.thin_only, with_thin=plan.with_thin, tilt_deg=plan.tilt_deg, layout=plan.layout,
      study_uid=write.uid(plan.tags, "study"), files=file_count, bytes=size,
      physics=profile.physics._asdict(), series=series_records,
      lesion_in_anatomy=lesion_record(rendered))
  files.write_bytes(truth_root / f"study_{plan.index:04d}.json",
                    json.dumps(record, indent=1).encode())
  return record


def lesion_record(rendered) -> dict | None:
  """The sphere placed in the anatomy before acquisition (LPS mm), if any."""
  lesion = rendered[0].lesion if rendered else None
  if lesion is None:
    return None
  return dict(centre_lps_mm=[float(v) for v in np.asarray(lesion.centre_mm)],
              radius_mm=float(lesion.radius_mm), mean_hu=float(lesion.mean_hu),
              std_hu=float(lesion.std_hu))


def load_record(out: Path, index: int) -> dict | None:
  path = out / "truth" / f"study_{index:04d}.json"
  return json.loads(path.read_text()) if path.exists() else None


def write_table(out: Path, records: list[dict]) -> Path:
  """truth/studies.csv: one row per study, no PHI (the plan's public fields)."""
  columns = ["index", "anatomy", "vendor", "manufacturer", "model", "kernel", "age_years", "sex",
             "dose", "thin_mm", "thin_only", "with_thin", "tilt_deg", "layout", "study_uid",
             "files", "bytes"]
  path = out / "truth" / "studies.csv"
  with files.atomic_path(path) as temporary, open(temporary, "w", newline="") as f:
    writer = csv.DictWriter(f, columns, extrasaction="ignore")
    writer.writeheader()
    writer.writerows(records)
  return path


def summarise(records: list[dict]) -> dict:
  per_vendor = {}
  for r in records:
    v = per_vendor.setdefault(r["vendor"], dict(studies=0, series=0, files=0, bytes=0))
    v["studies"] += 1
    v["series"] += len(r["series"]) + 1
    v["files"] += r["files"]
    v["bytes"] += r["bytes"]
  return per_vendor


def _render_and_write(task) -> list[dict]:
  """One anatomy's studies in a worker process: (key data, synth, out, plans) -> records."""
  key_data, synth, out, plans = task
  key = jax.random.wrap_key_data(key_data)
  return [write_study(out, p, r, synth)
          for p, r in zip(plans, cohort.render_group(key, plans, synth))]


def _groups(plans) -> list[list]:
  """Plans grouped by anatomy (a traveling head's acquisitions render together)."""
  groups = {}
  for p in plans:
    groups.setdefault(p.anatomy, []).append(p)
  return list(groups.values())


def _done_now(fn, *args) -> concurrent.futures.Future:
  """fn(*args) called here and now, as a finished future."""
  future = concurrent.futures.Future()
  future.set_result(fn(*args))
  return future


def write_cohort(key, synth, out: Path, progress=None) -> list[dict]:
  """Synthesizes and writes every study not yet finished; returns all records.

  Studies are independent, so `synth.workers` processes render them in parallel
  (spawned: JAX does not survive fork); the files do not depend on the count.
  """
  plans = cohort.plan_cohort(key, synth)
  records = {p.index: load_record(out, p.index) for p in plans}
  todo = [p for p in plans if records[p.index] is None]
  done = len(plans) - len(todo)
  groups = _groups(todo)
  workers = min(synth.workers, len(groups))
  if workers > 1:
    tasks = [(np.asarray(jax.random.key_data(key)), synth, out, g) for g in groups]
    context = multiprocessing.get_context("spawn")
    with concurrent.futures.ProcessPoolExecutor(workers, mp_context=context) as pool:
      futures = [pool.submit(_render_and_write, t) for t in tasks]
      for future in concurrent.futures.as_completed(futures):
        for record in future.result():
          records[record["index"]] = record
          done += 1
          if progress:
            progress(done, len(plans))
  else:
    # Study i is written (pydicom: Python, holding the GIL) while study i + 1 renders
    # (XLA, which releases it): one writer thread, at most one study waiting. On a
    # single core the two only take turns, and 12-20 % slower than in sequence
    # (BUILD_NOTES, "Synthesizer"), so there they run in sequence.
    def write_group(group, rendered):
      return [write_study(out, p, r, synth) for p, r in zip(group, rendered)]

    with concurrent.futures.ThreadPoolExecutor(1) as writer:
      submit = writer.submit if len(os.sched_getaffinity(0)) > 1 else _done_now
      pending = None
      for group in groups + [None]:
        rendered = cohort.render_group(key, group, synth) if group else None
        if pending is not None:
          for record in pending.result():
            records[record["index"]] = record
            done += 1
            if progress:
              progress(done, len(plans))
        pending = submit(write_group, group, rendered) if group else None
  ordered = [records[p.index] for p in plans]
  write_table(out, ordered)
  return ordered


def write_cohorts(key, synths: list, outs: list, progress=None) -> list[list[dict]]:
  """`write_cohort` of each of `synths` into its out, for settings that differ only in
  scanner physics (a sweep's signature strengths): a head's anatomy is sampled once for
  all of them (cohort.render_group_settings) and each out gets the files write_cohort
  writes there alone. One setting's study is written while the next head renders."""
  plans = cohort.plan_cohort(key, synths[0])
  if any(cohort.plan_cohort(key, synth) != plans for synth in synths[1:]):
    raise ValueError("these synth settings plan different studies: they cannot share "
                     "rendering (only scanner physics may differ)")
  records = [{p.index: load_record(out, p.index) for p in plans} for out in outs]
  todo = [p for p in plans if any(r[p.index] is None for r in records)]
  done = len(plans) - len(todo)

  def write_group(group, rendered):
    for setting, (synth, out) in enumerate(zip(synths, outs)):
      for p, r in zip(group, rendered[setting]):
        if records[setting][p.index] is None:
          records[setting][p.index] = write_study(out, p, r, synth)
    return len(group)

  with concurrent.futures.ThreadPoolExecutor(1) as writer:
    pending = None
    for group in _groups(todo) + [None]:
      rendered = cohort.render_group_settings(key, group, synths) if group else None
      if pending is not None:
        done += pending.result()
        if progress:
          progress(done, len(plans))
      pending = writer.submit(write_group, group, rendered) if group else None
  ordered = [[r[p.index] for p in plans] for r in records]
  for out, rows in zip(outs, ordered):
    write_table(out, rows)
  return ordered
