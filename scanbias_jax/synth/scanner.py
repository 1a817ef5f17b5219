"""The CT "scanner": true anatomy in, a vendor's reconstructed and stored series out.

An image-domain model of FBP reconstruction, applied in this order:
  1. slice sensitivity profile: the anatomy is integrated along the slice normal
     with a Gaussian SSP whose FWHM is ssp_ratio x the nominal thickness;
  2. in-plane blur: a Gaussian MTF with the kernel's MTF50;
  3. calibration: water offset (weighted by the attenuation fraction so air stays
     air), bone scale above 100 HU, radial cupping inside the head;
  4. noise: Gaussian noise with an FBP-like radial NPS, f * exp(-f^2 / a^2), peaking
     at the kernel's NPS peak (a = sqrt(2) f_peak), level scaling with
     1/sqrt(thickness) and 1/sqrt(dose);
  5. storage: integers through the vendor's rescale, with the vendor's value
     outside the circular reconstruction field.
Every step is a pure JAX function; `acquire` composes them for one series.
"""
import math
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from scanbias_jax import keys
from scanbias_jax.lesions import anatomy
from scanbias_jax.synth import geometry as geo
from scanbias_jax.synth import phantom
from scanbias_jax.synth.vendors import Physics, Profile

REFERENCE_THICKNESS_MM = 5.0
CUPPING_RADIUS_MM = 100.0  # radius at which cupping reaches its full amplitude


class Acquired(NamedTuple):
  hu: np.ndarray      # float32 [slices, rows, cols]: reconstructed HU before storage
  stored: np.ndarray  # int16 or uint16: the integers written to PixelData
  brain: np.ndarray   # bool: ground-truth brain mask at the slice centres
  truth: np.ndarray   # float32: SSP-integrated true HU (no blur, noise, calibration)


def ssp_offsets(thickness_mm: float, ssp_ratio: float, samples: int):
  """Sub-plane offsets along the normal (mm) and their Gaussian SSP weights."""
  fwhm = thickness_mm * ssp_ratio
  offsets = np.linspace(-fwhm, fwhm, samples) if samples > 1 else np.zeros(1)
  weights = np.exp(-4 * math.log(2) * (offsets / fwhm) ** 2)
  return offsets.astype(np.float32), (weights / weights.sum()).astype(np.float32)


def radial_frequency(matrix: int, pixel_mm: float) -> jax.Array:
  """|f| in cycles/mm on the rfft2 grid of a matrix x matrix image."""
  fy = jnp.fft.fftfreq(matrix, d=pixel_mm)
  fx = jnp.fft.rfftfreq(matrix, d=pixel_mm)
  return jnp.sqrt(fy[:, None] ** 2 + fx[None, :] ** 2)


def blur(images: jax.Array, pixel_mm: float, mtf50_per_mm) -> jax.Array:
  """In-plane Gaussian MTF: MTF(f) = 2^-(f / mtf50)^2 (0.5 at mtf50)."""
  f = radial_frequency(images.shape[-1], pixel_mm)
  mtf = jnp.exp2(-((f / mtf50_per_mm) ** 2))
  return jnp.fft.irfft2(jnp.fft.rfft2(images) * mtf, s=images.shape[-2:])


def nps_shape(f: jax.Array, peak_per_mm) -> jax.Array:
  """FBP noise power: ramp x Gaussian apodisation, maximal at `peak_per_mm`."""
  a = math.sqrt(2.0) * peak_per_mm
  return f * jnp.exp(-((f / a) ** 2))


def correlated_noise(key: jax.Array, shape, pixel_mm: float, peak_per_mm,
                     sigma_hu) -> jax.Array:
  """Stationary Gaussian noise with radial NPS `nps_shape` and std `sigma_hu`.

  White noise is filtered by sqrt(NPS) normalised to unit power, so the output
  standard deviation is sigma_hu whatever the spectrum's shape.
  """
  white = jax.random.normal(key, shape, jnp.float32)
  f = radial_frequency(shape[-1], pixel_mm)
  filt = jnp.sqrt(nps_shape(f, peak_per_mm))
  # Parseval on the rfft grid: columns other than 0 and Nyquist count twice.
  weight = jnp.ones_like(f).at[:, 1:].set(2.0)
  if shape[-1] % 2 == 0:
    weight = weight.at[:, -1].set(1.0)
  filt = filt / jnp.sqrt(jnp.sum(weight * filt**2) / (shape[-1] * shape[-2]))
  shaped = jnp.fft.irfft2(jnp.fft.rfft2(white) * filt, s=shape[-2:])
  return sigma_hu * shaped


def noise_sigma(physics: Physics, thickness_mm: float, dose: float):
  """Quantum noise: std ~ 1/sqrt(photons) ~ 1/sqrt(thickness x dose)."""
  return physics.noise_hu * jnp.sqrt(REFERENCE_THICKNESS_MM / thickness_mm / dose)


def calibrate(hu: jax.Array, points_xy: jax.Array, physics: Physics) -> jax.Array:
  """Vendor calibration: water offset, bone scale, residual cupping."""
  matter = jnp.clip((hu + 1000.0) / 1000.0, 0.0, 1.0)  # 0 in air, 1 at water and up
  bone = jnp.maximum(hu - 100.0, 0.0) * (physics.bone_scale - 1.0)
  r2 = jnp.sum(points_xy**2, axis=-1) / CUPPING_RADIUS_MM**2
  cupping = physics.cupping_hu * (jnp.minimum(r2, 1.0) - 1.0)  # centre lowest
  return hu + bone + matter * (physics.water_offset_hu + cupping)


def in_field(matrix: int, field_fraction: float) -> np.ndarray:
  """[rows, cols] True inside the circular reconstruction field."""
  c = (matrix - 1) / 2
  r, q = np.mgrid[:matrix, :matrix]
  return (r - c) ** 2 + (q - c) ** 2 <= (field_fraction * matrix / 2) ** 2


def store(hu: np.ndarray, profile: Profile) -> np.ndarray:
  """HU -> stored integers via the vendor's rescale, clipped to BitsStored."""
  bits = profile.bits_stored
  if profile.pixel_representation:
    lo, hi, dtype = -(2 ** (bits - 1)), 2 ** (bits - 1) - 1, np.int16
  else:
    lo, hi, dtype = 0, 2**bits - 1, np.uint16
  values = np.rint((hu - profile.rescale_intercept) / profile.rescale_slope)
  stored = np.clip(values, lo, hi).astype(dtype)
  stored[..., ~in_field(hu.shape[-1], profile.field_fraction)] = profile.outside_stored
  return stored


def stored_to_hu(stored: np.ndarray, profile: Profile) -> np.ndarray:
  """The modality LUT: stored integers -> HU (what a reader should compute)."""
  return stored.astype(np.float32) * profile.rescale_slope + profile.rescale_intercept


CHUNK = 8  # slices per jitted call: fixed shapes, so one compilation per series type


def _plane(row_dir, col_dir, matrix, pixel_mm):
  idx = jnp.arange(matrix, dtype=jnp.float32) * pixel_mm
  return idx[None, :, None] * row_dir + idx[:, None, None] * col_dir  # [r, c, 3]


def _sample(subject, lesion, positions, row_dir, col_dir, offsets, weights, *, matrix,
            pixel_mm):
  """SSP-integrated true HU and the brain mask at the centre, for a chunk of slices.

  `lesion` (lesions.anatomy.Lesion) is painted into the anatomy; an absent one
  leaves it bit for bit as it is, so one compilation serves both cases."""
  plane = _plane(row_dir, col_dir, matrix, pixel_mm)
  normal = jnp.cross(row_dir, col_dir)

  def one(position):
    points = position + plane
    hu, _ = anatomy.head_hu_with_lesion(
        subject, points[None] + offsets[:, None, None, None] * normal, lesion)
    _, brain = phantom.head_hu(subject, points)
    return jnp.tensordot(weights, hu, axes=1), brain

  return jax.vmap(one)(positions)


def _reconstruct(key, truth, positions, indices, row_dir, col_dir, physics, dose, *,
                 pixel_mm, thickness_mm):
  """Blur, calibration and noise (slice k's noise from fold_in(key, k))."""
  plane_xy = _plane(row_dir, col_dir, truth.shape[-1], pixel_mm)[..., :2]
  sigma = noise_sigma(physics, thickness_mm, dose)

  def one(image, position, index):
    image = calibrate(blur(image, pixel_mm, physics.mtf50_per_mm),
                      position[:2] + plane_xy, physics)
    return image + correlated_noise(keys.item(key, index), image.shape, pixel_mm,
                                    physics.nps_peak_per_mm, sigma)

  return jax.vmap(one)(truth, positions, indices)


_sample_jit = jax.jit(_sample, static_argnames=("matrix", "pixel_mm"))
_reconstruct_jit = jax.jit(_reconstruct, static_argnames=("pixel_mm", "thickness_mm"))


def _chunked(fn, count: int, per_slice: list, *shared, **static):
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
  """True HU on closely spaced untilted planes, shared by a study's axial series."""
  z: np.ndarray       # [planes] table z of each plane (mm)
  hu: np.ndarray      # [planes, rows, cols]
  brain: np.ndarray   # [planes, rows, cols]
  template: geo.SeriesGeometry  # the in-plane grid the planes were sampled on


def render_planes(subject: phantom.Subject, template: geo.SeriesGeometry,
                  z: np.ndarray, lesion=None) -> PlaneStack:
  """Samples the anatomy (with `lesion`, if any) on untilted planes at table z."""
  if template.tilt_deg:
    raise ValueError("plane stacks are untilted; sample tilted series directly")
  positions = np.repeat(template.positions[:1], len(z), axis=0)
  positions[:, 2] = z
  row, col = (jnp.asarray(d, jnp.float32) for d in (template.row_dir, template.col_dir))
  hu, brain = _chunked(
      lambda p, *a, **k: _sample_jit(subject, anatomy.no_lesion() if lesion is None else lesion, p, *a, **k),
      len(z), [positions],
      row, col, jnp.zeros(1), jnp.ones(1), matrix=template.matrix,
      pixel_mm=float(template.pixel_mm))
  return PlaneStack(z=np.asarray(z, float), hu=hu, brain=brain, template=template)


def integrate_planes(stack: PlaneStack, geometry: geo.SeriesGeometry, ssp_ratio: float):
  """SSP integral of an untilted series from a plane stack (Gaussian quadrature
  weights on the planes within +-FWHM, the window `ssp_offsets` samples)."""
  t = stack.template
  if (geometry.tilt_deg or geometry.matrix != t.matrix
      or not np.allclose(geometry.positions[:, :2], t.positions[0, :2])):
    raise ValueError("series is not on the plane stack's in-plane grid")
  fwhm = geometry.thickness_mm * ssp_ratio
  dz = stack.z[None, :] - geometry.positions[:, 2:3]                 # [slices, planes]
  weights = np.where(np.abs(dz) <= fwhm + 1e-6, np.exp(-4 * math.log(2) * (dz / fwhm) ** 2), 0)
  if (weights.sum(1) == 0).any() or np.abs(dz).min(1).max() > 1e-3:
    raise ValueError("plane stack does not cover the series' slice centres")
  weights /= weights.sum(1, keepdims=True)
  truth = np.einsum("sp,phw->shw", weights.astype(np.float32), stack.hu)
  return truth, stack.brain[np.abs(dz).argmin(1)]


def acquire(key: jax.Array, subject: phantom.Subject, geometry: geo.SeriesGeometry,
            profile: Profile, dose: float = 1.0, ssp_samples: int = 5,
            stack: PlaneStack | None = None, lesion=None) -> Acquired:
  """One series of `subject` on `geometry` as the vendor of `profile` makes it.

  `dose` is relative to the vendor's reference dose (1.0 = routine protocol).
  With `stack` (untilted series only) the SSP is integrated over its planes;
  otherwise `ssp_samples` sub-planes per slice are sampled, with `lesion`
  (lesions.anatomy.Lesion) painted into the anatomy. Slice k's noise
  depends only on fold_in(noise key, k).
  """
  if dose <= 0:
    raise ValueError(f"dose must be positive, got {dose}")
  row, col = (jnp.asarray(d, jnp.float32) for d in (geometry.row_dir, geometry.col_dir))
  count = geometry.num_slices
  if stack is not None:
    truth, brain = integrate_planes(stack, geometry, profile.physics.ssp_ratio)
  else:
    offsets, weights = ssp_offsets(geometry.thickness_mm, profile.physics.ssp_ratio,
                                   ssp_samples)
    truth, brain = _chunked(
        lambda p, *a, **k: _sample_jit(subject, anatomy.no_lesion() if lesion is None else lesion, p, *a, **k),
        count, [geometry.positions],
        row, col, offsets, weights, matrix=geometry.matrix,
        pixel_mm=float(geometry.pixel_mm))
  physics = Physics(*[jnp.float32(v) for v in profile.physics])
  noise_key = keys.stream(key, "noise")
  hu = _chunked(
      lambda t, p, i, *a, **k: _reconstruct_jit(noise_key, t, p, i, *a, **k), count,
      [truth, geometry.positions, np.arange(count)], row, col, physics,
      jnp.float32(dose), pixel_mm=float(geometry.pixel_mm),
      thickness_mm=float(geometry.thickness_mm))
  return Acquired(hu=hu, stored=store(hu, profile), brain=brain, truth=truth)
