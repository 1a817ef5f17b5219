"""Every file the tool writes goes through here (JAX-free).

A file is written beside its target under a temporary name (same folder, same suffix,
unique to the process), then renamed over it: a run killed at any moment leaves the
old file or the new one, never half of one. `sync=True` also flushes the data to disk
before the rename, for the small files that mark work as done (records, `.done`,
results.json); bulk outputs (DICOM slices, figures, volumes) skip it, as an
interrupted stage redoes its unfinished studies anyway.
"""
import contextlib
import json
import os
from pathlib import Path

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


def save_nifti(path, image) -> None:
  """`nibabel.save` of a built image (its header as the caller set it), atomically."""
  import nibabel as nib  # pylint: disable=g-import-not-at-top  (only stages that write NIfTI)
  with atomic_path(path) as temporary:
    nib.save(image, temporary)
