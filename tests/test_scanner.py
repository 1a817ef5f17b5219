"""The scanner model against physics: MTF, NPS, noise scaling, calibration, storage."""
import dataclasses
import math

import flax
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from scanbias_jax import keys
from scanbias_jax.synth import geometry as geo
from scanbias_jax.synth import phantom, sampling, scanner, vendors


def radial_nps(noise: np.ndarray, pixel_mm: float, bins: int = 24):
  """Radially averaged NPS of [n, H, W] noise images (independent estimator)."""
  n, h, w = noise.shape
  spec = np.abs(np.fft.fft2(noise - noise.mean(axis=(1, 2), keepdims=True))) ** 2
  spec = spec.mean(0) * pixel_mm**2 / (h * w)
  f = np.hypot(*np.meshgrid(np.fft.fftfreq(h, pixel_mm), np.fft.fftfreq(w, pixel_mm),
                            indexing="ij"))
  edges = np.linspace(0, 0.5 / pixel_mm, bins + 1)
  which = np.digitize(f.ravel(), edges) - 1
  ok = which < bins
  power = np.bincount(which[ok], spec.ravel()[ok], bins) / np.bincount(which[ok], None, bins)
  return (edges[:-1] + edges[1:]) / 2, power


def test_blur_has_half_modulation_at_mtf50():
  pixel, size = 0.5, 128
  impulse = jnp.zeros((size, size)).at[0, 0].set(1.0)
  mtf = np.abs(np.fft.fft2(np.asarray(scanner.blur(impulse, pixel, 0.35))))
  k = round(0.35 * size * pixel)   # frequency bin of 0.35 cycles/mm
  assert mtf[0, 0] == pytest.approx(1.0, abs=1e-5)
  assert mtf[0, k] == pytest.approx(2.0 ** -((k / (size * pixel) / 0.35) ** 2), abs=1e-4)


@pytest.mark.parametrize("peak", [0.17, 0.29])
def test_noise_has_requested_std_and_nps_peak(peak):
  pixel = 0.5   # Nyquist 1 / mm, well above the peak
  noise = jax.vmap(lambda k: scanner.correlated_noise(k, (128, 128), pixel, peak, 4.0))(
      jax.random.split(jax.random.key(1), 64))
  noise = np.asarray(noise)
  assert noise.std() == pytest.approx(4.0, rel=0.02)
  f, power = radial_nps(noise, pixel, bins=40)
  assert abs(f[np.argmax(power)] - peak) <= 0.03
  # The integral of the NPS is the variance (Parseval), here over the whole plane.
  assert power[0] < 0.2 * power.max()  # FBP noise: little power at low frequency


def test_noise_power_per_frequency_is_the_analytic_nps_in_every_column():
  """The spectral draw's power in each 2-D frequency bin, the first and Nyquist columns
  (Hermitian, half their bins dropped by irfft2) included, is sigma^2 R C NPS(f) / mean
  NPS: checked with numpy's full fft2 over many draws."""
  size, pixel, peak, sigma = 32, 1.0, 0.25, 4.0   # Nyquist 0.5 / mm: power in every column
  noise = jax.vmap(lambda k: scanner.correlated_noise(k, (size, size), pixel, peak, sigma))(
      jax.random.split(jax.random.key(7), 2000))
  power = (np.abs(np.fft.fft2(np.asarray(noise, np.float64))) ** 2).mean(0)
  f = np.hypot(*np.meshgrid(np.fft.fftfreq(size, pixel), np.fft.fftfreq(size, pixel)))
  nps = np.asarray(scanner.nps_shape(jnp.asarray(f), peak), np.float64)
  want = sigma**2 * size * size * nps / nps.mean()
  for columns in (slice(0, 1), slice(size // 2, size // 2 + 1), slice(1, size // 2)):
    assert power[:, columns].sum() == pytest.approx(want[:, columns].sum(), rel=0.05), columns
  hot = want > 0.2 * want.max()
  assert np.median(power[hot] / want[hot]) == pytest.approx(1.0, abs=0.05)


def test_vendor_nps_differ_in_the_profiles_direction_and_not_at_strength_zero():
  """NPS measured on the full pipeline: two noise draws of one subject differ by noise only.
  GE (STANDARD, ASiR-V 40 %) against Canon (FC26, AIDR 3D): the image's NPS peak is the
  kernel's lowered by the iterative reconstruction, its level the FBP noise less what
  the reconstruction removes."""
  subject = phantom.draw_subject(jax.random.key(3), 50, True)
  g = geo.axial_series(250.0, 256, 5.0, -5.0, 5.0)   # ~1 mm pixels: Nyquist 0.5 / mm
  peaks = {}
  for strength in (1.0, 0.0):
    for name in ("GE", "Canon"):
      profile = vendors.resolve(name, strength=strength)
      a = scanner.acquire(jax.random.key(10), subject, g, profile, ssp_samples=1).hu
      b = scanner.acquire(jax.random.key(11), subject, g, profile, ssp_samples=1).hu
      roi = (a - b)[:, 80:176, 80:176] / math.sqrt(2)
      f, power = radial_nps(roi, g.pixel_mm, bins=16)
      peaks[strength, name] = (np.sum(f * power) / np.sum(power), power, roi.std())
  ge, canon = (vendors.PROFILES[v].physics for v in ("GE", "Canon"))
  assert float(scanner.nps_peak(ge)) > float(scanner.nps_peak(canon)) + 0.04
  assert float(scanner.noise_sigma(ge, 5.0, 1.0)) > float(scanner.noise_sigma(canon, 5.0, 1.0))
  assert peaks[1.0, "GE"][0] > peaks[1.0, "Canon"][0] + 0.02   # GE's texture is finer
  assert peaks[1.0, "GE"][2] > peaks[1.0, "Canon"][2]           # and its noise higher
  np.testing.assert_array_equal(peaks[0.0, "GE"][1], peaks[0.0, "Canon"][1])


@pytest.mark.parametrize("name", sorted(vendors.PROFILES))
def test_iterative_reconstruction_lowers_noise_and_its_nps_peak(name):
  """Against the same scanner reconstructing with FBP (no noise removed, no shift):
  the std falls by ir_noise_reduction and the measured NPS centroid by about
  ir_nps_shift (the NPS shape is scaled in frequency, so its centroid moves with it)."""
  subject = phantom.draw_subject(jax.random.key(3), 50, True)
  g = geo.axial_series(250.0, 256, 5.0, -5.0, 5.0)
  iterative = vendors.PROFILES[name]
  fbp = dataclasses.replace(iterative, physics=iterative.physics._replace(
      ir_noise_reduction=0.0, ir_nps_shift=0.0))
  measured = {}
  for label, profile in (("ir", iterative), ("fbp", fbp)):
    a = scanner.acquire(jax.random.key(10), subject, g, profile, ssp_samples=1).hu
    b = scanner.acquire(jax.random.key(11), subject, g, profile, ssp_samples=1).hu
    roi = (a - b)[:, 80:176, 80:176] / math.sqrt(2)
    f, power = radial_nps(roi, g.pixel_mm, bins=16)
    measured[label] = (np.sum(f * power) / np.sum(power), roi.std())
  physics = iterative.physics
  assert measured["ir"][1] / measured["fbp"][1] == pytest.approx(
      1 - physics.ir_noise_reduction, abs=0.03)
  assert measured["ir"][0] / measured["fbp"][0] == pytest.approx(
      1 - physics.ir_nps_shift, abs=0.05)


def test_every_profile_names_its_iterative_reconstruction_in_its_dicom():
  """The strength as the vendor's export carries it: Siemens as the second value of
  ConvolutionKernel, the others in the series description."""
  for name, profile in vendors.PROFILES.items():
    assert profile.iterative, name
    written = "\\".join(profile.kernel) + " " + profile.description_5mm
    strength = profile.iterative.split()[-1]
    assert strength in written, (name, written)
  assert vendors.PROFILES["Siemens"].kernel == ("J40s", "3")
  assert vendors.with_kernel(vendors.PROFILES["Siemens"], "H31s", 1.0).kernel == ("H31s", "3")


def test_strength_zero_gives_identical_physics_and_images():
  subject = phantom.draw_subject(jax.random.key(4), 70, False)
  g = geo.axial_series(250.0, 32, 5.0, 0.0, 10.0)
  images = [scanner.acquire(jax.random.key(0), subject, g,
                            vendors.resolve(v, strength=0.0), ssp_samples=3).hu
            for v in vendors.PROFILES]
  for other in images[1:]:
    np.testing.assert_array_equal(images[0], other)
  assert len({vendors.resolve(v, strength=0.0).physics for v in vendors.PROFILES}) == 1


def test_noise_scales_with_thickness_and_dose():
  physics = vendors.PROFILES["GE"].physics
  routine = physics.noise_hu * (1 - physics.ir_noise_reduction)
  assert float(scanner.noise_sigma(physics, 1.25, 1.0)) == pytest.approx(2 * routine)
  assert float(scanner.noise_sigma(physics, 5.0, 4.0)) == pytest.approx(routine / 2)


def test_calibration_keeps_air_and_moves_water_and_bone():
  physics = vendors.PROFILES["GE"].physics._replace(cupping_hu=0.0)
  hu = jnp.array([-1000.0, 0.0, 1100.0])
  out = np.asarray(scanner.calibrate(hu, jnp.zeros((3, 2)), physics))
  assert out[0] == pytest.approx(-1000.0)
  assert out[1] == pytest.approx(physics.water_offset_hu)
  assert out[2] == pytest.approx(1100 + 1000 * (physics.bone_scale - 1)
                                 + physics.water_offset_hu, rel=1e-6)


@pytest.mark.parametrize("name", sorted(vendors.PROFILES))
def test_tissue_calibration_moves_grey_and_white_matter_by_their_offsets(name):
  physics = vendors.PROFILES[name].physics._replace(cupping_hu=0.0)
  white, grey = scanner.TISSUE_KNOTS_HU[1:3]
  hu = jnp.array([white, grey, 0.5 * (white + grey), 7.0, 150.0])
  out = np.asarray(scanner.calibrate(hu, jnp.zeros((5, 2)), physics)) - np.asarray(hu)
  water = physics.water_offset_hu
  assert out[0] == pytest.approx(water + physics.white_offset_hu, abs=1e-4)
  assert out[1] == pytest.approx(water + physics.grey_offset_hu, abs=1e-4)
  assert out[2] == pytest.approx(water + 0.5 * (physics.white_offset_hu
                                                + physics.grey_offset_hu), abs=1e-4)
  assert out[3] == pytest.approx(water + physics.white_offset_hu * 7 / white, abs=1e-4)
  assert out[4] == pytest.approx(water + 50 * (physics.bone_scale - 1), abs=1e-3)


@pytest.mark.parametrize("name", sorted(vendors.PROFILES))
def test_store_round_trips_within_quantisation_and_pads_outside(name):
  profile = vendors.PROFILES[name]
  rng = np.random.default_rng(0)
  hu = rng.uniform(-1000, 2000, (2, 16, 16)).astype(np.float32)
  stored = scanner.store(hu, profile)
  field = scanner.in_field(16, profile.field_fraction)
  back = scanner.stored_to_hu(stored, profile)
  assert np.abs(back - hu)[:, field].max() <= 0.5 * profile.rescale_slope + 1e-3
  assert (stored[:, ~field] == profile.outside_stored).all()
  assert stored.dtype == (np.int16 if profile.pixel_representation else np.uint16)


def test_unsigned_storage_clips_below_the_intercept():
  profile = vendors.PROFILES["Siemens"]
  stored = scanner.store(np.full((1, 4, 4), -1500.0, np.float32), profile)
  assert stored.min() == 0


def test_tilted_geometry_is_contiguous_along_its_normal():
  g = geo.axial_series(250.0, 16, 5.0, 0.0, 50.0, tilt_deg=15.0)
  steps = np.diff(g.positions, axis=0)
  np.testing.assert_allclose(steps @ g.normal, 5.0, rtol=1e-9)
  np.testing.assert_allclose(steps[:, :2], 0.0)      # the table moves along z only
  assert abs(g.normal @ np.array([0.0, 0.0, 1.0])) == pytest.approx(math.cos(
      math.radians(15.0)))


def test_ssp_weights_have_the_requested_fwhm():
  offsets, weights = sampling.ssp_offsets(5.0, 1.0, 5)   # samples at 0, +-2.5, +-5 mm
  np.testing.assert_allclose(offsets, [-5, -2.5, 0, 2.5, 5])
  assert weights.sum() == pytest.approx(1.0)
  assert weights[1] / weights[2] == pytest.approx(0.5)    # half maximum at FWHM / 2
  assert weights[0] / weights[2] == pytest.approx(2.0**-4)


def test_acquire_rejects_bad_dose():
  subject = phantom.draw_subject(jax.random.key(0), 40, False)
  with pytest.raises(ValueError, match="dose"):
    scanner.acquire(keys.root(0), subject, geo.axial_series(250.0, 16, 5.0, 0, 5),
                    vendors.PROFILES["GE"], dose=0.0)


def test_plane_stack_integration_matches_direct_ssp_sampling():
  """The shared plane stack and per-slice sub-plane sampling are two quadratures of
  the same SSP integral: they agree closely, and masks and noise are identical."""
  subject = phantom.draw_subject(jax.random.key(5), 45, True)
  g = geo.axial_series(250.0, 48, 5.0, -20.0, 0.0)
  profile = vendors.PROFILES["GE"]
  z = -20.0 + 0.625 * np.arange(-9, 42)
  stack = sampling.render_planes(subject, g, z)
  fine = scanner.acquire(jax.random.key(0), subject, g, profile, ssp_samples=17)
  stacked = scanner.acquire(jax.random.key(0), subject, g, profile, stack=stack)
  np.testing.assert_array_equal(fine.brain, stacked.brain)
  diff = np.abs(fine.truth - stacked.truth)
  assert np.median(diff) < 1.0 and diff.mean() < 10.0
  noise_fine = fine.hu - np.asarray(scanner.blur(fine.truth, g.pixel_mm, 0.38))
  noise_stacked = stacked.hu - np.asarray(scanner.blur(stacked.truth, g.pixel_mm, 0.38))
  assert np.abs(noise_fine - noise_stacked).mean() < 2.0


@flax.struct.dataclass
class _Waves:
  """A smooth anatomy varying along y and z (a tilted slab's normal sees both)."""
  wavelength_mm: jax.Array

  def hu_and_brain(self, points):
    phase = 2 * jnp.pi / self.wavelength_mm
    hu = 500.0 * jnp.sin(phase * points[..., 1]) + 300.0 * jnp.cos(phase * points[..., 2])
    return hu, hu > 0


def test_tilted_plane_stack_integrates_along_the_gantry_normal(monkeypatch):
  """A tilted series from its table-stepped plane stack equals sub-planes sampled
  along its own normal (the same quadrature nodes: +-2.5 and +-5 mm), once each
  plane is read back along the columns; without that shift it would not."""
  subject = _Waves(jnp.float32(30.0))
  g = geo.axial_series(32.0, 64, 5.0, 0.0, 30.0, tilt_deg=25.0)   # 0.5 mm pixels
  step = 2.5 / math.cos(math.radians(25.0))
  stack = sampling.render_planes(subject, g, g.positions[0, 2] + step * np.arange(-3, 20))
  offsets, weights = sampling.ssp_offsets(5.0, 1.0, 5)
  direct, brain = sampling.sample_series(subject, None, g, offsets, weights)
  stacked, stacked_brain = sampling.integrate_planes(stack, g, 1.0)
  np.testing.assert_array_equal(stacked_brain, brain)
  inner = slice(5, -5)  # rows read from within the plane (5 mm x tan 25 deg < 5 rows)
  error = np.abs(stacked - direct)[:, inner]
  assert error.max() < 1.0                                         # HU, of +-800
  monkeypatch.setattr(sampling, "_rows_from", lambda image, shift: image)
  sheared, _ = sampling.integrate_planes(stack, g, 1.0)
  assert np.abs(sheared - direct)[:, inner].max() > 10 * error.max()


def test_painted_lesion_carries_the_scanner_and_absent_lesion_changes_nothing():
  from scanbias_jax.synth import lesion as anatomy
  subject = phantom.draw_subject(jax.random.key(6), 50, False)
  lesion = anatomy.no_lesion().replace(
      centre_mm=jnp.array([20.0, 10.0, 20.0]), radius_mm=jnp.float32(15.0),
      mean_hu=jnp.float32(50.0), std_hu=jnp.float32(2.0), seed=jnp.uint32(7),
      present=jnp.asarray(True))
  g = geo.axial_series(250.0, 64, 5.0, 15.0, 25.0)
  profile = vendors.PROFILES["Siemens"]
  plain = scanner.acquire(jax.random.key(0), subject, g, profile, ssp_samples=3)
  absent = scanner.acquire(jax.random.key(0), subject, g, profile, ssp_samples=3,
                           lesion=anatomy.no_lesion())
  painted = scanner.acquire(jax.random.key(0), subject, g, profile, ssp_samples=3,
                            lesion=lesion)
  np.testing.assert_array_equal(plain.hu, absent.hu)
  points = geo.pixel_points(g)
  core = np.linalg.norm(points - np.array([20.0, 10.0, 20.0]), axis=-1) < 8.0
  assert abs(painted.truth[core].mean() - 50.0) < 1.0
  # In the image the lesion core sits at the lesion HU plus the vendor's water
  # offset and cupping, with the vendor's noise on top.
  assert abs(painted.hu[core].mean() - 50.0) < 4.0
  assert (painted.hu != plain.hu).any() and (painted.brain == plain.brain).all()
