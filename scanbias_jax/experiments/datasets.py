"""The experiment data sets (paper 3.2) as arrays, from a prepared cohort.

`launch/prepare.py` writes the specs; this module reads them and builds:
  Original: HU volumes, label = index of the study's group value (Name the
    Manufacturer); `manufacturer_stack(key, volume)` draws 3 distinct slices in
    random order per sample and epoch and windows them 40/400 -> [-1, 1].
  Spheres (easy | medium | hard): HU volumes, label 1 = sphere, and a batched
    `SphereSpec` + voxel keys; `spheres_input(volume, spec, key)` inserts the
    sphere and windows 50/100 -> [0, 1]. Nothing with a sphere is stored.
    `paired_spheres_set` is the training variant in which every study appears
    both with and without a sphere (`experiments.spheres_train_copies`).
  Skull: volume (HU) and brain mask resampled 35 -> 32 slices (`skull_slices`).
Every set takes `split` (train | val | test | None = all) and `group_value`
(None = mixed, else that group's subset, the paper's _GE / _Si sets).
Arrays are [n, i, j, k] (i, j in-plane, k the slice axis), labels int32 [n],
groups int32 [n] indexing `Prepared.group_values`.
"""
import csv
import dataclasses
import functools
import json
import os

import jax
import jax.numpy as jnp
import numpy as np

from scanbias_jax import files, keys
from scanbias_jax.lesions import spheres
from scanbias_jax.preprocess import skullstrip, window

SPLITS_FILE, SPHERES_FILE, SETTINGS_FILE = "splits.csv", "spheres.csv", "prepare.json"


@dataclasses.dataclass(frozen=True)
class Prepared:
  root: str                      # the prepare output directory
  cohort: str                    # the ingest output directory (volumes)
  group: str                     # manifest column the sets are balanced over
  group_values: tuple            # its values, sorted; labels/groups index these
  rows: tuple                    # splits.csv rows (dicts), sorted by study_id
  spheres: dict                  # study_id -> spheres.csv row (positives)
  seed: int                      # config.seed of the prepare run
  settings: dict                 # the prepare.json record

  @property
  def key(self) -> jax.Array:
    """The prepare stage's key: sphere voxel values derive from it."""
    return keys.stream(keys.root(self.seed), "prepare")


def prepare_key(seed: int) -> jax.Array:
  return keys.stream(keys.root(seed), "prepare")


def read_csv(path) -> list[dict]:
  with open(path, newline="") as f:
    return list(csv.DictReader(f))


def load_prepared(prepared_dir) -> Prepared:
  """Reads prepare.json, splits.csv and spheres.csv of a prepare output directory."""
  with open(os.path.join(prepared_dir, SETTINGS_FILE)) as f:
    settings = json.load(f)
  rows = sorted(read_csv(os.path.join(prepared_dir, SPLITS_FILE)),
                key=lambda r: r["study_id"])
  table = {r["study_id"]: r for r in read_csv(os.path.join(prepared_dir, SPHERES_FILE))}
  group = settings["group"]
  return Prepared(root=prepared_dir, cohort=settings["cohort"], group=group,
                  group_values=tuple(sorted({r[group] for r in rows})), rows=tuple(rows),
                  spheres=table, seed=int(settings["seed"]), settings=settings)


def select(prepared: Prepared, split=None, group_value=None) -> list[dict]:
  """The rows of one split (None = all) and one group value (None = every group)."""
  return [r for r in prepared.rows if (split is None or r["split"] == split)
          and (group_value is None or r[prepared.group] == group_value)]


def read_nifti(path) -> tuple[np.ndarray, np.ndarray]:
  """(array, spacing_mm) of a NIfTI, in its stored dtype."""
  image = files.load_nifti(path)
  return image.data, image.spacing


def volume_path(prepared: Prepared, row) -> str:
  return os.path.join(prepared.cohort, row["path"])


def mask_path(prepared: Prepared, row) -> str:
  return os.path.join(prepared.root, row["mask"])


def _stack(prepared, rows, path_of, dtype):
  if not rows:
    return np.zeros((0,), dtype), np.ones(3)
  arrays = [read_nifti(path_of(prepared, r)) for r in rows]
  return np.stack([a.astype(dtype) for a, _ in arrays]), arrays[0][1]


def _common(prepared, rows):
  return dict(study_ids=[r["study_id"] for r in rows],
              groups=np.array([prepared.group_values.index(r[prepared.group])
                               for r in rows], np.int32),
              units=units(rows))


def repeated_units(prepared: Prepared, study_ids) -> np.ndarray | None:
  """`units` of these studies where some unit holds several of them (traveling heads in
  one set), else None: the intervals then need no clusters."""
  by_id = {r["study_id"]: r for r in prepared.rows}
  found = units([by_id[s] for s in study_ids])
  return found if repeats(found) else None


def repeats(unit_of) -> bool:
  """Whether some unit gives more than one sample (then intervals need clusters)."""
  return np.unique(unit_of).size < len(unit_of)


def units(rows) -> np.ndarray:
  """int32 [n]: the independent unit each row belongs to, the one to resample: its
  anatomy where prepare recorded one (a traveling head's acquisitions share it), else
  the study."""
  names = [r.get("anatomy") or f"study:{r['study_id']}" for r in rows]
  return np.unique(np.asarray(names, dtype=object).astype(str), return_inverse=True)[1].astype(
      np.int32) if names else np.zeros(0, np.int32)


def original_set(prepared: Prepared, split=None, group_value=None) -> dict:
  """volumes int16 [n, i, j, k] HU; labels int32 [n] = group index (the manufacturer)."""
  rows = select(prepared, split, group_value)
  volumes, spacing = _stack(prepared, rows, volume_path, np.int16)
  common = _common(prepared, rows)
  return dict(volumes=volumes, labels=common["groups"], spacing=spacing, **common)


def manufacturer_stack(key: jax.Array, volume, n_slices: int = 3,
                       level: float = window.ORIGINAL[0], width: float = window.ORIGINAL[1]):
  """float32 [i, j, n_slices]: distinct random slices in random order, windowed to [-1, 1]."""
  order = jax.random.choice(key, volume.shape[-1], (n_slices,), replace=False)
  return window.window(jnp.take(volume, order, axis=-1), level, width, -1.0, 1.0)


def manufacturer_batch(key: jax.Array, volumes, indices=None, n_slices: int = 3,
                       **window_args):
  """Stacks [n, i, j, n_slices] for volumes [n, i, j, k].

  key: the epoch's key; sample m draws from item(key, indices[m]), where indices
  are the samples' positions in the data set (default 0..n-1), so a study's
  stack in an epoch does not depend on the batch it lands in.
  """
  indices = jnp.arange(volumes.shape[0]) if indices is None else jnp.asarray(indices)
  sample_keys = jax.vmap(lambda m: keys.item(key, m))(indices)
  return jax.vmap(lambda k, v: manufacturer_stack(k, v, n_slices, **window_args))(
      sample_keys, volumes)


def can_acquire(prepared: Prepared) -> bool:
  """Whether every study carries its scanner's response (prepare, from the synthesizer's
  truth): the acquired sphere insertion needs it."""
  return bool(prepared.rows) and all(r.get("mtf50_per_mm") for r in prepared.rows)


def responses(row) -> dict:
  """{"large": Response, "small": Response} of a study's scanner (its splits.csv row)."""
  if not row.get("mtf50_per_mm"):
    raise ValueError(f"study {row['study_id']} has no scanner response in {SPLITS_FILE} "
                     "(prepare adds it from the synthesizer's truth): the acquired sphere "
                     "insertion cannot run; use experiments.spheres_insertion='painted'")
  return {kind: spheres.Response(jnp.float32(float(row["mtf50_per_mm"])),
                                 jnp.float32(float(row["ssp_fwhm_mm"])),
                                 jnp.float32(float(row[f"offset_{kind}_hu"])))
          for kind in ("large", "small")}


def sphere_specs(prepared: Prepared, rows, difficulty: str, spacing,
                 acquired: bool = False) -> tuple:
  """(SphereSpec batched over rows, voxel keys [n]) for one difficulty; negatives absent.
  `acquired`: each spec carries its study's scanner response (`responses`)."""
  if difficulty not in spheres.DIFFICULTIES:
    raise ValueError(f"difficulty must be one of {spheres.DIFFICULTIES}, got {difficulty!r}")
  specs, voxel_keys = [], []
  for r in rows:
    sphere = prepared.spheres.get(r["study_id"])
    small = bool(int(r.get(f"small_{difficulty}", 0) or 0))
    if int(r["label"]) and sphere is None:
      raise ValueError(f"positive study {r['study_id']} has no row in {SPHERES_FILE}")
    specs.append(spheres.spec_from_row(sphere, difficulty, small, spacing,
                                       responses=responses(r) if acquired else None)
                 if int(r["label"]) else spheres.absent(spacing, acquired))
    kind = "small" if small and difficulty != "easy" else "large"
    voxel_keys.append(spheres.voxel_key(prepared.key, r["study_id"], kind))
  return _stack_specs(specs), (keys.stack(voxel_keys) if voxel_keys else None)


def _stack_specs(specs):
  """SphereSpecs -> one SphereSpec of numpy leaves [n, ...] (jnp.stack would compile
  a program for every n)."""
  if not specs:
    return None
  return jax.tree.map(lambda *leaves: np.stack([np.asarray(a) for a in leaves]), *specs)


def spheres_set(prepared: Prepared, difficulty: str, split=None, group_value=None,
                outside_brain_hu: float | None = None, acquired: bool = False) -> dict:
  """volumes int16 [n, i, j, k] HU (no sphere yet), labels int32 [n] (1 = sphere),
  specs (SphereSpec, leaves [n, ...]) and voxel_keys [n]: feed `spheres_input`.
  `outside_brain_hu`: every voxel outside the study's brain mask reads this (the
  brain alone; a sphere lies wholly inside the mask, which is the same with and
  without it, so the mask says nothing of the label)."""
  rows = select(prepared, split, group_value)
  volumes, spacing = _stack(prepared, rows, volume_path, np.int16)
  centres = []
  for volume, row in zip(volumes, rows):  # each mask read once
    mask = read_nifti(mask_path(prepared, row))[0]
    centres.append(brain_centre(mask))
    if outside_brain_hu is not None:
      volume[mask == 0] = outside_brain_hu
  specs, voxel_keys = sphere_specs(prepared, rows, difficulty, spacing, acquired)
  return dict(volumes=volumes, labels=np.array([int(r["label"]) for r in rows], np.int32),
              specs=specs, voxel_keys=voxel_keys, spacing=spacing,
              brain_centres=np.array(centres, np.int32).reshape(-1, 3),
              **_common(prepared, rows))


def brain_centre(mask) -> list[int]:
  """The voxel at the centre of a brain mask's bounding box (the volume's centre where
  the mask is empty)."""
  box = skullstrip.bounding_box(mask)
  return ([(b.start + b.stop - 1) // 2 for b in box] if box is not None
          else [n // 2 for n in mask.shape])


def crop_starts(centres, shape, size) -> np.ndarray:
  """int32 [n, 3]: corners of `size`-voxel boxes centred on `centres`, moved inside `shape`."""
  size, shape = np.asarray(size), np.asarray(shape)
  return np.clip(np.asarray(centres) - size // 2, 0, shape - size).astype(np.int32)


def paired_draws(prepared: Prepared, rows, copies: int) -> dict:
  """study_id -> `copies` fresh sphere draws (spheres.draw_sphere dicts) for paired training.

  Copy c of a study comes from stream(study_key, "paired/<c>"), placed in the
  study's brain mask by the rules prepare used, so the draws depend on nothing
  but the study and c. Reading the mask and its distance map is the cost, paid
  once for every difficulty.
  """
  params = spheres.params_from_settings(prepared.settings["spheres"])
  draws = {}
  for r in rows:
    mask, spacing = read_nifti(mask_path(prepared, r))
    depth = skullstrip.depth_mm(mask, spacing)
    study = spheres.study_key(prepared.key, r["study_id"])
    copy_keys = [keys.stream(study, f"paired/{c}") for c in range(copies)]
    draws[r["study_id"]] = [
        dict(spheres.draw_sphere(k, mask, spacing, params, depth=depth), key=k,
             small_draw=spheres.uniform(k, "small")) for k in copy_keys]
  return draws


def paired_spheres_set(prepared: Prepared, difficulty: str, draws: dict, split=None,
                       group_value=None, outside_brain_hu: float | None = None,
                       acquired: bool = False) -> dict:
  """Each study `copies` times without a sphere (label 0) and `copies` times with one.

  The copies with a sphere: a positive's own sphere (the one `spheres_set` gives
  it) first, then fresh draws from `draws` (`paired_draws`); a fresh sphere is
  small in this difficulty when its own uniform draw falls below the
  difficulty's small fraction, so Hard's small copies contain Medium's. Since
  every study carries both labels, its anatomy says nothing about the label.
  Returns what `spheres_set` does plus `source` [n]: the row of `volumes`
  (one per study) each sample is built from.
  """
  base = spheres_set(prepared, difficulty, split, group_value, outside_brain_hu, acquired)
  small_fraction = float(prepared.settings["spheres"]["small_fraction"][difficulty])
  spacing = base["spacing"]
  rows = {r["study_id"]: r for r in prepared.rows}
  specs, voxel_keys, source, labels = [], [], [], []
  def fresh_sphere(draw, scanner):
    small = draw["small_draw"] < small_fraction
    kind = "small" if small and difficulty != "easy" else "large"
    return (spheres.spec_from_row(draw, difficulty, small, spacing, responses=scanner),
            keys.stream(draw["key"], f"{kind}/voxels"))

  for index, study_id in enumerate(base["study_ids"]):
    fresh = draws[study_id]
    own = ([(jax.tree.map(lambda a: a[index], base["specs"]), keys.take(base["voxel_keys"], index))]
           if base["labels"][index] else [])
    scanner = responses(rows[study_id]) if acquired else None
    with_sphere = own + [fresh_sphere(d, scanner) for d in fresh[:len(fresh) - len(own)]]
    without = (spheres.absent(spacing, acquired), keys.stream(prepared.key, "absent"))
    for label, pairs in ((0, [without] * len(fresh)), (1, with_sphere)):
      for spec, voxel_key in pairs:
        specs.append(spec)
        voxel_keys.append(voxel_key)
        source.append(index)
        labels.append(label)
  source = np.array(source, np.int32)
  return dict(volumes=base["volumes"], source=source, labels=np.array(labels, np.int32),
              brain_centres=base["brain_centres"],
              specs=_stack_specs(specs),
              voxel_keys=keys.stack(voxel_keys) if voxel_keys else None, spacing=spacing,
              study_ids=[base["study_ids"][i] for i in source], groups=base["groups"][source],
              units=base["units"][source])


def spheres_input(volume, spec: spheres.SphereSpec, key: jax.Array,
                  level: float = window.SPHERES[0], width: float = window.SPHERES[1],
                  reach_voxels=None, acquired: bool = False):
  """float32 [i, j, k] in [0, 1]: the sphere inserted (painted, or `acquired` by the
  study's scanner: `spheres.insert`), then the brain window (`reach_voxels`: see
  `spheres.insert_sphere`)."""
  return window.window(spheres.insert(volume, spec, key, reach_voxels, acquired), level, width,
                       0.0, 1.0)


def spheres_batch(volumes, specs, voxel_keys, reach_voxels=None, starts=None, size=None,
                  acquired: bool = False, **window_args):
  """`spheres_input` of each volume; with `starts` [n, 3] and `size` (voxels), only the
  box of that size at each start (`crop_starts`)."""
  def one(v, s, k, start):
    x = spheres_input(v, s, k, reach_voxels=reach_voxels, acquired=acquired, **window_args)
    return x if start is None else jax.lax.dynamic_slice(x, tuple(start), tuple(size))
  if starts is None:
    return jax.vmap(lambda v, s, k: one(v, s, k, None))(volumes, specs, voxel_keys)
  return jax.vmap(one)(volumes, specs, voxel_keys, starts)


def sphere_reach(prepared: Prepared, data: dict) -> tuple:
  """`spheres.reach` for every sphere a set can hold: the prepare settings' largest
  radius (the same for every set of a cohort, so one compilation serves them all)."""
  largest = float(prepared.settings["spheres"]["large_radius_mm"][1])
  if data["specs"] is not None and len(data["labels"]):
    largest = max(largest, float(np.max(data["specs"].radius_mm)))
  return spheres.reach(largest, data["spacing"])


def resize_slices(x, n_out: int):
  """Linear resampling along the last axis to `n_out` slices, keeping the slab's extent.

  Slice centres move to (m + 0.5) * n_in / n_out - 0.5 (pixel edges kept, as
  ingest does in-plane), clamped at the ends.
  """
  n_in = x.shape[-1]
  position = jnp.clip((jnp.arange(n_out) + 0.5) * n_in / n_out - 0.5, 0.0, n_in - 1.0)
  below = jnp.floor(position).astype(jnp.int32)
  above = jnp.minimum(below + 1, n_in - 1)
  weight = (position - below).astype(jnp.float32)
  x = jnp.asarray(x, jnp.float32)
  return jnp.take(x, below, axis=-1) * (1 - weight) + jnp.take(x, above, axis=-1) * weight


def skull_slices(volume, mask, n_out: int = 32):
  """(HU float32 [i, j, n_out], mask uint8 [i, j, n_out]): linear, mask thresholded at 0.5."""
  return (resize_slices(volume, n_out),
          (resize_slices(mask, n_out) >= 0.5).astype(jnp.uint8))


@functools.cache
def _skull_resampler(n_slices: int):
  return jax.jit(lambda v, m: skull_slices(v, m, n_slices))


def skull_set(prepared: Prepared, split=None, group_value=None, n_slices: int = 32) -> dict:
  """volumes float32 [n, i, j, n_slices] HU and masks uint8 [n, i, j, n_slices]."""
  rows = select(prepared, split, group_value)
  volumes, spacing = _stack(prepared, rows, volume_path, np.int16)
  masks, _ = _stack(prepared, rows, mask_path, np.uint8)
  if rows:
    spacing = spacing * np.array([1.0, 1.0, volumes.shape[-1] / n_slices])
    resample = _skull_resampler(n_slices)
    pairs = [resample(v, m) for v, m in zip(volumes, masks)]  # one at a time: host memory
    volumes = np.stack([np.asarray(v) for v, _ in pairs])
    masks = np.stack([np.asarray(m) for _, m in pairs])
  return dict(volumes=np.asarray(volumes), masks=np.asarray(masks), spacing=spacing,
              **_common(prepared, rows))


def skull_input(volume, level: float = window.SPHERES[0], width: float = window.SPHERES[1]):
  """Segmentation input: "the same normalization as in the classification experiments"
  (3.3.3) read as the Spheres brain window, since both are 3D brain tasks."""
  return window.window(volume, level, width, 0.0, 1.0)
