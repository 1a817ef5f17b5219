"""Synthetic sphere "lesions" (paper 3.2): who is positive, where, how big, how bright.

A study's draws come from `study_key(key, study_id)` alone (a `keys.stream` named by
its pseudonymous id), so they never change when the cohort grows or is re-split:
  - label: positive when its uniform draw ranks in the lowest half of its group;
  - centre: uniform over the brain voxels where the large sphere fits wholly
    inside the mask (what the paper's redraw-until-it-fits loop samples);
  - the large sphere (Easy, and the unchanged positives of Medium/Hard) and the
    small one, each with its own key for radius and voxel values;
  - small or not: 20% (Medium) / 35% (Hard) of each group's positives, spread
    over the splits in proportion, the lowest "small" draws of each split; Hard's
    small set contains Medium's, and the rest keep Easy's sphere voxel for voxel.
Insertion is a pure jittable function of (volume, spec, key), one of two:
  painted (the paper's): sphere voxels are replaced by independent draws from
    N(mean, std) HU, as its "pixel intensity was drawn from a normal distribution"
    says (replaced, not added): sharp, and without the scanner's noise texture;
  acquired (`insert_acquired`): the sphere replaces the tissue before the study's
    scanner, whose response (slice profile, MTF, calibration; `Response`) it then
    passes through, and the scanner's own noise stays over it, as over a real lesion.
"""
import dataclasses
import functools

import flax.struct
import jax
import jax.numpy as jnp
import numpy as np
from scanbias_jax import keys
from scanbias_jax.cohort.balance import largest_remainder
from scanbias_jax.preprocess import skullstrip

DIFFICULTIES = ("easy", "medium", "hard")


@dataclasses.dataclass(frozen=True)
class SphereParams:
  """Defaults; config.prepare.spheres holds the same fields."""
  large_radius_mm: tuple = (21.0, 26.0)
  large_hu: tuple = (50.0, 2.0)           # (mean, std) of the voxel values
  small_radius_mm: tuple = (13.0, 17.0)
  small_hu: tuple = (40.0, 2.0)
  small_fraction: tuple = (("easy", 0.0), ("medium", 0.20), ("hard", 0.35))
  positive_fraction: float = 0.5          # of each group's studies


@flax.struct.dataclass
class SphereSpec:
  """One sphere on one volume's voxel grid (leaves may carry a leading batch axis)."""
  centre: jax.Array     # [3] float32 voxel index (i, j, k) of the centre
  spacing: jax.Array    # [3] float32 mm per voxel along i, j, k
  radius_mm: jax.Array  # physical radius: the sphere is an ellipsoid in voxels
  mean_hu: jax.Array
  std_hu: jax.Array
  present: jax.Array    # bool: False (a negative) makes insertion the identity
  response: "Response | None" = None  # the study's scanner, for `insert_acquired`


@flax.struct.dataclass
class Response:
  """What the study's scanner does to a lesion in its tissue (leaves may be batched)."""
  mtf50_per_mm: jax.Array  # in-plane Gaussian MTF: 0.5 at this frequency
  ssp_fwhm_mm: jax.Array   # slice sensitivity profile (Gaussian) along the slice axis
  offset_hu: jax.Array     # the scanner's calibration at the lesion's HU, minus that HU


def params_from_settings(s) -> SphereParams:
  """SphereParams from `config.prepare.spheres` or its record in prepare.json (a mapping)."""
  return SphereParams(
      large_radius_mm=tuple(s["large_radius_mm"]), large_hu=tuple(s["large_hu"]),
      small_radius_mm=tuple(s["small_radius_mm"]), small_hu=tuple(s["small_hu"]),
      small_fraction=tuple((d, float(s["small_fraction"][d])) for d in DIFFICULTIES),
      positive_fraction=float(s["positive_fraction"]))


def study_key(key: jax.Array, study_id: str) -> jax.Array:
  """The study's own stream: it depends on its pseudonymous id only, not on the cohort."""
  return keys.stream(keys.stream(key, "spheres"), study_id)


def uniform(key: jax.Array, name: str) -> float:
  return float(keys.numpy_rng(keys.stream(key, name)).random())


def ranked(ids, key, name) -> list:
  """`ids` ordered by each study's own uniform draw `name` (ties by id)."""
  return sorted(ids, key=lambda s: (uniform(study_key(key, s), name), s))


def assign_labels(rows, key, group: str, positive_fraction: float = 0.5) -> dict:
  """study_id -> 1 (sphere) | 0; `floor(n * fraction)` positives per group value."""
  labels = {}
  for value in sorted({row[group] for row in rows}):
    order = ranked(sorted(row["study_id"] for row in rows if row[group] == value), key, "label")
    positives = set(order[:int(np.floor(positive_fraction * len(order)))])
    labels.update({s: int(s in positives) for s in order})
  return labels


def choose_small(rows, key, group: str, small_fraction) -> dict:
  """difficulty -> set of positive study_ids given the small sphere.

  Per group value, round(fraction x positives) studies; they are spread over the
  splits by largest remainder and, within a split, are the positives with the
  lowest "small" draw. Counts grow with the fraction split by split, so the set
  of a larger fraction contains that of a smaller one (Hard contains Medium).
  """
  chosen = {difficulty: set() for difficulty, _ in small_fraction}
  for value in sorted({row[group] for row in rows}):
    cells = {}
    for row in rows:
      if row[group] == value and int(row["label"]):
        cells.setdefault(row["split"], []).append(row["study_id"])
    names = sorted(cells)
    sizes = np.array([len(cells[n]) for n in names])
    orders = [ranked(sorted(cells[n]), key, "small") for n in names]
    quota, done = np.zeros(len(names), int), 0.0
    for difficulty, fraction in sorted(small_fraction, key=lambda d: d[1]):
      total = int(np.floor(fraction * sizes.sum() + 0.5))
      quota = quota + largest_remainder((fraction - done) * sizes, total - quota.sum())
      done = fraction
      chosen[difficulty] |= {s for order, q in zip(orders, quota) for s in order[:q]}
  return chosen


def draw_sphere(key: jax.Array, mask: np.ndarray, spacing_mm, params: SphereParams,
                margin_mm: float = 0.0, depth=None) -> dict:
  """Centre, radii and intensities of one study's spheres (numpy, host side).

  Centres lie on voxel centres. A centre is valid when the distance (mm, on the
  anisotropic grid, outside the array counting as outside) from it to the nearest
  non-brain voxel exceeds the large radius: then every voxel of the sphere, and of
  the smaller sphere at the same centre, is brain. If no voxel qualifies, the
  deepest voxel is used and the large radius shrunk to fit (`fits` = 0).
  `margin_mm` keeps that much more room (a mask sampled from a continuous brain).
  `depth`: `skullstrip.depth_mm(mask, spacing_mm)` when the caller has it (several
  draws in one mask).
  """
  spacing = np.asarray(spacing_mm, float)
  draws = {}
  for kind in ("large", "small"):
    rng = keys.numpy_rng(keys.stream(key, f"{kind}/radius"))
    lo, hi = getattr(params, f"{kind}_radius_mm")
    mean, std = getattr(params, f"{kind}_hu")
    draws.update({f"{kind}_radius_mm": float(rng.uniform(lo, hi)),
                  f"{kind}_mean_hu": float(mean), f"{kind}_std_hu": float(std)})
  if depth is None:
    depth = skullstrip.depth_mm(mask, spacing)
  valid = np.flatnonzero(depth.ravel() > draws["large_radius_mm"] + margin_mm)
  fits = valid.size > 0
  if fits:
    pick = valid[keys.numpy_rng(keys.stream(key, "centre")).integers(valid.size)]
  else:
    pick = int(np.argmax(depth))
    draws["large_radius_mm"] = float(np.nextafter(depth.ravel()[pick], 0))
    draws["small_radius_mm"] = min(draws["small_radius_mm"], draws["large_radius_mm"])
  centre = np.unravel_index(pick, mask.shape)
  draws.update(centre_i=int(centre[0]), centre_j=int(centre[1]), centre_k=int(centre[2]),
               inscribed_mm=float(depth[centre]), fits=int(fits))
  return draws


def spec_from_row(row, difficulty: str, small: bool, spacing_mm, present=True,
                  responses=None) -> SphereSpec:
  """The sphere of a sphere-table row in one difficulty (`small`: the row is small there).
  `responses`: {"large": Response, "small": Response} of the study's scanner."""
  kind = "small" if small and difficulty != "easy" else "large"
  return SphereSpec(
      response=None if responses is None else responses[kind],
      centre=jnp.asarray([float(row[f"centre_{a}"]) for a in "ijk"], jnp.float32),
      spacing=jnp.asarray(spacing_mm, jnp.float32),
      radius_mm=jnp.float32(float(row[f"{kind}_radius_mm"])),
      mean_hu=jnp.float32(float(row[f"{kind}_mean_hu"])),
      std_hu=jnp.float32(float(row[f"{kind}_std_hu"])),
      present=jnp.asarray(bool(present)))


def absent(spacing_mm=(1.0, 1.0, 1.0), acquired: bool = False) -> SphereSpec:
  """The spec of a negative: insertion returns the volume unchanged."""
  zero = jnp.float32(0.0)
  return SphereSpec(jnp.zeros(3, jnp.float32), jnp.asarray(spacing_mm, jnp.float32),
                    zero, zero, zero, jnp.asarray(False),
                    Response(jnp.float32(1.0), jnp.float32(1.0), zero) if acquired else None)


def voxel_key(key: jax.Array, study_id: str, kind: str) -> jax.Array:
  """The key of a sphere's voxel values: shared by every difficulty using that sphere."""
  return keys.stream(study_key(key, study_id), f"{kind}/voxels")


def reach(max_radius_mm: float, spacing_mm) -> tuple:
  """Voxels each side of a centre voxel that can hold a sphere up to this radius."""
  return tuple(int(np.floor(max_radius_mm / float(s))) + 1 for s in np.asarray(spacing_mm))


def sphere_mask(shape, spec: SphereSpec, origin=(0, 0, 0)) -> jax.Array:
  """Bool [shape]: voxels whose centre lies within `radius_mm` of the centre (voxel
  indices counted from `origin`, the box's corner in a larger volume)."""
  grids = jnp.meshgrid(*[jnp.arange(n, dtype=jnp.float32) for n in shape], indexing="ij")
  dist2 = sum(((g + origin[a] - spec.centre[a]) * spec.spacing[a]) ** 2
              for a, g in enumerate(grids))
  return (dist2 <= spec.radius_mm ** 2) & spec.present


def voxel_values(key: jax.Array, volume_shape, shape, origin) -> jax.Array:
  """Standard normal draws for a box of a volume, one per voxel from the key folded
  with the voxel's flat index in the volume: a voxel's value does not depend on the box."""
  grids = jnp.meshgrid(*[jnp.arange(n, dtype=jnp.int32) + origin[a]
                         for a, n in enumerate(shape)], indexing="ij")
  flat = (grids[0] * volume_shape[1] + grids[1]) * volume_shape[2] + grids[2]
  draw = jax.vmap(lambda i: jax.random.normal(jax.random.fold_in(key, i), (), jnp.float32))
  return draw(flat.ravel()).reshape(shape)


def insert_sphere(volume: jax.Array, spec: SphereSpec, key: jax.Array,
                  reach_voxels=None) -> jax.Array:
  """float32 volume with the sphere's voxels replaced by N(mean_hu, std_hu) draws.

  `reach_voxels` (static, `reach(max radius, spacing)`): only the box of that reach
  around the centre is touched, the same result at a fraction of the cost; None
  works on the whole volume.
  """
  volume = jnp.asarray(volume, jnp.float32)
  if reach_voxels is None:
    shape, origin = volume.shape, (0, 0, 0)
  else:
    shape = tuple(min(2 * r + 1, n) for r, n in zip(reach_voxels, volume.shape))
    corner = jnp.round(spec.centre).astype(jnp.int32) - jnp.asarray(reach_voxels, jnp.int32)
    origin = tuple(jnp.clip(corner[a], 0, volume.shape[a] - shape[a]) for a in range(3))
  box = jax.lax.dynamic_slice(volume, origin, shape)
  values = spec.mean_hu + spec.std_hu * voxel_values(key, volume.shape, shape, origin)
  box = jnp.where(sphere_mask(shape, spec, origin), values, box)
  return jax.lax.dynamic_update_slice(volume, box, origin)


SSP_SAMPLES = 9       # sub-planes integrating the slice profile over +-FWHM
BACKGROUND_MM = 2.0   # in-plane Gaussian sigma of the tissue estimate under the lesion


def _gaussian_filter(box, sigma_voxels):
  """In-plane (axes 0, 1) Gaussian filter by FFT (the box's margin takes the wrap)."""
  f = [jnp.fft.fftfreq(box.shape[a]) for a in (0, 1)]
  gain = jnp.exp(-2 * jnp.pi**2 * ((f[0][:, None] * sigma_voxels[0]) ** 2
                                   + (f[1][None, :] * sigma_voxels[1]) ** 2))
  return jnp.real(jnp.fft.ifft2(jnp.fft.fft2(box, axes=(0, 1)) * gain[..., None], axes=(0, 1)))


def insert_acquired(volume: jax.Array, spec: SphereSpec, key: jax.Array,
                    reach_voxels=None) -> jax.Array:
  """float32 volume with the sphere acquired by the study's scanner (`spec.response`).

  Image-domain lesion insertion: the scanner is linear in the tissue it images up to
  its noise, so acquiring the anatomy with the sphere replacing it equals the image
  plus the acquired difference, blur(SSP x MTF) of [sphere's true HU + calibration
  - the tissue it replaced]. The sphere's true HU are the painted draws N(mean, std)
  a voxel; the tissue it replaced is the image smoothed over BACKGROUND_MM; the
  slice profile is integrated over SSP_SAMPLES sub-planes of each slice. The noise
  over the sphere is the scanner's own (tested against the synthesizer's acquisition
  of a sphere in its anatomy, tests/test_spheres.py). `reach_voxels` as for
  `insert_sphere` (None: the whole volume)."""
  volume = jnp.asarray(volume, jnp.float32)
  r = spec.response
  margin = (4, 4, 1)
  reach = tuple(a + m for a, m in zip(reach_voxels or volume.shape, margin))
  shape = tuple(min(2 * a + 1, n) for a, n in zip(reach, volume.shape))
  corner = jnp.round(spec.centre).astype(jnp.int32) - jnp.asarray(reach, jnp.int32)
  origin = tuple(jnp.clip(corner[a], 0, volume.shape[a] - shape[a]) for a in range(3))
  box = jax.lax.dynamic_slice(volume, origin, shape)
  grids = jnp.meshgrid(*[jnp.arange(n, dtype=jnp.float32) for n in shape], indexing="ij")
  d = [(g + origin[a] - spec.centre[a]) * spec.spacing[a] for a, g in enumerate(grids)]
  planes = jnp.linspace(-1.0, 1.0, SSP_SAMPLES)   # in FWHMs from the slice centre
  offsets = planes * r.ssp_fwhm_mm
  weights = jnp.exp(-4 * jnp.log(2.0) * planes ** 2)
  weights = weights / weights.sum()
  inside = (d[0] ** 2 + d[1] ** 2)[..., None] + (d[2][..., None] + offsets) ** 2 \
      <= spec.radius_mm ** 2
  occupancy = jnp.tensordot(inside.astype(jnp.float32), weights, axes=1) * spec.present
  true_hu = spec.mean_hu + spec.std_hu * voxel_values(key, volume.shape, shape, origin)
  tissue = _gaussian_filter(box, BACKGROUND_MM / spec.spacing[:2])
  difference = occupancy * (true_hu + r.offset_hu - tissue)
  # MTF(f) = 2^-(f / mtf50)^2 is a Gaussian of sigma sqrt(ln 2 / 2) / (pi mtf50) mm.
  sigma_mm = jnp.sqrt(jnp.log(2.0) / 2) / (jnp.pi * r.mtf50_per_mm)
  acquired = box + _gaussian_filter(difference, sigma_mm / spec.spacing[:2])
  return jax.lax.dynamic_update_slice(volume, acquired, origin)


def insert(volume, spec: SphereSpec, key, reach_voxels, acquired: bool):
  """`insert_acquired` or the paper's `insert_sphere` (`acquired` static)."""
  if acquired:
    return insert_acquired(volume, spec, key, reach_voxels)
  return insert_sphere(volume, spec, key, reach_voxels)


@functools.partial(jax.jit, static_argnums=3)
def inserted_and_mask(volume, spec: SphereSpec, key: jax.Array, reach_voxels):
  """(`insert_sphere` with that reach, `sphere_mask`), jitted: host-side callers with
  one reach (the largest radius) compile once per volume shape."""
  return (insert_sphere(volume, spec, key, reach_voxels),
          sphere_mask(jnp.shape(volume), spec))
