"""Name the Manufacturer's inputs at the scanner's own texture: stacks of brain crops.

A crop is a `size` x `size` square of in-plane pixels, at the ingest grid's
resolution, that lies inside the brain mask on `n_slices` distinct slices; those
slices are stacked as channels (the paper's 3-slice stack, cut to the brain) and
windowed as the paper's Original set. Whole slices at 256 x 256 cost 30x the
compute of a 48 x 48 crop and are mostly air, bone and scalp, where the vendors'
noise texture is hidden by anatomy; crops keep every pixel of texture the grid has.

A study gives `per_study` crops drawn from its own key (`crop_key`), so its crops
depend on the study alone, not on the cohort or the split.
"""
import jax
import numpy as np
from scipy import ndimage

from scanbias_jax import keys
from scanbias_jax.experiments import datasets
from scanbias_jax.preprocess import window

MIN_BRAIN_FRACTION = 0.95   # of a crop's pixels inside the mask, when the brain allows it


def crop_key(prepared: datasets.Prepared, study_id: str, purpose: str) -> jax.Array:
  return keys.stream(keys.stream(prepared.key, f"brain_crops/{purpose}"), study_id)


def brain_fraction(mask: np.ndarray, size: int) -> np.ndarray:
  """float32 [i - size + 1, j - size + 1, k]: the share of brain in the crop whose
  top-left corner is (i, j) on slice k."""
  inside = ndimage.uniform_filter(np.asarray(mask, np.float32), size=(size, size, 1),
                                  mode="constant", origin=(-(size // 2),) * 2 + (0,))
  return inside[:mask.shape[0] - size + 1, :mask.shape[1] - size + 1]


def crop_positions(mask: np.ndarray, size: int, per_study: int, n_slices: int,
                   rng: np.random.Generator) -> list[tuple[int, int, np.ndarray]]:
  """`per_study` crops (i0, j0, slices [n_slices]) inside a brain mask [i, j, k].

  A corner qualifies when its crop is at least MIN_BRAIN_FRACTION brain on
  `n_slices` slices; a small brain that has no such corner lowers the bar to the
  best corners it has. Corners are drawn uniformly, then `n_slices` distinct
  qualifying slices at that corner in random order.
  Raises ValueError when the mask has no brain or fewer than n_slices slices.
  """
  mask = np.asarray(mask, bool)
  if mask.shape[-1] < n_slices or min(mask.shape[:2]) < size:
    raise ValueError(f"mask {mask.shape} is too small for {n_slices} slices of {size} px crops")
  if not mask.any():
    raise ValueError("the brain mask is empty: no crop to draw")
  fraction = brain_fraction(mask, size)
  # The n_slices-th best slice of each corner: the bar its crop stack can meet.
  reachable = np.sort(fraction, axis=-1)[..., -n_slices]
  bar = min(MIN_BRAIN_FRACTION, float(reachable.max()))
  corners = np.argwhere(reachable >= bar)
  out = []
  for row in rng.integers(0, len(corners), per_study):
    i0, j0 = corners[row]
    qualifying = np.flatnonzero(fraction[i0, j0] >= bar)
    out.append((int(i0), int(j0), rng.permutation(qualifying)[:n_slices]))
  return out


def study_crops(volume: np.ndarray, mask: np.ndarray, size: int, per_study: int,
                n_slices: int, key: jax.Array, level: float = window.ORIGINAL[0],
                width: float = window.ORIGINAL[1]) -> np.ndarray:
  """float32 [per_study, size, size, n_slices] windowed to [-1, 1]."""
  positions = crop_positions(mask, size, per_study, n_slices, keys.numpy_rng(key))
  crops = np.stack([volume[i0:i0 + size, j0:j0 + size][..., slices]
                    for i0, j0, slices in positions]).astype(np.float32)
  return np.asarray(window.window(crops, level, width, -1.0, 1.0), np.float32)


def crop_set(prepared: datasets.Prepared, split, group_value, size: int, per_study: int,
             n_slices: int, purpose: str, **window_args) -> dict:
  """x float32 [n * per_study, size, size, n_slices], y float32 [n * per_study],
  study int32 [n * per_study] (the row of `labels`/`study_ids` each crop comes from),
  labels int32 [n], study_ids [n]; a study whose mask admits no crop is left out
  and named in `skipped`."""
  rows = datasets.select(prepared, split, group_value)
  x, study, kept, skipped = [], [], [], []
  for row in rows:
    volume, _ = datasets.read_nifti(datasets.volume_path(prepared, row))
    mask, _ = datasets.read_nifti(datasets.mask_path(prepared, row))
    try:
      crops = study_crops(volume, mask, size, per_study, n_slices,
                          crop_key(prepared, row["study_id"], purpose), **window_args)
    except ValueError as error:
      skipped.append(f"study {row['study_id']}: {error}")
      continue
    x.append(crops)
    study += [len(kept)] * per_study
    kept.append(row)
  labels = np.array([prepared.group_values.index(r[prepared.group]) for r in kept], np.int32)
  x = np.concatenate(x) if x else np.zeros((0, size, size, n_slices), np.float32)
  study = np.array(study, np.int32)
  return dict(x=x, y=labels[study].astype(np.float32) if len(kept) else np.zeros(0, np.float32),
              study=study, labels=labels, study_ids=[r["study_id"] for r in kept],
              skipped=skipped)


def select_studies(data: dict, keep) -> dict:
  """The `crop_set` dict of the studies where `keep` [n_studies] is True (renumbered)."""
  keep = np.asarray(keep, bool)
  rows = keep[data["study"]]
  renumbered = (np.cumsum(keep) - 1).astype(np.int32)
  return dict(x=data["x"][rows], y=data["y"][rows], study=renumbered[data["study"][rows]],
              labels=data["labels"][keep],
              study_ids=[s for s, k in zip(data["study_ids"], keep) if k], skipped=[])


def per_study_scores(crop_scores: np.ndarray, study: np.ndarray, n_studies: int) -> np.ndarray:
  """[..., n_crops] probabilities -> [..., n_studies]: each study's mean over its crops."""
  membership = np.asarray(study)[:, None] == np.arange(n_studies)
  return (crop_scores @ membership) / membership.sum(0)


def flip_augment(key: jax.Array, crop):
  """A random horizontal and vertical flip of one crop [size, size, c] (noise texture
  and anatomy are both mirror-plausible)."""
  flips = jax.random.bernoulli(key, 0.5, (2,))
  crop = jax.numpy.where(flips[0], crop[::-1], crop)
  return jax.numpy.where(flips[1], crop[:, ::-1], crop)
