"""The CT "scanner": true anatomy in, a vendor's reconstructed and stored series out.

An image-domain model of FBP reconstruction, applied in this order:
  1. slice sensitivity profile: the anatomy is integrated along the slice normal
     with a Gaussian SSP whose FWHM is ssp_ratio x the nominal thickness;
  2. in-plane blur: a Gaussian MTF with the kernel's MTF50; the anatomy may be
     sampled on a coarser lattice of the image grid (every k-th pixel) and is
     then interpolated by zero-padding its spectrum in the same FFT;
  3. beam hardening: the quadratic bone-path error of rays through dense bone
     (the dark bands between the petrous ridges), along four ray directions;
  4. calibration: water offset (weighted by the attenuation fraction so air stays
     air), grey- and white-matter offsets (a piecewise-linear curve through the
     true tissue values), bone scale above 100 HU, radial cupping inside the head;
  5. noise: Gaussian noise with an FBP-like radial NPS, f exp(-(f / a)^4) (ramp x
     apodisation, peaking at the kernel's NPS peak lowered by the iterative
     reconstruction's shift), its std (1 - ir_noise_reduction) x the FBP level, scaling with
     1/sqrt(thickness x dose) and, where noise_nonuniformity > 0, rising with
     the attenuation along the rays through each pixel (noisier at the head's
     centre and skull base than in the air around it);
  6. storage: integers through the vendor's rescale, with the vendor's value
     outside the circular reconstruction field.
Every step is a pure JAX function; `acquire` composes them for one series, reading
the anatomy through synth/sampling.py (step 1).
"""
import math
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from scanbias_jax import keys
from scanbias_jax.synth import geometry as geo
from scanbias_jax.synth import phantom, sampling
from scanbias_jax.synth.vendors import Physics, Profile

REFERENCE_THICKNESS_MM = 5.0
CUPPING_RADIUS_MM = 100.0  # radius at which cupping reaches its full amplitude
MU_WATER_PER_MM = 0.019    # effective linear attenuation of water at 120 kVp
REFERENCE_PATH_MM = 180.0  # water-equivalent path at which noise_hu holds
NPS_ORDER = 4              # apodisation roll-off: NPS ~ f exp(-(f / a)^NPS_ORDER)
MAP_PIXEL_MM = 4.0         # grid of the smooth noise and beam-hardening maps
STREAK_THRESHOLD_MM = 25.0  # bone-equivalent path (mm) below which rays harden negligibly
STREAK_SCALE_MM = 30.0


class Acquired(NamedTuple):
  hu: np.ndarray      # float32 [slices, rows, cols]: reconstructed HU before storage
  stored: np.ndarray  # int16 or uint16: the integers written to PixelData
  brain: np.ndarray   # bool: ground-truth brain mask at the slice centres
  truth: np.ndarray   # float32: SSP-integrated true HU (no blur, noise, calibration)


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
  """FBP noise power: ramp x apodisation (a super-Gaussian roll-off), maximal at
  `peak_per_mm`: d/df [f exp(-(f/a)^n)] = 0 at f = a n^(-1/n)."""
  a = NPS_ORDER ** (1.0 / NPS_ORDER) * peak_per_mm
  return f * jnp.exp(-((f / a) ** NPS_ORDER))


def correlated_noise(key: jax.Array, shape, pixel_mm: float, peak_per_mm,
                     sigma_hu) -> jax.Array:
  """Stationary Gaussian noise with radial NPS `nps_shape` and std `sigma_hu`.

  Drawn in the frequency domain: the rfft2 of unit white noise, whose half-plane
  bins are independent complex Gaussians of power rows x cols (Hermitian along the
  first axis in the first and Nyquist columns, whose imaginary parts irfft2 drops,
  so those columns get twice the power), times sqrt(NPS) normalised to unit power.
  The same law as filtering drawn white noise, one FFT fewer a slice (BUILD_NOTES).
  """
  rows, cols = shape[-2:]
  f = radial_frequency(cols, pixel_mm)
  filt = jnp.sqrt(nps_shape(f, peak_per_mm))
  # Parseval on the rfft grid: columns other than 0 and Nyquist count twice.
  weight = jnp.ones_like(f).at[:, 1:].set(2.0)
  if cols % 2 == 0:
    weight = weight.at[:, -1].set(1.0)
  filt = filt / jnp.sqrt(jnp.sum(weight * filt**2) / (rows * cols))
  parts = jax.random.normal(key, (2, *shape[:-1], cols // 2 + 1), jnp.float32)
  spectrum = jax.lax.complex(parts[0], parts[1]) * jnp.sqrt(2.0 / weight * rows * cols / 2)
  return sigma_hu * jnp.fft.irfft2(spectrum * filt, s=(rows, cols))


def noise_sigma(physics: Physics, thickness_mm: float, dose: float):
  """Quantum noise: std ~ 1/sqrt(photons) ~ 1/sqrt(thickness x dose), less the part the
  iterative reconstruction removes."""
  kept = 1.0 - jnp.clip(physics.ir_noise_reduction, 0.0, 0.9)
  return kept * physics.noise_hu * jnp.sqrt(REFERENCE_THICKNESS_MM / thickness_mm / dose)


def nps_peak(physics: Physics):
  """The image's NPS peak: the kernel's, lowered by the iterative reconstruction."""
  return physics.nps_peak_per_mm * (1.0 - jnp.clip(physics.ir_nps_shift, 0.0, 0.8))


# The knots of the tissue calibration: water, the true white and grey matter, and 100 HU
# (where the bone scale takes over).
TISSUE_KNOTS_HU = (0.0, phantom.WHITE, phantom.GREY, 100.0)


def calibrate(hu: jax.Array, points_xy: jax.Array, physics: Physics) -> jax.Array:
  """Vendor calibration: water offset, bone scale, residual cupping."""
  matter = jnp.clip((hu + 1000.0) / 1000.0, 0.0, 1.0)  # 0 in air, 1 at water and up
  bone = jnp.maximum(hu - 100.0, 0.0) * (physics.bone_scale - 1.0)
  r2 = jnp.sum(points_xy**2, axis=-1) / CUPPING_RADIUS_MM**2
  cupping = physics.cupping_hu * (jnp.minimum(r2, 1.0) - 1.0)  # centre lowest
  tissue = jnp.interp(hu, jnp.asarray(TISSUE_KNOTS_HU),
                      jnp.stack([0.0, physics.white_offset_hu, physics.grey_offset_hu, 0.0]))
  return hu + bone + tissue + matter * (physics.water_offset_hu + cupping)


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
  # In place on one float32 copy (a paper-size series is ~190 MB a temporary).
  values = np.subtract(hu, np.float32(profile.rescale_intercept), dtype=np.float32)
  values /= np.float32(profile.rescale_slope)
  np.rint(values, out=values)
  np.clip(values, lo, hi, out=values)
  stored = values.astype(dtype)
  np.copyto(stored, dtype(profile.outside_stored),
            where=~in_field(hu.shape[-1], profile.field_fraction))
  return stored


def stored_to_hu(stored: np.ndarray, profile: Profile) -> np.ndarray:
  """The modality LUT: stored integers -> HU (what a reader should compute)."""
  return stored.astype(np.float32) * profile.rescale_slope + profile.rescale_intercept



def map_factor(matrix: int, pixel_mm: float) -> int:
  """Pooling factor from the anatomy grid to the ~MAP_PIXEL_MM grid of the smooth maps."""
  best = 1
  for d in range(1, matrix + 1):
    if matrix % d == 0 and d * pixel_mm <= MAP_PIXEL_MM * 1.01 and matrix // d >= 8:
      best = d
  return best


def ray_paths(values: jax.Array, pixel_mm: float) -> jax.Array:
  """[4, n, n]: for every pixel, the sum of `values` x path length along the ray
  through it in each of four directions (rows, columns, both diagonals)."""
  n = values.shape[-1]
  r, c = np.mgrid[:n, :n]
  rows = jnp.broadcast_to(values.sum(1, keepdims=True), values.shape)
  cols = jnp.broadcast_to(values.sum(0, keepdims=True), values.shape)
  flat = values.ravel()
  diagonal = [jax.ops.segment_sum(flat, ids.ravel(), 2 * n - 1)[ids]
              for ids in (r + c, r - c + n - 1)]
  return jnp.stack([rows * pixel_mm, cols * pixel_mm,
                    *(d * pixel_mm * math.sqrt(2.0) for d in diagonal)])


def _smooth_upsample(image, sigma_px, shape):
  """Gaussian-smoothed map on the pooled grid, linearly resized to `shape`."""
  f = radial_frequency(image.shape[-1], 1.0)
  smooth = jnp.fft.irfft2(jnp.fft.rfft2(image) * jnp.exp(-2 * (jnp.pi * sigma_px * f) ** 2),
                          s=image.shape)
  return jax.image.resize(smooth, shape, "linear")


def attenuation_maps(truth, pixel_mm: float, out_shape, physics: Physics):
  """(noise scale, beam-hardening error in HU) at out_shape, from one true-HU slice.

  Noise: var ~ mean over rays of exp(attenuation) (photon counts), normalised to
  a REFERENCE_PATH_MM water path, raised to the power noise_nonuniformity / 2
  (0: stationary; bowtie filters and tube-current modulation flatten it in real
  scanners). Beam hardening: -streak_hu x mean over rays of the squared excess
  bone-equivalent path, so only rays through dense bone darken the tissue."""
  pool = map_factor(truth.shape[-1], pixel_mm)
  n = truth.shape[-1] // pool
  coarse = truth.reshape(n, pool, n, pool).mean((1, 3))
  step = pixel_mm * pool
  mu = jnp.clip((coarse + 1000.0) / 1000.0, 0.0, None) * MU_WATER_PER_MM
  relative_var = jnp.mean(jnp.exp(ray_paths(mu, step) - MU_WATER_PER_MM * REFERENCE_PATH_MM), 0)
  scale = relative_var ** (0.5 * physics.noise_nonuniformity)
  bone = ray_paths(jnp.maximum(coarse - 300.0, 0.0) / 1000.0, step)
  excess = jnp.maximum(bone - STREAK_THRESHOLD_MM, 0.0) / STREAK_SCALE_MM
  streak = -physics.streak_hu * jnp.mean(excess ** 2, 0)
  return (_smooth_upsample(scale, 2.0, out_shape),
          _smooth_upsample(streak, 1.0, out_shape))


ANTIALIAS_START = 0.75  # of the anatomy grid's Nyquist: the radial taper's start


def antialias(f, nyquist):
  """A radial raised-cosine taper from ANTIALIAS_START x nyquist to 0 at nyquist."""
  start = ANTIALIAS_START * nyquist
  t = jnp.clip((f - start) / (nyquist - start), 0.0, 1.0)
  return 0.5 * (1.0 + jnp.cos(jnp.pi * t))


def upsample_blur(image, pixel_mm: float, factor: int, mtf50_per_mm):
  """MTF blur of an image sampled every `factor`-th pixel of the output grid, and its
  band-limited interpolation onto that grid (the spectrum zero-padded). factor 1 is
  `blur`. The anatomy grid's spectrum ends at its square Nyquist, which the finer
  grid would show as a line along each axis at that frequency (a moire in the brain,
  BUILD_NOTES, "Synthesizer"); a radial taper to zero there makes the band limit round
  as a real scanner's, leaving the MTF below 0.75 x that Nyquist untouched."""
  if factor == 1:
    return blur(image, pixel_mm, mtf50_per_mm)
  n = image.shape[-1]
  m = n * factor
  f = radial_frequency(n, pixel_mm * factor)
  spectrum = jnp.fft.rfft2(image) * jnp.exp2(-((f / mtf50_per_mm) ** 2)) \
      * antialias(f, 0.5 / (pixel_mm * factor))
  half = n // 2
  fine = jnp.zeros((*image.shape[:-2], m, m // 2 + 1), spectrum.dtype)
  fine = fine.at[..., :half, :half].set(spectrum[..., :half, :half])
  fine = fine.at[..., m - half + 1:, :half].set(spectrum[..., half + 1:, :half])
  return jnp.fft.irfft2(fine * factor ** 2, s=(m, m))


def _reconstruct(key, truth, positions, indices, row_dir, col_dir, physics, dose,
                 thickness_mm, *, pixel_mm, factor):
  """Blur (and interpolation by `factor`), beam hardening, calibration and noise
  (slice k's noise from fold_in(key, k)) of SSP-integrated true HU on the anatomy grid."""
  matrix = truth.shape[-1] * factor
  plane_xy = sampling.plane(row_dir, col_dir, matrix, pixel_mm)[..., :2]
  sigma = noise_sigma(physics, thickness_mm, dose)

  def one(image, position, index):
    noise_scale, streak = attenuation_maps(image, pixel_mm * factor, (matrix, matrix),
                                           physics)
    sharp = upsample_blur(image, pixel_mm, factor, physics.mtf50_per_mm)
    matter = jnp.clip((sharp + 1000.0) / 1000.0, 0.0, 1.0)
    image = calibrate(sharp + matter * streak, position[:2] + plane_xy, physics)
    return image + noise_scale * correlated_noise(
        keys.item(key, index), image.shape, pixel_mm, nps_peak(physics), sigma)

  return jax.vmap(one)(truth, positions, indices)


_reconstruct_jit = jax.jit(_reconstruct, static_argnames=("pixel_mm", "factor"))



def acquire(key: jax.Array, subject, geometry: geo.SeriesGeometry,
            profile: Profile, dose: float = 1.0, ssp_samples: int = 5,
            stack: sampling.PlaneStack | None = None, lesion=None,
            anatomy_factor: int = 1) -> Acquired:
  """One series of `subject` on `geometry` as the vendor of `profile` makes it.

  `dose` is relative to the vendor's reference dose (1.0 = routine protocol).
  With `stack` (of the series' own tilt) the SSP is integrated over its planes,
  whose grid sets the anatomy sampling; otherwise `ssp_samples` sub-planes per
  slice are sampled on every `anatomy_factor`-th pixel, with `lesion`
  (synth.lesion.Lesion) painted into the anatomy. Slice k's noise depends
  only on fold_in(noise key, k). `truth` is on the anatomy grid.
  """
  if dose <= 0:
    raise ValueError(f"dose must be positive, got {dose}")
  row, col = (jnp.asarray(d, jnp.float32) for d in (geometry.row_dir, geometry.col_dir))
  count = geometry.num_slices
  if stack is not None:
    truth, brain = sampling.integrate_planes(stack, geometry, profile.physics.ssp_ratio)
    factor = geometry.matrix // stack.template.matrix
  else:
    offsets, weights = sampling.ssp_offsets(geometry.thickness_mm, profile.physics.ssp_ratio,
                                   ssp_samples)
    factor = anatomy_factor
    truth, brain = sampling.sample_series(subject, lesion,
                                          sampling.anatomy_grid(geometry, factor),
                                  offsets, weights)
  physics = Physics(*[jnp.float32(v) for v in profile.physics])
  noise_key = keys.stream(key, "noise")
  hu = sampling.chunked(
      lambda t, p, i, *a, **k: _reconstruct_jit(noise_key, t, p, i, *a, **k), count,
      [truth, geometry.positions, np.arange(count)], row, col, physics,
      jnp.float32(dose), jnp.float32(geometry.thickness_mm),
      pixel_mm=float(geometry.pixel_mm), factor=factor)
  if factor > 1:
    brain = np.repeat(np.repeat(brain, factor, axis=1), factor, axis=2)
  return Acquired(hu=hu, stored=store(hu, profile), brain=brain, truth=truth)
