"""The atlas head's sampling pieces against independent implementations."""
import jax.numpy as jnp
import numpy as np
from scipy import ndimage

from scanbias_jax.synth import atlas_head


def test_cosine_matches_numpy_over_the_warp_phases():
  # Warp phases stay within +-30 rad (k <= 2 pi / 60 per mm, |q| <= 200 mm, phase < 2 pi).
  x = np.linspace(-100.0, 100.0, 400_001, dtype=np.float32)
  got = np.asarray(atlas_head.cos(jnp.asarray(x)), np.float64)
  assert np.abs(got - np.cos(x.astype(np.float64))).max() < 6e-6


def test_trilinear_matches_scipy_map_coordinates():
  rng = np.random.default_rng(0)
  shape = (7, 9, 11)  # (z, y, x)
  volumes = [rng.normal(size=shape).astype(np.float32) for _ in range(3)]
  xyz = [rng.uniform(0.0, n - 1.01, 500).astype(np.float32) for n in shape[::-1]]
  got = atlas_head.trilinear(tuple(jnp.asarray(v.ravel()) for v in volumes), shape,
                             [jnp.asarray(c) for c in xyz])
  for volume, values in zip(volumes, got):
    want = ndimage.map_coordinates(volume.astype(np.float64), [xyz[2], xyz[1], xyz[0]],
                                   order=1)
    np.testing.assert_allclose(np.asarray(values), want, atol=1e-5)


def test_distance_transform_in_a_box_equals_scipys_over_the_whole_volume():
  """atlas._edt_about: the same distances as scipy over the whole volume wherever they
  are within the margin, for distances to a set and for depths inside one."""
  from scanbias_jax.synth import atlas  # pylint: disable=g-import-not-at-top
  rng = np.random.default_rng(0)
  blob = np.zeros((40, 36, 30), bool)
  blob[12:25, 10:22, 8:20] = rng.random((13, 12, 12)) > 0.3
  to_blob = atlas._edt_about(~blob, blob, 5, np.inf)
  full = ndimage.distance_transform_edt(~blob)
  np.testing.assert_array_equal(to_blob[full <= 5], full[full <= 5])
  assert (to_blob[full > 5] > 5).all()
  depth = atlas._edt_about(blob, blob, 1, 0.0)
  np.testing.assert_array_equal(depth, ndimage.distance_transform_edt(blob))
