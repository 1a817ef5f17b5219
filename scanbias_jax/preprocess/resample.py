"""Resample an assembled HU volume to the paper's grid, keeping its physical geometry.

Paper (3.1): 5 mm slices (thinner series linearly interpolated), each slice
resampled to 256 x 256 with linear interpolation, 35 slices over the brain.
`grid.slice_resampling="average"` reformats a thinner series as a scanner's thick
reformat does instead: each 5 mm slice the mean of the thin slices it covers, so
it integrates 5 mm of patient and carries a 5 mm slice's noise (linear
interpolation between 2.5 mm slices keeps their noise, ~1.4x a 5 mm slice's).
Arrays are [i, j, k]; every step updates the voxel -> LPS affine so the
volume stays where it was in the patient.
"""
import numpy as np
from scipy import ndimage

from scanbias_jax.dicom import volume as volume_lib

_BONE_HU = 300.0
_BRAIN_SEARCH_PIXELS = 64  # brain finding runs on a coarse copy, for speed


def to_paper_grid(vol: volume_lib.Volume, grid, air_hu: float) -> volume_lib.Volume:
  """5 mm slices, the `grid.n_slices` slices that best cover the brain, in-plane size."""
  hu, affine, notes = vol.hu, vol.affine, list(vol.notes)
  spacing = float(np.linalg.norm(affine[:3, 2]))
  if abs(spacing - grid.slice_mm) > grid.slice_tolerance_mm:
    method = grid.get("slice_resampling", "linear")
    if method == "linear":
      hu, affine = resample_slices(hu, affine, grid.slice_mm)
    elif method == "average":
      hu, affine = average_slices(hu, affine, grid.slice_mm)
    else:
      raise ValueError(f"ingest.paper_grid.slice_resampling must be 'linear' or 'average', "
                       f"got {method!r}")
    notes.append(f"slices {spacing:.3g} -> {grid.slice_mm:g} mm ({method})")
  start = brain_window_start(hu, grid.n_slices, grid.brain_hu)
  hu, affine, padded = take_slices(hu, affine, start, grid.n_slices, air_hu)
  if padded:
    notes.append(f"{padded} air slice(s) added to reach {grid.n_slices}")
  size = (grid.in_plane, grid.in_plane)
  if hu.shape[:2] != size:
    notes.append(f"in-plane {hu.shape[0]}x{hu.shape[1]} -> {size[0]}x{size[1]} (linear)")
    hu, affine = resample_in_plane(hu, affine, size)
  return volume_lib.Volume(hu.astype(np.float32), affine, vol.tilt_deg, tuple(notes))


def resample_slices(hu, affine, slice_mm):
  """Linear interpolation along k to `slice_mm` steps, starting at the first slice."""
  spacing = float(np.linalg.norm(affine[:3, 2]))
  ratio = slice_mm / spacing
  count = int(np.floor((hu.shape[2] - 1) / ratio + 1e-6)) + 1
  sample = np.arange(count) * ratio
  below = np.minimum(np.floor(sample).astype(int), hu.shape[2] - 1)
  above = np.minimum(below + 1, hu.shape[2] - 1)
  weight = (sample - below).astype(np.float32)
  resampled = hu[..., below] * (1 - weight) + hu[..., above] * weight
  new_affine = affine.copy()
  new_affine[:3, 2] *= ratio
  return resampled, new_affine


def average_weights(n_in: int, ratio: float) -> np.ndarray:
  """float32 [n_out, n_in]: output slice m (centred on input index m * ratio, `ratio`
  input slices thick) as the overlap-weighted mean of the input slices, each input
  slice covering its index +- 0.5; rows renormalised where the slab leaves the series."""
  count = int(np.floor((n_in - 1) / ratio + 1e-6)) + 1
  centres = np.arange(count) * ratio
  lo, hi = centres - ratio / 2, centres + ratio / 2
  edges = np.arange(n_in)
  overlap = np.clip(np.minimum(hi[:, None], edges + 0.5) - np.maximum(lo[:, None], edges - 0.5),
                    0.0, None)
  return (overlap / overlap.sum(axis=1, keepdims=True)).astype(np.float32)


def average_slices(hu, affine, slice_mm):
  """Slab averaging along k to `slice_mm` slices (thick reformat), starting at the first
  slice; the affine as `resample_slices` sets it."""
  spacing = float(np.linalg.norm(affine[:3, 2]))
  ratio = slice_mm / spacing
  weights = average_weights(hu.shape[2], ratio)
  resampled = np.tensordot(np.asarray(hu, np.float32), weights, axes=([2], [1]))
  new_affine = affine.copy()
  new_affine[:3, 2] *= ratio
  return resampled, new_affine


def brain_window_start(hu, n_slices, brain_hu) -> int:
  """First slice of the `n_slices` window holding the most intracranial soft tissue.

  Intracranial = inside the filled skull ring of each slice; where no slice has
  a closed skull (a phantom without bone) all soft tissue in the range counts.
  Ties go to the window centred nearest the tissue's centre of mass.
  """
  if hu.shape[2] <= n_slices:
    return 0
  stride = max(1, max(hu.shape[:2]) // _BRAIN_SEARCH_PIXELS)
  coarse = hu[::stride, ::stride, :]
  tissue = (coarse >= brain_hu[0]) & (coarse <= brain_hu[1])
  inside = np.stack([ndimage.binary_fill_holes(coarse[..., k] > _BONE_HU)
                     for k in range(coarse.shape[2])], axis=-1)
  counts = (tissue & inside).sum(axis=(0, 1)).astype(float)
  if counts.sum() == 0:
    counts = tissue.sum(axis=(0, 1)).astype(float)
  window_sums = np.convolve(counts, np.ones(n_slices), mode="valid")
  best = np.flatnonzero(window_sums == window_sums.max())
  centre = (counts @ np.arange(counts.size)) / counts.sum() if counts.sum() else 0.0
  return int(best[np.argmin(np.abs(best + (n_slices - 1) / 2 - centre))])


def take_slices(hu, affine, start, n_slices, air_hu):
  """Slices start..start+n_slices-1; a shorter volume is padded with air at both ends."""
  available = hu.shape[2]
  if available >= n_slices:
    new_affine = affine.copy()
    new_affine[:3, 3] = affine[:3, :3] @ [0, 0, start] + affine[:3, 3]
    return hu[..., start:start + n_slices], new_affine, 0
  before = (n_slices - available) // 2
  after = n_slices - available - before
  padded = np.pad(hu, ((0, 0), (0, 0), (before, after)), constant_values=air_hu)
  new_affine = affine.copy()
  new_affine[:3, 3] = affine[:3, :3] @ [0, 0, -before] + affine[:3, 3]
  return padded, new_affine, before + after


def resample_in_plane(hu, affine, size):
  """Linear resampling of each slice to `size`, keeping the field of view (pixel edges)."""
  factors = np.array([hu.shape[0] / size[0], hu.shape[1] / size[1], 1.0])
  offsets = 0.5 * (factors - 1.0)
  resampled = ndimage.affine_transform(
      hu, factors, offset=offsets, output_shape=(size[0], size[1], hu.shape[2]),
      order=1, mode="nearest")
  index_map = np.eye(4)
  index_map[:3, :3] = np.diag(factors)
  index_map[:3, 3] = offsets
  return resampled, affine @ index_map
