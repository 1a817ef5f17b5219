"""Every file the tool writes goes through here (JAX-free).

A file is written beside its target under a temporary name (same folder, same suffix,
unique to the process), then renamed over it: a run killed at any moment leaves the
old file or the new one, never half of one. `sync=True` also flushes the data to disk
before the rename, for the small files that mark work as done (records, `.done`,
results.json); bulk outputs (DICOM slices, figures, volumes) skip it, as an
interrupted stage redoes its unfinished studies anyway. NIfTI files are read and
built here too (`load_nifti`, `save_nifti`: one header convention for volumes, masks and
truth).
"""
import contextlib
import hashlib
import json
import os
from pathlib import Path
from typing import NamedTuple

import numpy as np
from absl import logging

_KEEP_SUFFIXES = (".nii.gz",)  # suffixes a reader (nibabel) needs on the temporary name


def _suffix(path: Path) -> str:
  return next((s for s in _KEEP_SUFFIXES if path.name.endswith(s)), path.suffix)


@contextlib.contextmanager
def atomic_path(path, sync: bool = False):
  """Yields a temporary path beside `path` to write; renames it over `path` when the
  block ends, and removes it if the block raises."""
  path = Path(path)
  path.parent.mkdir(parents=True, exist_ok=True)
  temporary = path.with_name(f".{path.name}.{os.getpid()}.tmp{_suffix(path)}")
  try:
    yield temporary
    if sync:
      descriptor = os.open(temporary, os.O_RDONLY)
      try:
        os.fsync(descriptor)
      finally:
        os.close(descriptor)
    os.replace(temporary, path)
  finally:
    if temporary.exists():
      temporary.unlink()


def write_bytes(path, data: bytes, sync: bool = False) -> None:
  with atomic_path(path, sync) as temporary:
    temporary.write_bytes(data)


def write_text(path, text: str, sync: bool = True) -> None:
  with atomic_path(path, sync) as temporary:
    temporary.write_text(text, encoding="utf-8")


def write_json(path, value, sync: bool = True, **dump_args) -> None:
  write_text(path, json.dumps(value, **dump_args), sync)


LPS_TO_RAS = np.diag([-1.0, -1.0, 1.0, 1.0])  # DICOM's patient axes -> NIfTI's world axes


def ras_affine(affine_lps: np.ndarray) -> np.ndarray:
  """A voxel -> LPS mm affine (DICOM) as the voxel -> RAS mm affine NIfTI stores."""
  return LPS_TO_RAS @ np.asarray(affine_lps, float)


def fingerprint(path) -> list:
  """[size in bytes, blake2b hex digest] of a file: what a stage records of each output
  it wrote, so that a later run finds the file truncated or altered (~5 ms a volume)."""
  with open(path, "rb") as f:
    return [os.fstat(f.fileno()).st_size, hashlib.file_digest(f, "blake2b").hexdigest()]


def damage(root, outputs: dict) -> dict:
  """{relative path: what is wrong} of the `outputs` ({relative path: fingerprint}) under
  `root` that are missing or no longer what was written."""
  wrong = {}
  for relative, (size, digest) in outputs.items():
    path = Path(root) / relative
    if not path.exists():
      wrong[relative] = "missing"
      continue
    found = fingerprint(path)
    if found[0] != size:
      wrong[relative] = f"{found[0]} bytes where {size} were written"
    elif found[1] != digest:
      wrong[relative] = "its content differs from what was written"
  return wrong


def intact_record(path, out_dir, stage: str) -> dict | None:
  """A study's record (`<out_dir>/records/<id>.json`), or None where it has none or an
  output it records changed since it was written: the study is then done again by
  `stage`, and a warning names the file."""
  path = Path(path)
  if not path.exists():
    return None
  record = json.loads(path.read_text())
  for relative, why in damage(out_dir, record.get("outputs", {})).items():
    logging.warning("%s: %s; redoing its study's %s", Path(out_dir) / relative, why, stage)
    return None
  return record


def damaged_records(out_dir) -> dict:
  """{study_id: "path: what is wrong"} over a stage's records/<study_id>.json whose
  recorded `outputs` changed since they were written."""
  found = {}
  records = Path(out_dir) / "records"
  for path in sorted(records.glob("*.json")) if records.is_dir() else []:
    outputs = json.loads(path.read_text()).get("outputs", {})
    for relative, why in damage(out_dir, outputs).items():
      found[path.stem] = f"{Path(out_dir) / relative}: {why}"
  return found


class DamagedFile(OSError):
  """A stage output that cannot be read: the message names it and what to do."""


class Nifti(NamedTuple):
  data: np.ndarray      # as stored (int16 HU, uint8 masks)
  affine: np.ndarray    # voxel -> RAS mm
  spacing: np.ndarray   # voxel size (mm) along the three array axes


def load_nifti(path) -> Nifti:
  """A NIfTI as its stored array, its RAS affine and its voxel size; DamagedFile naming
  the file where it cannot be read (truncated, not a NIfTI)."""
  import nibabel as nib  # pylint: disable=g-import-not-at-top
  try:
    image = nib.load(path)
    return Nifti(np.asarray(image.dataobj), np.asarray(image.affine, float),
                 np.asarray(image.header.get_zooms()[:3], float))
  except (EOFError, OSError, ValueError, nib.filebasedimages.ImageFileError) as error:
    raise DamagedFile(f"{path} cannot be read ({type(error).__name__}: {error}): the file is "
                      "damaged (a partial copy, a full disk). Rerun the same command: each "
                      "stage checks the files it recorded and redoes the studies whose files "
                      "changed; or delete the file and its study's record.") from error


def save_nifti(path, data: np.ndarray, affine_ras: np.ndarray, description: str = "") -> None:
  """`data` as NIfTI with `affine_ras` in sform and qform (code 1, scanner), units mm
  and s, and nothing else in the header but `description` (no patient information
  ever enters a header), atomically."""
  import nibabel as nib  # pylint: disable=g-import-not-at-top  (only stages that write NIfTI)
  image = nib.Nifti1Image(data, affine_ras)
  image.set_sform(affine_ras, code=1)
  image.set_qform(affine_ras, code=1)
  image.header.set_xyzt_units("mm", "sec")
  image.header["descrip"] = description.encode()
  with atomic_path(path) as temporary:
    nib.save(image, temporary)
