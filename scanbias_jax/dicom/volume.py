"""Assemble one series into an HU volume with its true geometry.

Slices are ordered by their position along the slice normal (never by
InstanceNumber or file name). Missing slices and uneven spacing are found from
those positions; gantry tilt is found from the angle between the slice normal
and the line the slice positions lie on. Arrays are indexed [i, j, k] =
[column, row, slice] and `affine` maps (i, j, k, 1) to DICOM patient
coordinates (LPS, mm), so `files.ras_affine` is all a NIfTI writer needs.
"""
import collections
import dataclasses
import warnings

import numpy as np
import pydicom
from scipy import ndimage

from scanbias_jax.dicom import scan

_SAME_GEOMETRY_TOL = 1e-3


class Rejected(Exception):
  """A series that cannot be assembled; the message is the manifest reason."""


@dataclasses.dataclass(frozen=True)
class Volume:
  hu: np.ndarray  # float32 [i, j, k]
  affine: np.ndarray  # 4x4, voxel index -> LPS mm
  tilt_deg: float = 0.0
  notes: tuple[str, ...] = ()

  @property
  def spacing(self) -> np.ndarray:
    return np.linalg.norm(self.affine[:3, :3], axis=0)


def assemble(refs: list[scan.SliceRef], policy) -> Volume:
  """The HU volume of one series; `policy` is config.ingest.volume. Raises Rejected."""
  _check_same_plane(refs)
  normal = scan.slice_normal(refs[0].orientation)
  refs = sorted(refs, key=lambda ref: float(np.dot(normal, ref.position)))
  heights = np.array([np.dot(normal, ref.position) for ref in refs])
  if np.any(np.diff(heights) < _SAME_GEOMETRY_TOL):
    raise Rejected("duplicate slice positions")
  hu = np.stack(read_hu(refs, policy), axis=-1)
  positions = np.array([ref.position for ref in refs])
  hu, positions, notes = _make_evenly_spaced(hu, heights, positions, policy)
  affine = _affine(refs[0], positions)
  step = affine[:3, 2]
  tilt_deg = float(np.degrees(np.arccos(min(1.0, abs(step @ normal) / np.linalg.norm(step)))))
  if tilt_deg > policy.tilt_tolerance_deg:
    if policy.tilt == "reject":
      raise Rejected(f"gantry tilt {tilt_deg:.1f} deg (tilt policy: reject)")
    hu, affine = correct_tilt(hu, affine, policy.air_hu)
    notes += (f"gantry tilt {tilt_deg:.1f} deg corrected",)
  return Volume(hu.astype(np.float32), affine, tilt_deg, notes)


def correct_tilt(hu, affine, air_hu):
  """Resamples a sheared volume onto an orthogonal grid with the same shape and centre.

  The new slice axis is the table direction (the line of slice positions), the
  rows stay the rows; voxels that were outside the scanned slab become air.
  """
  row = affine[:3, 0] / np.linalg.norm(affine[:3, 0])
  axis = affine[:3, 2] / np.linalg.norm(affine[:3, 2])
  column = np.cross(axis, row)
  column /= np.linalg.norm(column)
  if column @ affine[:3, 1] < 0:
    column = -column
  spacing = np.linalg.norm(affine[:3, :3], axis=0)
  out = np.eye(4)
  out[:3, :3] = np.stack([row, column, axis], axis=1) * spacing
  centre = (np.array(hu.shape) - 1) / 2.0
  out[:3, 3] = affine[:3, :3] @ centre + affine[:3, 3] - out[:3, :3] @ centre
  to_input = np.linalg.inv(affine) @ out
  corrected = ndimage.affine_transform(hu, to_input[:3, :3], offset=to_input[:3, 3],
                                       order=1, mode="constant", cval=air_hu)
  return corrected, out


def _check_same_plane(refs):
  first = refs[0]
  for ref in refs:
    if (ref.rows, ref.columns) != (first.rows, first.columns):
      raise Rejected("images of different sizes in one series")
    if not np.allclose(ref.orientation, first.orientation, atol=_SAME_GEOMETRY_TOL):
      raise Rejected("images of different orientations in one series")
    if not np.allclose(ref.pixel_spacing, first.pixel_spacing, atol=_SAME_GEOMETRY_TOL):
      raise Rejected("images of different pixel spacings in one series")


def read_hu(refs, policy) -> list[np.ndarray]:
  """HU of every slice, [i, j]; each file is read once (a multi-frame file holds many)."""
  by_path = collections.defaultdict(list)
  for index, ref in enumerate(refs):
    by_path[ref.path].append(index)
  slices = [None] * len(refs)
  for path, indices in by_path.items():
    try:
      with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ds = pydicom.dcmread(path)
        stored = ds.pixel_array
    except Exception as error:
      raise Rejected(f"undecodable pixel data ({type(error).__name__})") from error
    for index in indices:
      frame = refs[index].frame
      pixels = stored[frame] if frame >= 0 else stored
      slices[index] = _to_hu(ds, frame, pixels, policy).T
  return slices


def _to_hu(ds, frame, stored, policy) -> np.ndarray:
  if frame >= 0:
    transform = scan.frame_item(ds, frame, "PixelValueTransformationSequence")
  else:
    transform = ds
  slope, intercept = transform.get("RescaleSlope"), transform.get("RescaleIntercept")
  if slope in (None, "") or intercept in (None, ""):
    if policy.missing_rescale == "reject":
      raise Rejected("missing RescaleSlope/RescaleIntercept (policy: reject)")
    slope, intercept = 1.0, 0.0
  hu = stored.astype(np.float32) * np.float32(slope) + np.float32(intercept)
  padding = _padding_mask(ds, stored)
  if padding is not None:
    hu[padding] = policy.air_hu
  # Out-of-field pixels (e.g. GE's -3024 HU without a padding tag) read as air.
  return np.maximum(hu, policy.air_hu)


def _padding_mask(ds, stored):
  value = ds.get("PixelPaddingValue")
  if value is None:
    return None
  limit = ds.get("PixelPaddingRangeLimit", value)
  bound = [int(v) for v in (value, limit)]
  if int(ds.get("PixelRepresentation", 0)) == 1:  # an SS value may arrive read as US
    bound = [v - 65536 if v >= 32768 else v for v in bound]
  return (stored >= min(bound)) & (stored <= max(bound))


def _make_evenly_spaced(hu, heights, positions, policy):
  """Equal slice steps: as they are, resampled linearly over gaps, or Rejected."""
  steps = np.diff(heights)
  if steps.size == 0:
    raise Rejected("a single slice")
  typical = float(np.median(steps))
  if np.all(np.abs(steps - typical) <= policy.spacing_tolerance_mm):
    return hu, positions, ()
  multiples = np.round(steps / typical)
  is_gap = (multiples >= 2) & (np.abs(steps - multiples * typical)
                               <= policy.spacing_tolerance_mm * multiples)
  missing = int(np.sum(multiples[is_gap] - 1))
  uneven = ~is_gap & (np.abs(steps - typical) > policy.spacing_tolerance_mm)
  if np.any(uneven):
    problem = (f"uneven slice spacing ({steps.min():.2f}-{steps.max():.2f} mm, "
               f"typical {typical:.2f} mm)")
  else:
    where = ", ".join(f"{s:.2f} mm after slice {i}" for i, s in zip(np.flatnonzero(is_gap), steps[is_gap]))
    problem = f"{missing} missing slice(s): gap of {where} (step {typical:.2f} mm)"
  if policy.gaps == "reject":
    raise Rejected(f"{problem} (gap policy: reject)")
  if missing > policy.max_filled_slices:
    raise Rejected(f"{problem}: more than {policy.max_filled_slices} to fill")
  count = int(round((heights[-1] - heights[0]) / typical)) + 1
  targets = np.linspace(heights[0], heights[-1], count)
  below = np.clip(np.searchsorted(heights, targets, side="right") - 1, 0, len(heights) - 2)
  weight = ((targets - heights[below]) / (heights[below + 1] - heights[below])).astype(np.float32)
  resampled = hu[..., below] * (1 - weight) + hu[..., below + 1] * weight
  new_positions = positions[below] * (1 - weight[:, None]) + positions[below + 1] * weight[:, None]
  return resampled, new_positions, (f"{problem}: resampled linearly to {count} slices",)


def _affine(first: scan.SliceRef, positions) -> np.ndarray:
  row, column = np.array(first.orientation[:3]), np.array(first.orientation[3:])
  row_spacing, column_spacing = first.pixel_spacing  # between rows, between columns
  count = len(positions)
  step = (positions[-1] - positions[0]) / max(count - 1, 1)
  off_line = positions - (positions[0] + np.arange(count)[:, None] * step)
  if np.abs(off_line).max() > max(0.1, 0.05 * np.linalg.norm(step)):
    raise Rejected("slice positions do not lie on a line")
  affine = np.eye(4)
  affine[:3, 0] = row * column_spacing
  affine[:3, 1] = column * row_spacing
  affine[:3, 2] = step
  affine[:3, 3] = positions[0]
  return affine
