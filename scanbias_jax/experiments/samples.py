"""Sample slices for the report (paper Figs. 1-3): per group, one study without a
sphere, one with an Easy sphere, one with a small (Hard) sphere, and a brain mask."""
import jax
import numpy as np

from scanbias_jax.experiments import datasets
from scanbias_jax.lesions import spheres as spheres_lib


def _sphere_slice(prepared, difficulty, row):
  """HU slice through the centre of the row's sphere, and the sphere's outline."""
  original, spacing = datasets.read_nifti(datasets.volume_path(prepared, row))
  specs, voxel_keys = datasets.sphere_specs(prepared, [row], difficulty, spacing)
  spec = jax.tree.map(lambda a: a[0], specs)
  reach = spheres_lib.reach(max(float(prepared.settings["spheres"]["large_radius_mm"][1]),
                                float(spec.radius_mm)), spacing)
  volume = np.asarray(spheres_lib.inserted_and_mask(original, spec, voxel_keys[0], reach)[0])
  k = int(round(float(spec.centre[2])))
  return volume[..., k], (volume != original)[..., k].astype(np.uint8)


def sample_slices(prepared: datasets.Prepared) -> dict:
  out = {}
  for group in prepared.group_values:
    rows = datasets.select(prepared, None, group)
    entry = {}
    negative = [r for r in rows if not int(r["label"])]
    if negative:
      volume, _ = datasets.read_nifti(datasets.volume_path(prepared, negative[0]))
      mask, _ = datasets.read_nifti(datasets.mask_path(prepared, negative[0]))
      k = volume.shape[-1] // 2
      entry.update(without_sphere=volume[..., k], brain_mask=mask[..., k])
    large = [r for r in rows if int(r["label"]) and not int(r.get("small_hard", 0) or 0)]
    small = [r for r in rows if int(r["label"]) and int(r.get("small_hard", 0) or 0)]
    if large:
      entry["with_sphere"], entry["sphere_mask"] = _sphere_slice(prepared, "easy", large[0])
    if small:
      entry["with_small_sphere"], entry["small_sphere_mask"] = _sphere_slice(
          prepared, "hard", small[0])
    out[group] = entry
  return out
