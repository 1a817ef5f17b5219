"""Paper-grid resampling (preprocess/resample.py): values, geometry, slice choice."""
import ml_collections
import numpy as np
import pytest

from scanbias_jax.dicom import volume as volume_lib
from scanbias_jax.preprocess import resample


def _grid(in_plane=16, n_slices=6):
  return ml_collections.ConfigDict(dict(in_plane=in_plane, n_slices=n_slices, slice_mm=5.0,
                                        slice_tolerance_mm=0.25, brain_hu=(0.0, 80.0)))


def _world(affine, ijk):
  return affine[:3, :3] @ np.asarray(ijk, float) + affine[:3, 3]


def _volume(shape, slice_mm, pixel_mm=2.0):
  affine = np.diag([pixel_mm, pixel_mm, slice_mm, 1.0])
  affine[:3, 3] = [-100.0, -80.0, 10.0]
  hu = np.arange(np.prod(shape), dtype=np.float32).reshape(shape) % 97 - 40
  return volume_lib.Volume(hu, affine)


def test_thin_slices_interpolated_to_5mm():
  vol = _volume((8, 8, 9), 2.5)
  hu, affine = resample.resample_slices(vol.hu, vol.affine, 5.0)
  assert hu.shape[2] == 5
  np.testing.assert_array_equal(hu, vol.hu[..., ::2])
  hu, affine = resample.resample_slices(vol.hu, vol.affine, 3.75)  # 1.5 slices apart
  np.testing.assert_allclose(hu[..., 1], (vol.hu[..., 1] + vol.hu[..., 2]) / 2, rtol=1e-6)
  np.testing.assert_allclose(_world(affine, [0, 0, 2]), _world(vol.affine, [0, 0, 3]))


def test_in_plane_keeps_field_of_view_and_centre():
  vol = _volume((32, 24, 3), 5.0)
  hu, affine = resample.resample_in_plane(vol.hu, vol.affine, (16, 16))
  assert hu.shape == (16, 16, 3)
  np.testing.assert_allclose(np.diag(affine)[:3], [4.0, 3.0, 5.0])
  centre_old = _world(vol.affine, [(32 - 1) / 2, (24 - 1) / 2, 1])
  np.testing.assert_allclose(_world(affine, [7.5, 7.5, 1]), centre_old)
  # Halving: each new pixel is the mean of the two old pixels it covers (on axis 0).
  np.testing.assert_allclose(hu[3, :, 0].mean(), vol.hu[6:8, :, 0].mean(), rtol=0.05)


def test_paper_grid_window_covers_the_brain():
  shape = (16, 16, 40)
  hu = np.full(shape, -1000.0, np.float32)
  hu[4:12, 4:12, 20:26] = 30.0  # "brain" in slices 20..25
  vol = volume_lib.Volume(hu, np.diag([2.0, 2.0, 5.0, 1.0]))
  out = resample.to_paper_grid(vol, _grid(16, 10), -1024.0)
  assert out.hu.shape == (16, 16, 10)
  brain_slices = np.flatnonzero((out.hu == 30).any(axis=(0, 1)))
  assert len(brain_slices) == 6 and 1 <= brain_slices[0] <= 3
  start = round(out.affine[2, 3] / 5.0)
  np.testing.assert_array_equal(out.hu, hu[..., start:start + 10])


def test_short_volume_padded_with_air_symmetrically():
  vol = _volume((16, 16, 3), 5.0)
  out = resample.to_paper_grid(vol, _grid(16, 6), -1024.0)
  assert out.hu.shape == (16, 16, 6)
  np.testing.assert_array_equal(out.hu[..., 1:4], vol.hu)
  assert np.all(out.hu[..., 0] == -1024) and np.all(out.hu[..., 4:] == -1024)
  np.testing.assert_allclose(_world(out.affine, [0, 0, 1]), _world(vol.affine, [0, 0, 0]))
  assert "3 air slice(s) added to reach 6" in out.notes


@pytest.mark.parametrize("spacing", [2.5, 1.25, 5.0])
def test_paper_grid_shape_and_spacing(spacing):
  vol = _volume((20, 20, int(round(200 / spacing))), spacing, pixel_mm=10.0)
  out = resample.to_paper_grid(vol, _grid(16, 35), -1024.0)
  assert out.hu.shape == (16, 16, 35)
  np.testing.assert_allclose(np.linalg.norm(out.affine[:3, :3], axis=0), [12.5, 12.5, 5.0])


def test_average_weights_by_hand():
  weights = resample.average_weights(5, 2.0)    # 2.5 mm slices -> 5 mm slabs
  np.testing.assert_allclose(weights, [[2 / 3, 1 / 3, 0, 0, 0],
                                       [0, 0.25, 0.5, 0.25, 0],
                                       [0, 0, 0, 1 / 3, 2 / 3]], atol=1e-7)
  np.testing.assert_allclose(resample.average_weights(9, 4.0).sum(axis=1), 1.0, rtol=1e-6)


def test_slab_average_keeps_geometry_and_gives_thick_slice_noise():
  """A 5 mm slab of 2.5 mm slices of white noise: weights (1/4, 1/2, 1/4), SD x sqrt(3/8);
  constants stay, and slice centres sit where linear resampling puts them."""
  rng = np.random.default_rng(0)
  vol = _volume((64, 64, 41), 2.5)
  noise = rng.normal(0.0, 10.0, vol.hu.shape).astype(np.float32) + 40.0
  hu, affine = resample.average_slices(noise, vol.affine, 5.0)
  _, linear_affine = resample.resample_slices(noise, vol.affine, 5.0)
  np.testing.assert_array_equal(affine, linear_affine)
  assert hu.shape == (64, 64, 21)
  assert hu[..., 1:-1].std() == pytest.approx(10.0 * np.sqrt(3 / 8), rel=0.03)
  assert hu.mean() == pytest.approx(40.0, abs=0.1)
  constant, _ = resample.average_slices(np.full((4, 4, 9), 7.0, np.float32), vol.affine, 5.0)
  np.testing.assert_allclose(constant, 7.0, rtol=1e-6)


def test_paper_grid_names_its_slice_resampling():
  vol = _volume((16, 16, 40), 2.5)
  grid = _grid(16, 6)
  grid.slice_resampling = "average"
  assert "slices 2.5 -> 5 mm (average)" in resample.to_paper_grid(vol, grid, -1024.0).notes
  grid.slice_resampling = "cubic"
  with pytest.raises(ValueError, match="slice_resampling"):
    resample.to_paper_grid(vol, grid, -1024.0)
