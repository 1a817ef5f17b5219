"""Spheres painted into the synthetic anatomy, before acquisition.

The paper inserts spheres into reconstructed images, so its spheres are sharp and
carry no scanner signature. For the synthetic cohort a sphere can instead be part
of the true attenuation: the scanner model then blurs it with the vendor's slice
profile and MTF and lays the vendor's noise over it, like a real lesion.
`with_lesion(lesion)` wraps `phantom.head_hu` into a function with the same
signature, (subject, points_mm) -> (hu, brain); the true-HU texture inside the
sphere is N(mean, std) per `cell_mm` cube (a hash of the cell, so any point set
samples one consistent field), which the slice profile then averages.
"""
import flax.struct
import jax
import jax.numpy as jnp
import numpy as np

from scanbias_jax import keys
from scanbias_jax.lesions import spheres
from scanbias_jax.synth import phantom


@flax.struct.dataclass
class Lesion:
  """A sphere in patient coordinates (DICOM LPS mm); a pytree, so it passes through jit."""
  centre_mm: jax.Array  # [3]
  radius_mm: jax.Array
  mean_hu: jax.Array
  std_hu: jax.Array
  seed: jax.Array       # uint32 of the texture field
  present: jax.Array    # bool: False leaves the anatomy untouched
  cell_mm: float = flax.struct.field(pytree_node=False, default=1.0)


def _fmix32(h):
  """MurmurHash3's finaliser: a cheap, well-mixed uint32 -> uint32."""
  h ^= h >> 16
  h *= jnp.uint32(0x85EBCA6B)
  h ^= h >> 13
  h *= jnp.uint32(0xC2B2AE35)
  return h ^ (h >> 16)


def cell_normal(seed, points_mm, cell_mm: float):
  """Standard normal values constant on `cell_mm` cubes (Box-Muller on two hashes)."""
  cells = jnp.floor(jnp.asarray(points_mm, jnp.float32) / cell_mm).astype(jnp.int32)
  cells = jax.lax.bitcast_convert_type(cells, jnp.uint32)
  h = _fmix32(seed ^ _fmix32(cells[..., 0] * jnp.uint32(0x9E3779B1)
                             ^ cells[..., 1] * jnp.uint32(0x85EBCA77)
                             ^ cells[..., 2] * jnp.uint32(0xC2B2AE3D)))
  h2 = _fmix32(h ^ jnp.uint32(0x27D4EB2F))
  u1 = (h >> 8).astype(jnp.float32) / 2.0 ** 24 + 2.0 ** -25
  u2 = (h2 >> 8).astype(jnp.float32) / 2.0 ** 24
  return jnp.sqrt(-2.0 * jnp.log(u1)) * jnp.cos(2.0 * jnp.pi * u2)


def head_hu_with_lesion(subject, points_mm, lesion: Lesion):
  """The subject's (hu, brain) with the lesion's voxels replaced (not added)."""
  hu, brain = subject.hu_and_brain(points_mm)
  p = jnp.asarray(points_mm, jnp.float32)

  def paint(hu):
    inside = jnp.sum((p - lesion.centre_mm) ** 2, axis=-1) <= lesion.radius_mm ** 2
    texture = lesion.mean_hu + lesion.std_hu * cell_normal(lesion.seed, p, lesion.cell_mm)
    return jnp.where(inside, texture, hu)

  # A real branch when `present` is not batched: an absent lesion costs nothing.
  return jax.lax.cond(lesion.present, paint, lambda hu: hu, hu), brain


def with_lesion(lesion: Lesion):
  """A drop-in for `phantom.head_hu` that paints `lesion` in."""
  return lambda subject, points_mm: head_hu_with_lesion(subject, points_mm, lesion)


@jax.jit
def _hu_and_brain(subject, points):
  return subject.hu_and_brain(points)


def no_lesion() -> Lesion:
  zero = jnp.float32(0.0)
  return Lesion(jnp.zeros(3, jnp.float32), zero, zero, zero, jnp.uint32(0),
                jnp.asarray(False))


def brain_grid(subject, grid_mm: float = 2.0):
  """The phantom's brain mask on an isotropic LPS grid over the head, and its origin."""
  z_lo, z_hi = (float(z) for z in subject.scan_range())
  half = phantom.FOV_RADIUS
  axes = [np.arange(-half, half + grid_mm, grid_mm)] * 2 + [np.arange(z_lo, z_hi, grid_mm)]
  points = np.stack(np.meshgrid(*axes, indexing="ij"), axis=-1).astype(np.float32)
  _, brain = _hu_and_brain(subject, points)
  return np.asarray(brain), np.array([a[0] for a in axes])


def place_in_subject(key: jax.Array, subject, small: bool,
                     params: spheres.SphereParams = spheres.SphereParams(),
                     grid_mm: float = 2.0) -> Lesion:
  """A lesion drawn like `spheres.draw_sphere` (same per-kind keys) inside the phantom brain."""
  brain, origin = brain_grid(subject, grid_mm)
  # Half a grid diagonal of margin: the continuous brain edge may lie that much
  # nearer than the nearest non-brain grid point.
  draw = spheres.draw_sphere(key, brain, (grid_mm,) * 3, params, margin_mm=0.87 * grid_mm)
  kind = "small" if small else "large"
  centre = origin + grid_mm * np.array([draw[f"centre_{a}"] for a in "ijk"], float)
  seed = jax.random.bits(keys.stream(key, f"{kind}/voxels"), (), jnp.uint32)
  return Lesion(centre_mm=jnp.asarray(centre, jnp.float32),
                radius_mm=jnp.float32(draw[f"{kind}_radius_mm"]),
                mean_hu=jnp.float32(draw[f"{kind}_mean_hu"]),
                std_hu=jnp.float32(draw[f"{kind}_std_hu"]), seed=seed,
                present=jnp.asarray(True))
