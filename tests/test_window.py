"""Window/level functions against hand-computed values at the edges."""
import jax
import numpy as np
import pytest

from scanbias_jax.preprocess import window


def test_original_window_level_40_width_400_to_minus_one_one():
  # [40 - 200, 40 + 200] = [-160, 240] HU -> [-1, 1].
  hu = np.array([-1000.0, -160.0, -60.0, 40.0, 140.0, 240.0, 3000.0])
  expected = np.array([-1.0, -1.0, -0.5, 0.0, 0.5, 1.0, 1.0])
  np.testing.assert_allclose(window.original_window(hu), expected, atol=1e-6)


def test_spheres_window_level_50_width_100_to_zero_one():
  # [0, 100] HU -> [0, 1]; the sphere's 50 HU sits at 0.5, 40 HU at 0.4.
  hu = np.array([-5.0, 0.0, 25.0, 40.0, 50.0, 100.0, 101.0])
  expected = np.array([0.0, 0.0, 0.25, 0.4, 0.5, 1.0, 1.0])
  np.testing.assert_allclose(window.spheres_window(hu), expected, atol=1e-6)


def test_window_is_jittable_keeps_shape_and_rejects_bad_width():
  hu = np.arange(-200, 300, dtype=np.int16).reshape(10, 50)
  out = jax.jit(window.original_window)(hu)
  assert out.shape == hu.shape and out.dtype == np.float32
  assert float(out.min()) == -1.0 and float(out.max()) == 1.0
  with pytest.raises(ValueError):
    window.window(hu, 40.0, 0.0)


def test_numpy_in_numpy_out_agrees_with_the_jax_path():
  hu = np.arange(-300, 300, 5, dtype=np.int16).reshape(4, -1)
  host = window.spheres_window(hu)
  assert isinstance(host, np.ndarray) and host.dtype == np.float32
  np.testing.assert_allclose(host, np.asarray(jax.jit(window.spheres_window)(hu)), atol=1e-6)
