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


def _slices(key, subject, positions, indices, row_dir, col_dir, offsets, weights,
            physics, dose, *, matrix, pixel_mm, thickness_mm):
  """A chunk of slices: SSP integration, blur, calibration, noise (per-slice keys)."""
  idx = jnp.arange(matrix, dtype=jnp.float32) * pixel_mm
  plane = idx[None, :, None] * row_dir + idx[:, None, None] * col_dir  # [r, c, 3]
  normal = jnp.cross(row_dir, col_dir)
  sigma = noise_sigma(physics, thickness_mm, dose)

  def one(position, index):
    points = position + plane
    hu, _ = phantom.head_hu(subject, points[None] + offsets[:, None, None, None] * normal)
    _, brain = phantom.head_hu(subject, points)
    truth = jnp.tensordot(weights, hu, axes=1)
    image = calibrate(blur(truth, pixel_mm, physics.mtf50_per_mm), points[..., :2],
                      physics)
    noise = correlated_noise(keys.item(key, index), (matrix, matrix), pixel_mm,
                             physics.nps_peak_per_mm, sigma)
    return image + noise, brain, truth

  return jax.vmap(one)(positions, indices)


_slices_jit = jax.jit(_slices, static_argnames=("matrix", "pixel_mm", "thickness_mm"))


def acquire(key: jax.Array, subject: phantom.Subject, geometry: geo.SeriesGeometry,
            profile: Profile, dose: float = 1.0, ssp_samples: int = 5) -> Acquired:
  """One series of `subject` on `geometry` as the vendor of `profile` makes it.

  `dose` is relative to the vendor's reference dose (1.0 = routine protocol).
  Slice k's noise depends only on fold_in(noise key, k).
  """
  if dose <= 0:
    raise ValueError(f"dose must be positive, got {dose}")
  offsets, weights = ssp_offsets(geometry.thickness_mm, profile.physics.ssp_ratio,
                                 ssp_samples)
  physics = Physics(*[jnp.float32(v) for v in profile.physics])
  noise_key = keys.stream(key, "noise")
  count = geometry.num_slices
  chunk = min(CHUNK, count)
  padded = -(-count // chunk) * chunk
  positions = np.zeros((padded, 3), np.float32)
  positions[:count] = geometry.positions
  positions[count:] = geometry.positions[-1]
  parts = [_slices_jit(noise_key, subject, positions[i:i + chunk],
                       jnp.arange(i, i + chunk), jnp.asarray(geometry.row_dir, jnp.float32),
                       jnp.asarray(geometry.col_dir, jnp.float32), offsets, weights,
                       physics, jnp.float32(dose), matrix=geometry.matrix,
                       pixel_mm=float(geometry.pixel_mm),
                       thickness_mm=float(geometry.thickness_mm))
           for i in range(0, padded, chunk)]
  hu, brain, truth = (np.concatenate([np.asarray(p[j]) for p in parts])[:count]
                      for j in range(3))
  return Acquired(hu=hu, stored=store(hu, profile), brain=brain, truth=truth)
