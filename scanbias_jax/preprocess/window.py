"""Window/level: HU -> network input range, clipped (pure, jittable, any array shape).

Paper 3.3.1: "mapped from a window/level of 40/400 respectively to [-1, 1]". Read
literally, window 40 and level 400 would show bone only and hide the brain, which
contradicts the paper's "broad window-level" for whole-image patterns (Fig. 3). We
read it as level 40 HU, width 400 HU (the standard head "subdural"/soft-tissue
window): [-160, 240] HU -> [-1, 1]. Paper 3.3.2: "window and level of 100 and 50":
width 100, level 50: [0, 100] HU -> [0, 1] (the brain window).
"""
import jax.numpy as jnp
import numpy as np

ORIGINAL = (40.0, 400.0)  # (level, width) for Name the Manufacturer
SPHERES = (50.0, 100.0)   # (level, width) for Spheres and Skull


def window(hu, level: float, width: float, out_lo: float = 0.0, out_hi: float = 1.0):
  """Maps [level - width/2, level + width/2] HU linearly onto [out_lo, out_hi], clipped."""
  if width <= 0:
    raise ValueError(f"window width must be positive, got {width}")
  # numpy in, numpy out: eager jnp ops would compile a program for every shape.
  xp = np if isinstance(hu, np.ndarray) else jnp
  unit = (xp.asarray(hu, xp.float32) - (level - width / 2.0)) / width
  return out_lo + (out_hi - out_lo) * xp.clip(unit, 0.0, 1.0)


def original_window(hu, level: float = ORIGINAL[0], width: float = ORIGINAL[1]):
  """Name the Manufacturer input: level 40 / width 400 -> [-1, 1]."""
  return window(hu, level, width, -1.0, 1.0)


def spheres_window(hu, level: float = SPHERES[0], width: float = SPHERES[1]):
  """Spheres (and Skull) input: level 50 / width 100 -> [0, 1]."""
  return window(hu, level, width, 0.0, 1.0)
