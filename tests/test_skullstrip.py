"""Skull stripping: synthetic shapes, and Dice against the phantom's true brain mask."""
import jax
import numpy as np
from scipy import ndimage
import pytest

from scanbias_jax import keys
from scanbias_jax.evaluate import metrics
from scanbias_jax.preprocess import skullstrip
from scanbias_jax.synth import geometry as geo
from scanbias_jax.synth import phantom, scanner, vendors

DICE_AIM = 0.95
MATRIX, FOV = 128, 250.0  # ~2 mm pixels keep the test fast; the paper grid is ~1 mm


def shell_phantom(gap_px=0, shape=(64, 64, 12), spacing=(2.0, 2.0, 5.0)):
  """An ellipsoidal 'brain' (30 HU) in a 6 mm 'skull' (1500 HU) in 'scalp' (40 HU)."""
  grid = np.stack(np.meshgrid(*[(np.arange(n) - (n - 1) / 2) * s
                                for n, s in zip(shape, spacing)], indexing="ij"), -1)
  r = np.sqrt(((grid / np.array([50.0, 56.0, 40.0])) ** 2).sum(-1))
  hu = np.full(shape, -1000.0, np.float32)
  hu[r < 1.25] = 40.0
  hu[r < 1.12] = 1500.0
  brain = r < 1.0
  hu[brain] = 30.0
  if gap_px:  # a hole through the skull on one side, like a foramen
    c = shape[1] // 2
    hu[:shape[0] // 2, c - gap_px // 2:c + (gap_px + 1) // 2, :][
        hu[:shape[0] // 2, c - gap_px // 2:c + (gap_px + 1) // 2, :] > 1000] = 40.0
  return hu, brain, spacing


@pytest.mark.parametrize("gap_px", [0, 3])
def test_shell_phantom_interior_found_despite_skull_gap(gap_px):
  hu, brain, spacing = shell_phantom(gap_px)
  mask = skullstrip.brain_mask(hu, spacing)
  assert metrics.dice_volume(mask, brain) > 0.97
  assert not (mask & (hu > 1000)).any()        # never bone
  assert not mask[:, :, 0].any() or brain[:, :, 0].any()


def test_wide_gap_in_a_few_slices_is_bridged_by_the_hull():
  """Bone lost over 24 mm in three slices (more than the 3D closing bridges)."""
  hu, brain, spacing = shell_phantom()
  gap = hu[:, 26:38, 4:7]
  gap[gap > 1000] = 20.0
  mask = skullstrip.brain_mask(hu, spacing)
  for k in (4, 5, 6):
    assert metrics.dice_volume(mask[..., k], brain[..., k]) > 0.95
  assert metrics.dice_volume(mask, brain) > 0.97


def test_helpers():
  assert np.isnan(metrics.dice_volume(np.zeros(3, bool), np.zeros(3, bool)))  # undefined
  assert metrics.dice_volume([1, 1, 0, 0], [1, 0, 1, 0]) == pytest.approx(0.5)
  two = np.zeros((10, 10, 3), bool)
  two[1:3, 1:3] = True
  two[5:9, 5:9] = True
  assert skullstrip.largest_component(two).sum() == 4 * 4 * 3
  disk = skullstrip.disk(4.0, (1.0, 2.0, 5.0))
  assert disk.shape == (9, 5, 1) and disk[4, 2, 0] and not disk[0, 0, 0]
  assert not skullstrip.brain_mask(np.full((16, 16, 4), -1000.0), (2.0, 2.0, 5.0)).any()
  square = np.zeros((8, 8), bool)
  square[[1, 1, 6, 6], [1, 6, 1, 6]] = True
  assert skullstrip.convex_fill(square).sum() == 36


@pytest.fixture(scope="module")
def acquired():
  """One subject per vendor, 5 mm slices, 128 x 128: (hu, truth) as [i, j, k] arrays."""
  out = {}
  for index, name in enumerate(("GE", "Siemens")):
    subject = phantom.draw_subject(keys.item(jax.random.key(7), index), 40 + 25 * index,
                                   index == 0)
    z_lo, z_hi = (float(z) for z in phantom.scan_range_mm(subject))
    geometry = geo.axial_series(FOV, MATRIX, 5.0, z_lo, z_hi)
    series = scanner.acquire(keys.item(jax.random.key(8), index), subject, geometry,
                             vendors.resolve(name))
    out[name] = (np.transpose(series.hu, (2, 1, 0)), np.transpose(series.brain, (2, 1, 0)))
  return out


@pytest.mark.parametrize("vendor", ["GE", "Siemens"])
def test_dice_against_phantom_truth_meets_aim(acquired, vendor):
  hu, truth = acquired[vendor]
  mask = skullstrip.brain_mask(hu, (FOV / MATRIX, FOV / MATRIX, 5.0))
  assert metrics.dice_volume(mask, truth) >= DICE_AIM
  assert (mask & ~truth).sum() < 0.02 * truth.sum()   # little outside the cavity


@pytest.mark.parametrize("radius, spacing", [(8.0, (0.98, 0.98, 5.0)), (4.0, (1.0, 2.0, 2.5)),
                                             (3.0, (1.5, 1.5, 1.25))])
def test_distance_morphology_matches_structuring_elements(radius, spacing):
  """dilate / erode / close through the distance transform give scipy's voxels with
  the disk / ball element, borders included."""
  rng = np.random.default_rng(int(radius))
  noise = ndimage.binary_opening(rng.random((40, 36, 9)) > 0.55)
  noise[:3] = True                                 # the border matters for erosion
  blob = np.zeros((60, 56, 12), bool)              # a head in air: the bounding-box path
  blob[14:40, 30:56, 2:9] = ndimage.binary_opening(rng.random((26, 26, 7)) > 0.3)
  cases = [(mask, in_plane, element) for mask in (noise, blob)
           for in_plane, element in ((True, skullstrip.disk(radius, spacing)),
                                     (False, skullstrip.ball(radius, spacing)))]
  for mask, in_plane, element in cases:
    np.testing.assert_array_equal(skullstrip.dilate(mask, radius, spacing, in_plane),
                                  ndimage.binary_dilation(mask, element))
    np.testing.assert_array_equal(skullstrip.erode(mask, radius, spacing, in_plane),
                                  ndimage.binary_erosion(mask, element))
    width = [s // 2 + 1 for s in element.shape]
    padded = np.pad(mask, [(w, w) for w in width])
    reference = ndimage.binary_closing(padded, element)[tuple(slice(w, -w) for w in width)]
    np.testing.assert_array_equal(skullstrip.close(mask, radius, spacing, in_plane), reference)
  empty = np.zeros((5, 5, 3), bool)
  assert not skullstrip.dilate(empty, radius, spacing).any()
  assert not skullstrip.close(empty, radius, spacing).any()


def test_depth_on_the_bounding_box_matches_the_whole_array_transform():
  rng = np.random.default_rng(5)
  mask = ndimage.binary_opening(rng.random((30, 26, 9)) > 0.35)
  mask[0, 5:9, 4] = True   # touching the array border: outside counts as background
  spacing = (0.9, 1.1, 5.0)
  whole = ndimage.distance_transform_edt(np.pad(mask, 1), sampling=spacing)[1:-1, 1:-1, 1:-1]
  np.testing.assert_allclose(skullstrip.depth_mm(mask, spacing), whole, rtol=0, atol=1e-5)
  assert not skullstrip.depth_mm(np.zeros((4, 4, 4), bool), spacing).any()


@pytest.mark.parametrize("shape", [(40, 50, 7), (64, 64, 12), (1, 5, 3), (30, 30, 1)])
def test_fill_holes_matches_scipy_whole_and_slice_by_slice(shape):
  rng = np.random.default_rng(sum(shape))
  for density in (0.3, 0.5, 0.7):  # sparse: few holes; dense: holes in holes' islands
    mask = ndimage.binary_opening(rng.random(shape) < density) | (rng.random(shape) < 0.05)
    np.testing.assert_array_equal(skullstrip.fill_holes(mask), ndimage.binary_fill_holes(mask))
    by_slice = np.stack([ndimage.binary_fill_holes(mask[..., k]) for k in range(shape[2])], -1)
    np.testing.assert_array_equal(skullstrip.fill_holes(mask, in_plane=True), by_slice)
  ring = np.zeros((9, 9, 3), bool)
  ring[2:7, 2:7, 1] = True
  ring[3:6, 3:6, 1] = False  # a hole in the middle slice only
  assert skullstrip.fill_holes(ring, in_plane=True)[4, 4, 1]
  assert skullstrip.fill_holes(ring)[4, 4, 1] == ndimage.binary_fill_holes(ring)[4, 4, 1]
