"""A reference head in true HU built from the MNI152 2009 templates that nilearn ships.

The brain is real anatomy: the ICBM152 2009a symmetric grey- and white-matter
probability maps and the (brain-extracted) T1 template, 1 mm isotropic, read from
nilearn's wheel without importing nilearn (no download). Everything a brain
template lacks is derived from the brain: the intracranial cavity (the closed
brain plus a CSF rim), a skull shell of regional thickness with inner and outer
tables and diploe, scalp with subcutaneous fat, and, below the cerebrum, a skull
base and face built from primitives placed in MNI coordinates (orbits and globes,
nasal cavity, maxillary, ethmoid, sphenoid and frontal sinuses, petrous ridges,
clivus, mastoid air cells, spinal canal). Values are true attenuation at 120 kVp
(the tissue constants of `phantom`).

The volume is [z, y, x, channel] on a 1 mm LPS grid (origin `origin_lps` is the
centre of voxel 0), channels:
  0  true HU of a young adult head;
  1  the HU change at full age atrophy (tissue next to CSF becomes CSF);
  2  intracranial cavity (1 inside; the ground-truth "brain" of the cohort).
Built once per process (a few seconds) and kept in a file cache.
"""
import functools
import hashlib
import importlib.util
import os
from pathlib import Path
from typing import NamedTuple

import nibabel as nib
import numpy as np
from scipy import ndimage

from scanbias_jax import files
from scanbias_jax.synth import phantom as tissue

VERSION = "atlas-v1"
TEMPLATES = {name: f"mni_icbm152_{name}_tal_nlin_sym_09a_converted.nii.gz"
             for name in ("gm", "wm", "t1")}
# Padding of the template box (voxels at 1 mm, LPS axes z, y, x): the skull base
# and face extend below and in front of the brain.
PAD = ((40, 22), (34, 12), (8, 8))
SHARPEN = 1.6        # tissue probabilities p^g / sum p^g: one subject, not a 152-average
CSF_RIM_MM = 1.2     # subarachnoid CSF between brain and inner table (young adult)
TABLE_MM = 1.6       # thickness of each cortical table
SCALP_MM = 5.0
# Atrophy: tissue within ~this distance of CSF turns to CSF at full atrophy.
ATROPHY_MM = 1.6


class Reference(NamedTuple):
  volume: np.ndarray      # float32 [z, y, x, 3]
  origin_lps: np.ndarray  # [3] LPS mm (x, y, z) of voxel (0, 0, 0)
  centre_lps: np.ndarray  # [3] centre of the cranial cavity (the head frame's origin)


def template_dir() -> Path:
  spec = importlib.util.find_spec("nilearn")
  if spec is None or not spec.submodule_search_locations:
    raise ImportError("nilearn is not installed: the atlas anatomy reads the MNI152 "
                      "templates from its wheel (pip install nilearn), or set "
                      "synth.anatomy='procedural'")
  return Path(list(spec.submodule_search_locations)[0]) / "datasets" / "data"


def _load(name: str) -> np.ndarray:
  """Template as float32 in [0, 1], axes (z, y, x) in LPS order."""
  image = nib.load(template_dir() / TEMPLATES[name])
  if not np.allclose(np.diag(image.affine)[:3], 1.0):
    raise ValueError(f"{TEMPLATES[name]}: expected a 1 mm RAS template")
  data = np.asarray(image.dataobj, np.float32) / 255.0
  # RAS (x, y, z) -> LPS: flip x and y, then (z, y, x) for axial planes in memory.
  return np.ascontiguousarray(np.transpose(data[::-1, ::-1, :], (2, 1, 0)))


def _lps_origin(affine: np.ndarray, shape_xyz) -> np.ndarray:
  ras_far = affine[:3, 3] + np.asarray(shape_xyz) - 1  # RAS of the last voxel
  return np.array([-ras_far[0], -ras_far[1], affine[2, 3]])


def _ellipsoid(grid, centre_ras, axes, yaw=0.0, pitch=0.0, mirror=False):
  """Inside an ellipsoid given in MNI (RAS) mm, optionally rotated and mirrored in x.
  Evaluated in the box of its bounding sphere only (the same values there)."""
  x, y, z = grid
  cx, cy, cz = centre_ras
  out = np.zeros(np.broadcast_shapes(x.shape, y.shape, z.shape), bool)
  reach = max(axes) + 2.0  # a rotation keeps distances; 2 mm more for rounding
  for sign in ((1, -1) if mirror else (1,)):
    near = [np.flatnonzero(np.abs(values.ravel() - middle) <= reach)
            for values, middle in ((z, cz), (y, cy), (sign * x, cx))]
    if any(len(n) == 0 for n in near):
      continue
    bz, by, bx = (slice(int(n[0]), int(n[-1]) + 1) for n in near)
    dx, dy, dz = sign * x[..., bx] - cx, y[:, by] - cy, z[bz] - cz
    c, s = np.cos(np.deg2rad(yaw)), np.sin(np.deg2rad(yaw))
    u, v = c * dx + s * dy, -s * dx + c * dy
    c, s = np.cos(np.deg2rad(pitch)), np.sin(np.deg2rad(pitch))
    v, w = c * v + s * dz, -s * v + c * dz
    out[bz, by, bx] |= (u / axes[0]) ** 2 + (v / axes[1]) ** 2 + (w / axes[2]) ** 2 < 1
  return out


def _edt_about(values, around, margin: int, beyond: float) -> np.ndarray:
  """scipy's exact distance transform of `values` computed in the bounding box of
  `around` grown by `margin` voxels, `beyond` elsewhere. Exact inside the box when
  every zero of `values` outside it lies beyond the box's margin layer (its zeros):
  the nearest one then has a copy in the box no further away (clamp it into the
  box). The boxes are smaller than the padded template, which is mostly air."""
  where = np.nonzero(around)
  box = tuple(slice(max(int(w.min()) - margin, 0), int(w.max()) + margin + 1) for w in where)
  out = np.full(values.shape, beyond, np.float64)
  out[box] = ndimage.distance_transform_edt(values[box])
  return out


def _shell(grid, centre, axes, wall, mirror=False, **rot):
  inner = _ellipsoid(grid, centre, axes, mirror=mirror, **rot)
  outer = _ellipsoid(grid, centre, tuple(a + wall for a in axes), mirror=mirror, **rot)
  return inner, outer & ~inner


def _brain(gm, wm, t1):
  """Tissue fractions (grey, white, csf) and the intracranial cavity."""
  brain = (t1 > 0.12) | (gm + wm > 0.25)
  brain = ndimage.binary_fill_holes(brain)
  # Closing by 6 mm (distance transforms: exact balls, fast) bridges the sulci and
  # fissures at the surface; a CSF rim outside it is the subarachnoid space.
  grown = _edt_about(~brain, brain, 7, np.inf) <= 6.0
  closed = ~(_edt_about(grown, grown, 1, 0.0) <= 6.0)
  cavity = _edt_about(~(closed | brain), closed | brain, 2, np.inf) <= CSF_RIM_MM
  p = np.stack([gm, wm, np.clip(1.0 - gm - wm, 0.0, 1.0)]) ** SHARPEN
  p /= np.maximum(p.sum(0), 1e-6)
  p[:, ~cavity] = 0.0
  return p, cavity


def _face_and_base(grid, hu, outside):
  """Skull base, face and neck below the cranial cavity (MNI mm, hand-placed)."""
  x, y, z = grid
  # Head outline under the cranium: a rounded box through face and neck.
  yc = -4.0 + 0.25 * (z + 20.0)
  rx = 70.0 - 0.15 * np.maximum(-40.0 - z, 0.0)
  ry = 94.0 - 0.25 * np.maximum(-30.0 - z, 0.0)
  lower = ((np.abs(x) / rx) ** 2.4 + (np.abs(y - yc) / ry) ** 2.4 < 1.0) & (z < -8.0)
  nose = (np.abs(x) < 9.0 + 0.25 * (-z - 10.0)) & (y < 110.0 - 0.7 * np.abs(x)) \
      & (y > 60.0) & (z < -25.0) & (z > -85.0) & (y < 96 + 0.4 * (-z - 25.0))
  region = (lower | nose) & outside
  hu[region] = tissue.SOFT
  # Orbits: fat cone and globe; bony walls.
  fat, wall = _shell(grid, (30.0, 40.0, -38.0), (16.0, 24.0, 15.0), 2.0, mirror=True,
                     yaw=12.0)
  globe = _ellipsoid(grid, (32.0, 60.0, -37.0), (12.0, 12.0, 12.0), mirror=True)
  sclera = _ellipsoid(grid, (32.0, 60.0, -37.0), (13.0, 13.0, 13.0), mirror=True)
  lens = _ellipsoid(grid, (32.0, 71.0, -37.0), (4.5, 2.0, 4.5), mirror=True)
  hu[outside & wall & (y < 62.0)] = tissue.CORTICAL
  hu[outside & fat] = tissue.FAT
  hu[outside & sclera] = 50.0
  hu[outside & globe] = tissue.EYE
  hu[outside & lens] = 120.0
  # Paranasal sinuses (air in a thin bony wall) and the nasal cavity.
  for centre, axes, mirror in (((0.0, 58.0, -62.0), (9.0, 30.0, 22.0), False),   # nasal
                               ((27.0, 48.0, -62.0), (13.0, 17.0, 15.0), True),  # maxillary
                               ((0.0, 14.0, -36.0), (11.0, 11.0, 9.0), False),   # sphenoid
                               ((0.0, 4.0, -64.0), (14.0, 8.0, 10.0), False)):   # nasopharynx
    cavity, shell = _shell(grid, centre, axes, 1.6, mirror=mirror)
    hu[outside & shell] = tissue.CORTICAL
    hu[outside & cavity] = tissue.AIR
  septum = (np.abs(x) < 1.0) & _ellipsoid(grid, (0.0, 58.0, -62.0), (9.0, 30.0, 22.0))
  hu[outside & septum] = 100.0  # cartilage and thin bone
  cells = (np.cos(0.9 * x) + np.cos(0.9 * y) + np.cos(0.9 * z)) > 0.3
  ethmoid = _ellipsoid(grid, (11.0, 42.0, -34.0), (6.0, 18.0, 9.0), mirror=True)
  mastoid = _ellipsoid(grid, (46.0, -30.0, -44.0), (11.0, 13.0, 12.0), mirror=True)
  for region_ in (ethmoid, mastoid):
    hu[outside & region_] = np.where(cells[outside & region_], tissue.AIR, 900.0)
  # Dense bone: petrous ridges, clivus, zygomatic arches, ring of C1 around the canal.
  for centre, axes, yaw, pitch, value in (
      ((30.0, -18.0, -38.0), (23.0, 7.0, 7.0), -40.0, 0.0, tissue.PETROUS),
      ((0.0, -8.0, -50.0), (9.0, 7.0, 17.0), 0.0, -35.0, 1200.0),
      ((58.0, 8.0, -42.0), (5.0, 24.0, 5.0), 0.0, 0.0, tissue.CORTICAL)):
    solid = _ellipsoid(grid, centre, axes, yaw=yaw, pitch=pitch, mirror=centre[0] > 0)
    hu[outside & solid] = value
  canal = ((x / 12.0) ** 2 + ((y + 38.0) / 14.0) ** 2 < 1.0) & (z < -55.0)
  ring = ((x / 18.0) ** 2 + ((y + 38.0) / 19.0) ** 2 < 1.0) & (z < -66.0) & (z > -80.0)
  hu[outside & ring & ~canal] = 1100.0
  cord = ((x / 6.0) ** 2 + ((y + 38.0) / 7.0) ** 2 < 1.0)
  return region, canal & outside, cord


def build() -> Reference:
  """The reference head (numpy; a few seconds)."""
  gm, wm, t1 = (_load(n) for n in ("gm", "wm", "t1"))
  image = nib.load(template_dir() / TEMPLATES["gm"])
  origin = _lps_origin(image.affine, image.shape) - np.array([p[0] for p in PAD[::-1]])
  gm, wm, t1 = (np.pad(a, PAD) for a in (gm, wm, t1))
  nz, ny, nx = gm.shape
  # MNI (RAS) coordinates of the voxels, broadcastable over (z, y, x).
  x = -(origin[0] + np.arange(nx, dtype=np.float32))[None, None, :]
  y = -(origin[1] + np.arange(ny, dtype=np.float32))[None, :, None]
  z = (origin[2] + np.arange(nz, dtype=np.float32))[:, None, None]
  grid = (x, y, z)

  p, cavity = _brain(gm, wm, t1)
  hu = np.full(gm.shape, tissue.AIR, np.float32)
  hu[cavity] = (p[0] * tissue.GREY + p[1] * tissue.WHITE + p[2] * tissue.CSF)[cavity]

  # Skull: a shell outside the cavity, thickness by region (frontal and occipital
  # thick, squamous temporal thin), a frontal sinus in the frontal bone.
  out_mm = _edt_about(~cavity, cavity, 30, np.inf).astype(np.float32)  # used to ~26 mm
  r = np.sqrt(x ** 2 + (y + 18.0) ** 2 + (z - 8.0) ** 2) + 1e-3
  u = (x / r, (y + 18.0) / r, (z - 8.0) / r)
  front, back = np.maximum(u[1], 0) ** 2, np.maximum(-u[1], 0) ** 2
  temporal = u[0] ** 2 * np.exp(-((u[2] + 0.1) / 0.35) ** 2)
  thickness = 6.3 * (1 + 0.15 * front + 0.35 * back - 0.45 * temporal)
  sinus = np.exp(-(x / 13.0) ** 2 - ((z - 2.0) / 9.0) ** 2) * (u[1] > 0.6)
  thickness = thickness + 8.0 * sinus
  skull = (out_mm > 0) & (out_mm <= thickness)
  tables = (out_mm <= TABLE_MM) | (out_mm > thickness - TABLE_MM)
  hu[skull] = np.where(tables, tissue.CORTICAL, tissue.DIPLOE)[skull]
  hu[skull & (sinus > 0.4) & (out_mm > 2.5) & (out_mm < thickness - 2.0)] = tissue.AIR
  below = z < -8.0
  scalp = (out_mm > thickness) & (out_mm <= thickness + SCALP_MM + 3.0 * temporal) & ~below
  hu[scalp] = tissue.SOFT

  outside = ~(cavity | skull | scalp)
  region, canal, cord = _face_and_base(grid, hu, outside)
  head = cavity | skull | scalp | region
  # Subcutaneous fat: the soft tissue 2-3 voxels under the skin.
  deep = ndimage.binary_erosion(head, iterations=2) & ~ndimage.binary_erosion(head, iterations=4)
  fat = deep & ~cavity & (hu < 100) & (hu > 0)
  hu[fat] = tissue.FAT
  hu[canal & head] = tissue.CSF
  hu[canal & cord & head & ~cavity] = tissue.BRAINSTEM

  # Atrophy: tissue next to CSF (sulci, ventricles, the rim) turns to CSF.
  csf_near = ndimage.gaussian_filter(p[2], ATROPHY_MM)
  tissue_hu = np.where(cavity, hu, tissue.CSF)
  atrophy = np.where(cavity, np.clip(2.0 * csf_near, 0, 1) * (tissue.CSF - tissue_hu), 0)
  volume = np.stack([hu, atrophy.astype(np.float32), cavity.astype(np.float32)], -1)

  zc, yc, xc = (np.mean(a) for a in np.nonzero(cavity & (z > -20.0)))
  centre = origin + np.array([xc, yc, zc])
  # Crop to the head (plus a margin of air).
  box = [np.flatnonzero(head.any(axis=tuple(a for a in range(3) if a != d)))
         for d in range(3)]
  lo = [max(int(b[0]) - 4, 0) for b in box]
  hi = [min(int(b[-1]) + 5, n) for b, n in zip(box, head.shape)]
  volume = volume[lo[0]:hi[0], lo[1]:hi[1], lo[2]:hi[2]]
  origin = origin + np.array([lo[2], lo[1], lo[0]], float)
  return Reference(np.ascontiguousarray(volume, np.float32), origin, centre)


def _cache_path() -> Path:
  root = Path(os.environ.get("SCANBIAS_CACHE", Path.home() / ".cache" / "scanbias_jax"))
  sizes = "-".join(str((template_dir() / f).stat().st_size) for f in TEMPLATES.values())
  source = Path(__file__).read_bytes()
  tag = hashlib.sha1(source + VERSION.encode() + sizes.encode()).hexdigest()[:12]
  return root / f"reference_head_{tag}.npz"


@functools.lru_cache(maxsize=1)
def reference() -> Reference:
  """The reference head, from the file cache when a build of this source is there."""
  path = _cache_path()
  if path.exists():
    with np.load(path) as f:
      return Reference(f["volume"], f["origin_lps"], f["centre_lps"])
  ref = build()
  try:
    with files.atomic_path(path) as temporary, open(temporary, "wb") as f:
      np.savez(f, volume=ref.volume, origin_lps=ref.origin_lps, centre_lps=ref.centre_lps)
  except OSError:
    pass  # a read-only home only costs the rebuild
  return ref
