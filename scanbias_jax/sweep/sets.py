"""The data sets of one prepared cohort, built once for every point that trains on it.

A point trains on a subset of the training and validation studies (its mix) and is
tested on the whole test split, both vendors, the same heads at every point. So each
set is built once for the cohort with the study of every sample, and a point takes its
rows (`rows_of`): the spheres of a sample do not depend on which other studies are in
the set (every draw is keyed by its study).
"""
import dataclasses

import numpy as np

from scanbias_jax.experiments import datasets, segmentation, spheres


@dataclasses.dataclass
class Arrays:
  x: np.ndarray
  y: np.ndarray
  study_ids: np.ndarray   # [n] str: the study of each sample
  units: np.ndarray       # [n] int32: the head (traveling anatomy) of each sample
  groups: np.ndarray      # [n] int32: index into prepared.group_values

  def rows_of(self, studies) -> "Arrays":
    keep = np.isin(self.study_ids, np.asarray(sorted(studies)))
    return Arrays(*(a[keep] for a in dataclasses.astuple(self)))

  def group(self, index: int) -> "Arrays":
    keep = self.groups == index
    return Arrays(*(a[keep] for a in dataclasses.astuple(self)))


def _arrays(x, y, data) -> Arrays:
  return Arrays(x=x, y=np.asarray(y), study_ids=np.asarray(data["study_ids"]),
                units=np.asarray(data["units"], np.int32),
                groups=np.asarray(data["groups"], np.int32))


def check_design(config) -> None:
  settings = config.experiments
  if not settings.spheres_train_copies or spheres.test_design(config) != "paired":
    raise ValueError("a sweep trains on the paired sphere sets: experiments."
                     "spheres_train_copies > 0 and experiments.spheres_test = 'paired'")


def sphere_sets(config, prepared: datasets.Prepared, difficulties) -> dict:
  """{difficulty: {split: Arrays}} of the paired sphere sets (training: c copies with
  and c without a sphere; validation and test: `spheres_eval_copies` of each)."""
  check_design(config)
  acquired = spheres.insertion(config, prepared) == "acquired"
  outside = spheres.outside_brain_hu(config)
  copies = dict(train=config.experiments.spheres_train_copies,
                val=spheres.eval_copies(config), test=spheres.eval_copies(config))
  draws = {split: datasets.paired_draws(prepared, datasets.select(prepared, split), n)
           for split, n in copies.items()}
  memos = {split: {} for split in copies}  # shared by the difficulties of a split
  out = {}
  for difficulty in difficulties:
    out[difficulty] = {}
    for split in copies:
      data = datasets.paired_spheres_set(prepared, difficulty, draws[split], split,
                                         outside_brain_hu=outside, acquired=acquired)
      x, y = spheres.build(config, data, datasets.sphere_reach(prepared, data),
                           memos[split], acquired)
      out[difficulty][split] = _arrays(x, y, data)
  return out


def segmentation_sets(config, prepared: datasets.Prepared) -> dict:
  """{split: Arrays} of the skull-stripping sets (x windowed and resized, y the masks)."""
  out = {}
  for split in ("train", "val", "test"):
    data = datasets.skull_set(prepared, split, None, config.prepare.skull_slices)
    x, masks = segmentation.inputs(config, data)
    out[split] = _arrays(x, masks, data)
  return out
