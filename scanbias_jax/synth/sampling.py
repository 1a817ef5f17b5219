"""Where the scanner reads the anatomy: slice planes, the slice profile's sub-planes,
and plane stacks shared by a study's series.

A series' true HU is the anatomy integrated along the slice normal with a Gaussian
slice sensitivity profile (FWHM = ssp_ratio x thickness): either at `ssp_offsets`
sub-planes of each slice (`sample_series`) or, for the stack of planes one head's
series share, by quadrature over the planes (`render_planes`, `integrate_planes`).
Everything here is sampling; the physics after it is synth/scanner.py's.
"""
import dataclasses
import math
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from scanbias_jax.synth import geometry as geo
from scanbias_jax.synth import lesion as lesions

def ssp_offsets(thickness_mm: float, ssp_ratio: float, samples: int):
  """Sub-plane offsets along the normal (mm) and their Gaussian SSP weights."""
  fwhm = thickness_mm * ssp_ratio
  offsets = np.linspace(-fwhm, fwhm, samples) if samples > 1 else np.zeros(1)
  weights = np.exp(-4 * math.log(2) * (offsets / fwhm) ** 2)
  return offsets.astype(np.float32), (weights / weights.sum()).astype(np.float32)



CHUNK = 8  # slices per jitted call: fixed shapes, so one compilation per series type


def plane(row_dir, col_dir, matrix, pixel_mm):
  idx = jnp.arange(matrix, dtype=jnp.float32) * pixel_mm
  return idx[None, :, None] * row_dir + idx[:, None, None] * col_dir  # [r, c, 3]


def _sample(subject, lesion, positions, row_dir, col_dir, offsets, weights, *, matrix,
            pixel_mm):
  """SSP-integrated true HU and the brain mask at the centre, for a chunk of slices.

  `subject` is any anatomy with `hu_and_brain(points)` (synth.phantom or
  synth.atlas_head). `lesion` (synth.lesion.Lesion) is painted into the
  anatomy; an absent one leaves it bit for bit as it is."""
  grid = plane(row_dir, col_dir, matrix, pixel_mm)
  normal = jnp.cross(row_dir, col_dir)

  def one(position):
    points = position + grid
    hu, brain = lesions.head_hu_with_lesion(
        subject, points[None] + offsets[:, None, None, None] * normal, lesion)
    if offsets.shape[0] > 1:  # the mask at the slice centre
      _, brain = subject.hu_and_brain(points)
    else:
      brain = brain[0]
    return jnp.tensordot(weights, hu, axes=1), brain

  return jax.vmap(one)(positions)


_sample_jit = jax.jit(_sample, static_argnames=("matrix", "pixel_mm"))


def chunked(fn, count: int, per_slice: list, *shared, **static):
  """Applies fn to chunks of the per-slice arrays (padded with the last slice)."""
  chunk = min(CHUNK, count)
  padded = -(-count // chunk) * chunk
  per_slice = [np.concatenate([a, np.repeat(a[-1:], padded - count, axis=0)])
               for a in map(np.asarray, per_slice)]
  outs = [fn(*[a[i:i + chunk] for a in per_slice], *shared, **static)
          for i in range(0, padded, chunk)]
  if isinstance(outs[0], tuple):
    return tuple(np.concatenate([np.asarray(o[j]) for o in outs])[:count]
                 for j in range(len(outs[0])))
  return np.concatenate([np.asarray(o) for o in outs])[:count]


class PlaneStack(NamedTuple):
  """True HU on closely spaced parallel planes, shared by a study's axial series."""
  z: np.ndarray       # [planes] table z of each plane (mm)
  hu: np.ndarray      # [planes, rows, cols]
  brain: np.ndarray   # [planes, rows, cols]
  template: geo.SeriesGeometry  # the in-plane grid the planes were sampled on


def anatomy_grid(geometry: geo.SeriesGeometry, factor: int) -> geo.SeriesGeometry:
  """Every `factor`-th pixel of the series' grid (same first pixel and slices)."""
  if geometry.matrix % factor:
    raise ValueError(f"matrix {geometry.matrix} is not divisible by the anatomy "
                     f"sampling factor {factor}")
  return dataclasses.replace(geometry, matrix=geometry.matrix // factor,
                             pixel_mm=geometry.pixel_mm * factor)


def anatomy_factor(matrix: int, pixel_mm: float, anatomy_mm: float) -> int:
  """The largest k dividing `matrix` with k x pixel_mm <= anatomy_mm (at least 1)."""
  return max([k for k in range(1, matrix + 1)
              if matrix % k == 0 and k * pixel_mm <= anatomy_mm * (1 + 1e-6)] or [1])


def sample_series(subject, lesion, geometry, offsets, weights):
  row, col = (jnp.asarray(d, jnp.float32) for d in (geometry.row_dir, geometry.col_dir))
  lesion = lesions.no_lesion() if lesion is None else lesion
  return chunked(lambda p, *a, **k: _sample_jit(subject, lesion, p, *a, **k),
                  geometry.num_slices, [geometry.positions], row, col,
                  jnp.asarray(offsets), jnp.asarray(weights), matrix=geometry.matrix,
                  pixel_mm=float(geometry.pixel_mm))


def render_planes(subject, template: geo.SeriesGeometry, z: np.ndarray,
                  lesion=None) -> PlaneStack:
  """Samples the anatomy (with `lesion`, if any) on `template`'s slice plane moved
  along the table to each z."""
  positions = np.repeat(template.positions[:1], len(z), axis=0)
  positions[:, 2] = z
  planes = dataclasses.replace(template, positions=positions)
  hu, brain = sample_series(subject, lesion, planes, np.zeros(1, np.float32),
                             np.ones(1, np.float32))
  return PlaneStack(z=np.asarray(z, float), hu=hu, brain=brain, template=template)


def integrate_planes(stack: PlaneStack, geometry: geo.SeriesGeometry, ssp_ratio: float):
  """SSP integral of a series from a plane stack (Gaussian quadrature weights on the
  planes within +-FWHM along the normal, the window `ssp_offsets` samples), on the
  stack's in-plane grid (which must be the series' grid or a lattice of it).

  A tilted series' planes are its slice plane moved along the table: the plane at
  normal offset d from a slice is also moved d x tan(tilt) along the columns, so it
  is read that far back, linearly interpolated between rows, to integrate along the
  normal as the gantry does (BUILD_NOTES, "Synthesizer")."""
  t = stack.template
  factor = round(t.pixel_mm / geometry.pixel_mm)
  if (t.tilt_deg != geometry.tilt_deg or geometry.matrix != t.matrix * factor
      or not math.isclose(t.pixel_mm, factor * geometry.pixel_mm, rel_tol=1e-6)
      or not np.allclose(geometry.positions[:, :2], t.positions[0, :2])):
    raise ValueError("series is not on the plane stack's in-plane grid")
  fwhm = geometry.thickness_mm * ssp_ratio
  cos_tilt = math.cos(math.radians(geometry.tilt_deg))
  dz = (stack.z[None, :] - geometry.positions[:, 2:3]) * cos_tilt    # [slices, planes]
  weights = np.where(np.abs(dz) <= fwhm + 1e-6, np.exp(-4 * math.log(2) * (dz / fwhm) ** 2), 0)
  if (weights.sum(1) == 0).any() or np.abs(dz).min(1).max() > 1e-3:
    raise ValueError("plane stack does not cover the series' slice centres")
  weights = (weights / weights.sum(1, keepdims=True)).astype(np.float32)
  shift_rows = dz * math.tan(math.radians(geometry.tilt_deg)) / t.pixel_mm
  truth = np.zeros((len(weights), *stack.hu.shape[1:]), np.float32)
  for s, row in enumerate(weights):  # a few planes per slice: a sparse sum
    for p in np.flatnonzero(row):
      truth[s] += row[p] * _rows_from(stack.hu[p], shift_rows[s, p])
  return truth, stack.brain[np.abs(dz).argmin(1)]


def _rows_from(image: np.ndarray, shift: float) -> np.ndarray:
  """image read at row r + shift (linear between rows; edge rows repeated)."""
  if abs(shift) < 1e-6:
    return image
  rows = np.arange(image.shape[0]) + shift
  lo = np.floor(rows)
  frac = (rows - lo).astype(np.float32)[:, None]
  lo = lo.astype(int)
  last = image.shape[0] - 1
  return ((1 - frac) * image[np.clip(lo, 0, last)]
          + frac * image[np.clip(lo + 1, 0, last)])

