"""The ingest loop: a DICOM tree in, NIfTI volumes, a manifest and rejects out.

This is loop code (I/O, processes, progress); the decisions are in
scanbias_jax/dicom and preprocess/resample. Output layout under `out_dir`:
  volumes/<study_id>.nii.gz   int16 HU, RAS affine (sform and qform, code 1)
  records/<study_id>.json     the study's manifest row and rejects: its done marker
  manifest.csv, rejects.csv, summary.json, settings.json, .secret (if generated)
Every file is written to a temporary name in its directory and renamed, so a
killed run leaves no half file; a study with a record is skipped on rerun.
"""
import concurrent.futures
import hashlib
import hmac
import json
import multiprocessing
import os
import secrets
import time

import numpy as np
from absl import logging

from scanbias_jax import files
from scanbias_jax.cohort import manifest
from scanbias_jax.dicom import deid, scan
from scanbias_jax.dicom import volume as volume_lib
from scanbias_jax.preprocess import resample

_INDEX_CHUNK = 64


def ingest_tree(dicom_root, out_dir, config, progress=None) -> dict:
  """Ingests every study under `dicom_root` into `out_dir`; returns a summary dict.
  `progress(done, total)` is called after each study ingested now."""
  started = time.perf_counter()
  settings = config.ingest
  os.makedirs(os.path.join(out_dir, "records"), exist_ok=True)
  os.makedirs(os.path.join(out_dir, "volumes"), exist_ok=True)
  secret = resolve_secret(settings.secret, out_dir)
  _check_settings(out_dir, settings, secret)
  paths = list_files(dicom_root, exclude=out_dir)
  with _pool(settings.workers) as pool:
    chunks = [paths[i:i + _INDEX_CHUNK] for i in range(0, len(paths), _INDEX_CHUNK)]
    slices, file_rejects = [], []
    for found, broken in _map(pool, scan.index_files, chunks):
      slices.extend(found)
      file_rejects.extend(broken)
    studies = scan.group_by_study(slices)
    indexed = time.perf_counter()
    logging.info("indexed %d files: %d images in %d studies, %d files rejected", len(paths),
                 len(slices), len(studies), len(file_rejects))
    tasks, records = [], []
    for study_uid, series in studies.items():
      study_id = deid.pseudonym(secret, "study", study_uid)
      record_path = os.path.join(out_dir, "records", f"{study_id}.json")
      record = files.intact_record(record_path, out_dir, "ingest")
      if record is not None:
        records.append(record)
      else:
        raw_patient = next(iter(series.values()))[0].patient_id or f"study:{study_uid}"
        patient_id = deid.pseudonym(secret, "patient", raw_patient)
        tasks.append((study_id, patient_id, series, settings, secret, out_dir))
    skipped = len(records)
    for done, record in enumerate(_map(pool, ingest_study, tasks), start=1):
      records.append(record)
      if progress:
        progress(done, len(tasks))
  rows = sorted((r["row"] for r in records), key=lambda row: row["study_id"])
  rejects = [manifest.reject_row("file", reject.reason, file_id=_file_id(
      reject.path, dicom_root, secret, settings.reveal_paths)) for reject in file_rejects]
  rejects += [row for r in records for row in r["rejects"]]
  files.write_text(os.path.join(out_dir, "manifest.csv"),
                   manifest.to_csv(rows, manifest.MANIFEST_COLUMNS))
  files.write_text(os.path.join(out_dir, "rejects.csv"),
                   manifest.to_csv(rejects, manifest.REJECT_COLUMNS))
  summary = {
      "files": len(paths), "files_rejected": len(file_rejects), "studies": len(studies),
      "studies_ok": sum(row["status"] == "ok" for row in rows),
      "studies_rejected": sum(row["status"] != "ok" for row in rows),
      "studies_skipped_as_done": skipped, "studies_ingested_now": len(tasks),
      "seconds": round(time.perf_counter() - started, 3),
      "index_seconds": round(indexed - started, 3), "grid": settings.grid,
  }
  files.write_text(os.path.join(out_dir, "summary.json"), json.dumps(summary, indent=1))
  return summary


def ingest_study(task) -> dict:
  """One study: pick and assemble a series, resample, write; never raises."""
  study_id, patient_id, series, settings, secret, out_dir = task
  all_refs = [ref for refs in series.values() for ref in refs]
  rejects = []
  try:
    choice = scan.select_series(series, settings.selection)
    for series_uid, reason in choice.passed_over:
      rejects.append(_series_reject(study_id, series, series_uid, reason, secret))
    for rank, (series_uid, why) in enumerate(choice.ranked):
      refs = [ref for ref in series[series_uid] if scan.unusable_reason(ref) is None]
      try:
        source = volume_lib.assemble(refs, settings.volume)
      except volume_lib.Rejected as rejected:
        rejects.append(_series_reject(study_id, series, series_uid, str(rejected), secret))
        continue
      for other_uid, _ in choice.ranked[rank + 1:]:
        rejects.append(_series_reject(study_id, series, other_uid,
                                      "not chosen: a better-ranked series was used", secret))
      vol = source
      if settings.grid == "paper":
        vol = resample.to_paper_grid(source, settings.paper_grid, settings.volume.air_hu)
      relative = os.path.join("volumes", f"{study_id}.nii.gz")
      write_nifti(os.path.join(out_dir, relative), vol)
      if rank:
        why += f" (after {rank} better-ranked series failed)"
      row = manifest.study_row(study_id, patient_id, refs, why, len(series), vol, source,
                               settings.grid, relative)
      row.update(manifest.acquisition(refs[0], secret))
      break
    else:
      reason = "no usable series" + ("" if choice.ranked else " (no axial 5 mm or thin series)")
      row = manifest.rejected_row(study_id, patient_id, all_refs, len(series), reason)
      rejects.append(manifest.reject_row("study", reason, study_id=study_id))
  except Exception as error:  # one broken study never stops the others; retried on rerun
    logging.exception("study %s failed", study_id)
    reason = f"internal error ({type(error).__name__})"
    row = manifest.rejected_row(study_id, patient_id, all_refs, len(series), reason, "error")
    return {"row": row, "rejects": rejects + [manifest.reject_row("study", reason, study_id)]}
  record = {"row": row, "rejects": rejects}
  if row["status"] == "ok":
    record["outputs"] = {row["path"]: files.fingerprint(os.path.join(out_dir, row["path"]))}
  files.write_text(os.path.join(out_dir, "records", f"{study_id}.json"), json.dumps(record))
  return record




def write_nifti(path, vol: volume_lib.Volume):
  """int16 HU with the RAS affine in sform and qform and an otherwise blank header."""
  data = np.clip(np.round(vol.hu), -32768, 32767).astype(np.int16)
  files.save_nifti(path, data, files.ras_affine(vol.affine), "scanbias_jax HU")


def resolve_secret(configured: str, out_dir) -> bytes:
  """The pseudonym key: the configured one ("file:PATH" reads it), else <out>/.secret."""
  if configured.startswith("file:"):
    with open(configured[len("file:"):], "rb") as f:
      return f.read().strip()
  if configured:
    return configured.encode()
  path = os.path.join(out_dir, ".secret")
  if not os.path.exists(path):
    logging.warning("No ingest.secret given: generated one in %s. Keep it private, do not "
                    "share it with the data, and pass --config.ingest.secret=file:%s to get "
                    "the same pseudonyms in later runs.", path, path)
    files.write_text(path, secrets.token_hex(32))
    os.chmod(path, 0o600)
  with open(path, "rb") as f:
    return f.read().strip()


def list_files(root, exclude=None) -> list[str]:
  exclude = os.path.realpath(exclude) if exclude else None
  found = []
  for directory, subdirectories, names in os.walk(root):
    if exclude and os.path.realpath(directory) == exclude:
      subdirectories[:] = []
      continue
    subdirectories.sort()
    found.extend(os.path.join(directory, name) for name in sorted(names))
  return found


def _check_settings(out_dir, settings, secret):
  fingerprint = settings.to_dict()
  for volatile in ("secret", "workers", "reveal_paths"):
    fingerprint.pop(volatile, None)
  fingerprint["secret_check"] = hmac.new(secret, b"check", hashlib.sha256).hexdigest()[:16]
  fingerprint = json.loads(json.dumps(fingerprint))
  path = os.path.join(out_dir, "settings.json")
  if os.path.exists(path):
    with open(path) as f:
      if json.load(f) != fingerprint:
        raise ValueError(f"{out_dir} holds studies ingested with other settings or another "
                         "secret; use a new output directory")
  else:
    files.write_text(path, json.dumps(fingerprint, indent=1, sort_keys=True))


def _series_reject(study_id, series, series_uid, reason, secret) -> dict:
  return manifest.reject_row(
      "series", reason, study_id=study_id,
      series_number=manifest.series_number_of(series[series_uid]),
      series_id=deid.pseudonym(secret, "series", series_uid))


def _file_id(path, root, secret, reveal_paths) -> str:
  relative = os.path.relpath(path, root)
  return relative if reveal_paths else deid.pseudonym(secret, "file", relative)


class _InProcess:
  """Stands in for a pool when workers <= 1 (debugging, small trees, tests)."""

  def __enter__(self):
    return None

  def __exit__(self, *unused):
    return False


def _pool(workers):
  if workers <= 1:
    return _InProcess()
  # spawn, not fork: the parent may hold JAX's threads.
  return concurrent.futures.ProcessPoolExecutor(
      workers, mp_context=multiprocessing.get_context("spawn"))


def _map(pool, function, items):
  """Results as they finish (order does not matter to the callers)."""
  if pool is None:
    yield from map(function, items)
    return
  futures = [pool.submit(function, item) for item in items]
  for future in concurrent.futures.as_completed(futures):
    yield future.result()
