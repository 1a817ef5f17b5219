"""The synthesizer's ground-truth brain masks, brought onto the ingested grid.

The synthesizer writes truth/study_NNNN.json (with the StudyInstanceUID) and a
brain mask per series on that series' own grid (RAS affine). Ingest names a
study by a keyed hash of its UID, so the cohort's secret links the two; the
manifest's series_number says which series ingest chose. The mask is carried to
the ingested voxels through the two affines (world coordinates), with linear
interpolation thresholded at 0.5: the same linear resampling ingest applied to
the HU (slice thickness, tilt correction, in-plane size), so each ingested voxel
is "brain" when the truth at its centre is.
"""
import glob
import json
import os

import numpy as np
from scipy import ndimage

from scanbias_jax import files
from scanbias_jax.dicom import deid

SERIES_NUMBERS = {"scout": 1, "routine": 2, "thin": 3}  # as synth/export.py writes them


def read_secret(cohort_dir, configured: str = "") -> bytes | None:
  """The ingest pseudonym key, read only (never generated): config, else <cohort>/.secret."""
  if configured.startswith("file:"):
    path = configured[len("file:"):]
  elif configured:
    return configured.encode()
  else:
    path = os.path.join(cohort_dir, ".secret")
  if not os.path.exists(path):
    return None
  with open(path, "rb") as f:
    return f.read().strip()


def index_truth(truth_dir, secret: bytes) -> dict:
  """study_id (as ingest names it) -> the synthesizer's study record."""
  found = {}
  for path in sorted(glob.glob(os.path.join(truth_dir, "study_*.json"))):
    with open(path) as f:
      record = json.load(f)
    if "study_uid" in record:
      found[deid.pseudonym(secret, "study", record["study_uid"])] = record
  return found


def mask_file(truth_dir, record, series_number) -> str | None:
  """The truth mask of the series ingest chose (by series number), else of the only one."""
  series = [s for s in record.get("series", []) if s.get("brain_mask")]
  chosen = [s for s in series if str(SERIES_NUMBERS.get(s.get("kind"))) == str(series_number)]
  if not chosen and len(series) == 1:
    chosen = series
  return os.path.join(truth_dir, chosen[0]["brain_mask"]) if chosen else None


def mask_on_grid(mask, mask_affine, shape, grid_affine) -> np.ndarray:
  """Bool [shape]: `mask` (voxel -> world by `mask_affine`) sampled at the grid's voxels."""
  to_mask = np.linalg.inv(mask_affine) @ grid_affine
  values = ndimage.affine_transform(np.asarray(mask, np.float32), to_mask[:3, :3],
                                    offset=to_mask[:3, 3], output_shape=tuple(shape),
                                    order=1, mode="constant", cval=0.0)
  return values >= 0.5


def truth_on_grid(path, shape, grid_affine) -> np.ndarray:
  image = files.load_nifti(path)
  return mask_on_grid(image.data > 0, image.affine, shape, grid_affine)
