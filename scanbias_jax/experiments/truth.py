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
from scanbias_jax.synth import scanner, vendors

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


def chosen_series(series: list, series_number) -> dict | None:
  """Of a truth record's `series`, the one ingest chose (by series number), else the only one."""
  chosen = [s for s in series if str(SERIES_NUMBERS.get(s.get("kind"))) == str(series_number)]
  return chosen[0] if chosen else (series[0] if len(series) == 1 else None)


def scanner_response(record, series_number, slice_mm: float, lesion_hu: dict) -> dict | None:
  """Columns for the acquired sphere insertion (lesions/spheres.Response): the chosen
  series' in-plane MTF50, its slice profile on the ingested slices (a series thinner
  than `slice_mm` was averaged into slabs: the profile's variance plus the slab's,
  W^2 / 12), and the scanner's calibration offset at each lesion's HU (`lesion_hu`:
  kind -> mean HU; water and tissue terms, no cupping)."""
  series = chosen_series(record.get("series", []), series_number)
  physics = record.get("physics")
  if series is None or not physics:
    return None
  values = vendors.Physics(**{k: float(v) for k, v in physics.items()
                              if k in vendors.Physics._fields})
  fwhm = values.ssp_ratio * float(series["thickness_mm"])
  if float(series["thickness_mm"]) < slice_mm - 1e-6:
    variance = fwhm ** 2 / (8 * np.log(2)) + slice_mm ** 2 / 12
    fwhm = float(np.sqrt(8 * np.log(2) * variance))
  flat = values._replace(cupping_hu=0.0)
  out = dict(mtf50_per_mm=values.mtf50_per_mm, ssp_fwhm_mm=round(fwhm, 6))
  for kind, hu in lesion_hu.items():
    calibrated = scanner.calibrate(np.array([hu], np.float32), np.zeros((1, 2), np.float32), flat)
    out[f"offset_{kind}_hu"] = round(float(calibrated[0]) - float(hu), 6)
  return out


def mask_file(truth_dir, record, series_number) -> str | None:
  """The truth mask of the series ingest chose (by series number), else of the only one."""
  chosen = chosen_series([s for s in record.get("series", []) if s.get("brain_mask")],
                         series_number)
  return os.path.join(truth_dir, chosen["brain_mask"]) if chosen else None


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
