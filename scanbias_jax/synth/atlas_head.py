"""One subject's head: the atlas reference head warped, scaled, posed and aged.

A subject is a point map from patient LPS mm into the reference head
(`atlas.reference`): rotation, per-axis scale and placement, plus a smooth random
displacement (a few long plane waves, a few mm) so that no two subjects share a
brain shape, and an atrophy level from age (tissue next to CSF turns to CSF:
wider sulci and ventricles). Sampling is trilinear on the 1 mm reference, in
JAX; the same (subject, points) -> (hu, brain) signature as `phantom.head_hu`.
"""
import math

import flax.struct
import jax
import jax.numpy as jnp
import numpy as np

from scanbias_jax import keys
from scanbias_jax.synth import atlas, phantom

N_WARP = 4
WARP_MM = 3.0          # amplitude of each displacement wave
MEAN_SCALE = 0.91      # the MNI152 head is ~10 % larger than an average adult's
FOV_RADIUS = phantom.FOV_RADIUS


@flax.struct.dataclass
class AtlasSubject:
  channels: tuple          # the reference head's channels, each flattened [z * y * x]
  origin: jax.Array        # [3] LPS mm of reference voxel 0
  ref_centre: jax.Array    # [3] reference head frame origin (LPS mm)
  centre: jax.Array        # [3] patient LPS mm of the head frame origin
  rotation: jax.Array      # [3, 3] head frame -> patient axes
  angles_deg: jax.Array
  scale: jax.Array         # [3]
  age: jax.Array
  female: jax.Array
  atrophy: jax.Array       # 0 young .. ~1 old
  warp_k: jax.Array        # [N_WARP, 3] rad/mm
  warp_phase: jax.Array    # [N_WARP]
  warp_amp: jax.Array      # [N_WARP, 3] mm
  z_range: jax.Array       # [2] reference cavity z extent (head frame mm)
  top_mm: jax.Array        # reference head top (head frame mm)
  shape: tuple = flax.struct.field(pytree_node=False, default=(0, 0, 0))  # (z, y, x)

  def hu_and_brain(self, points_mm):
    return head_hu(self, points_mm)

  def scan_range(self):
    return scan_range_mm(self)


def _reference_arrays():
  ref = atlas.reference()
  cavity = ref.volume[..., 2] > 0.5
  head = ref.volume[..., 0] > -500
  z_axis = ref.origin_lps[2] + np.arange(ref.volume.shape[0]) - ref.centre_lps[2]
  zc = z_axis[cavity.any(axis=(1, 2))]
  top = z_axis[head.any(axis=(1, 2))].max()
  return ref, np.array([zc.min(), zc.max()], np.float32), np.float32(top)


_CACHE = {}


def _device_reference():
  """The reference volume as one device array per process (shared by all subjects)."""
  if "ref" not in _CACHE:
    ref, z_range, top = _reference_arrays()
    channels = tuple(jnp.asarray(ref.volume[..., c].ravel()) for c in range(3))
    _CACHE["ref"] = (channels, ref.volume.shape[:3], jnp.asarray(ref.origin_lps, jnp.float32),
                     jnp.asarray(ref.centre_lps, jnp.float32), jnp.asarray(z_range),
                     jnp.asarray(top))
  return _CACHE["ref"]


@jax.jit
def _draw(key, age_years, female):
  age = jnp.asarray(age_years, jnp.float32)
  female = jnp.asarray(female, jnp.float32)
  n = jax.random.normal(keys.stream(key, "shape"), (12,))
  direction = jax.random.normal(keys.stream(key, "warp"), (N_WARP, 3))
  u = jax.random.uniform(keys.stream(key, "wave"), (N_WARP, 2))
  amp = WARP_MM * jax.random.normal(keys.stream(key, "amplitude"), (N_WARP, 3))
  k = direction / jnp.linalg.norm(direction, axis=-1, keepdims=True)
  k *= (2 * jnp.pi / (60. + 80. * u[:, 0]))[:, None]  # wavelengths 60-140 mm
  # Intracranial volume: women ~10-12 % smaller (linear 0.96); SD ~ 8 % in volume.
  size = MEAN_SCALE * (1. - 0.04 * female) * jnp.exp(0.027 * n[0])
  scale = jnp.clip(size * jnp.exp(0.025 * n[1:4]), 0.78, 1.0)
  yaw, roll = jnp.deg2rad(3.) * n[4], jnp.deg2rad(2.5) * n[5]
  pitch = jnp.deg2rad(10.) * jnp.tanh(0.5 * n[6])
  rotation = phantom.rotation_matrix(yaw, pitch, roll)
  offset = jnp.concatenate([5. * n[7:9], 5. * n[9:10]])
  # Atrophy from ~25 years on, with individual spread.
  atrophy = jnp.clip((age - 25.) / 60., 0., 1.2) * jnp.exp(0.3 * n[10])
  return dict(centre=offset, rotation=rotation,
              angles_deg=jnp.rad2deg(jnp.stack([yaw, pitch, roll])), scale=scale,
              age=age, female=female, atrophy=jnp.clip(atrophy, 0., 1.5),
              warp_k=k, warp_phase=2 * jnp.pi * u[:, 1], warp_amp=amp)


def draw_subject(key: jax.Array, age_years, female) -> AtlasSubject:
  """Draws one subject's pose, size, warp and atrophy; age and sex enter deterministically."""
  channels, shape, origin, ref_centre, z_range, top = _device_reference()
  return AtlasSubject(channels=channels, shape=tuple(int(n) for n in shape), origin=origin,
                      ref_centre=ref_centre,
                      z_range=z_range, top_mm=top, **_draw(key, age_years, female))


# Taylor coefficients of cos in y^2, highest first: (-1)^n / (2n)!, n = 7 .. 0.
_COS_TAYLOR = tuple((-1) ** n / math.factorial(2 * n) for n in range(7, -1, -1))


def cos(x):
  """cos(x) to ~4e-6 absolute (float32): reduced to [-pi, pi], then its Taylor
  polynomial to x^14 (remainder pi^16 / 16! = 4e-6). XLA:CPU's own cosine is not
  vectorised inside a fusion: on one core the four warp waves took 54 of the 72 ms
  that 8 x 256 x 256 points cost, ~4 ms with this (BUILD_NOTES, "Synthesizer")."""
  y = x - (2 * math.pi) * jnp.round(x * (1 / (2 * math.pi)))
  y2 = y * y
  out = _COS_TAYLOR[0]
  for c in _COS_TAYLOR[1:]:
    out = out * y2 + c
  return out


def to_reference(subject: AtlasSubject, points_mm) -> list:
  """Patient LPS mm -> fractional voxel indices (x, y, z) of the reference volume,
  as three arrays (its voxels are 1 mm: an index is mm from its origin)."""
  d = [points_mm[..., j] - subject.centre[j] for j in range(3)]
  # Written out elementwise: XLA:CPU runs these 3-long contractions poorly as dots.
  q = [sum(d[j] * subject.rotation[j, i] for j in range(3)) / subject.scale[i]
       for i in range(3)]
  out = [q[i] + (subject.ref_centre[i] - subject.origin[i]) for i in range(3)]
  for w in range(subject.warp_k.shape[0]):
    wave = cos(sum(q[j] * subject.warp_k[w, j] for j in range(3)) + subject.warp_phase[w])
    out = [out[i] + wave * subject.warp_amp[w, i] for i in range(3)]
  return out


def trilinear(channels, shape, xyz) -> list:
  """Flattened [z, y, x] volumes at fractional voxel indices (x, y, z) (three arrays),
  clamped to the volume (whose faces are air: `atlas.build` keeps a margin).

  One scalar gather per channel and corner, on separate index arrays: gathering rows
  of a [voxels, c] array and slicing channels afterwards runs 4x slower on XLA:CPU,
  stacking the indices costs a copy of every point, and packing the three channels in
  one 32-bit word (one gather a corner) ran 1.5x slower for the unpacking."""
  zyx = [jnp.clip(xyz[2 - a], 0.0, shape[a] - 1.001) for a in range(3)]
  lo = [jnp.floor(c) for c in zyx]
  frac = [c - f for c, f in zip(zyx, lo)]
  lo = [f.astype(jnp.int32) for f in lo]
  strides = (shape[1] * shape[2], shape[2], 1)
  base = lo[0] * strides[0] + lo[1] * strides[1] + lo[2]
  out = [0.] * len(channels)
  for corner in range(8):
    offset = [(corner >> (2 - a)) & 1 for a in range(3)]
    weight = 1.
    for a in range(3):
      weight = weight * (frac[a] if offset[a] else 1. - frac[a])
    at = base + sum(o * st for o, st in zip(offset, strides))
    out = [o + weight * c[at] for o, c in zip(out, channels)]
  return out


def head_hu(subject: AtlasSubject, points_mm) -> tuple[jax.Array, jax.Array]:
  """True HU and intracranial mask at patient LPS points [..., 3]."""
  p = jnp.asarray(points_mm, jnp.float32)
  hu, atrophy, cavity = trilinear(subject.channels, subject.shape, to_reference(subject, p))
  return hu + subject.atrophy * atrophy, cavity >= 0.5


@jax.jit
def scan_range_mm(subject: AtlasSubject):
  """(z_lo, z_hi): 10 mm below the cavity's lowest point to 2 mm above the head."""
  lo = jnp.array([0., 0., subject.z_range[0]])
  hi = jnp.array([0., 0., subject.top_mm])
  z_lo = (subject.rotation @ (lo * subject.scale) + subject.centre)[2]
  z_hi = (subject.rotation @ (hi * subject.scale) + subject.centre)[2]
  return z_lo - 10. - 4. * WARP_MM, z_hi + 2. + 2. * WARP_MM
