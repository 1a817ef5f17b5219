"""Sphere classification (paper 3.3.2): easy / medium / hard x training condition.

Inputs are the ingested volumes with the study's sphere inserted (positives),
windowed 50/100 -> [0, 1], then resampled to `experiments.spheres_shape` (the
paper's 256 x 256 x 35 in configs/paper.py, smaller on CPU).

`experiments.spheres_train_copies` = c > 0 trains on the paired set instead
(datasets.paired_spheres_set): every training study c times without a sphere and
c times with one. `experiments.spheres_test = "paired"` scores every validation
and test study twice, once with and once without a sphere (`paired_spheres_set`
with one copy): twice the samples, and the anatomy cannot stand in for the label;
the intervals then resample whole studies (evaluate/bootstrap.py). "paper": each
study once, with its own label. `experiments.spheres_eval_copies` = c scores every
paired validation and test study c times with and c times without a sphere: the
detection rate of a head is then measured over c sphere positions, and the intervals
still resample whole heads with all their copies.

`experiments.spheres_insertion`: "acquired" (the sphere through each study's scanner,
lesions/spheres.insert_acquired: what a real lesion looks like), "painted" (the
paper's), or "auto" (acquired where prepare knows every study's scanner, i.e. the
synthetic cohort; painted on an export without truth). `experiments.spheres_beside`:
difficulties also run with the other insertion, under "<difficulty>_<insertion>".
"""
import functools
import os

import jax
import numpy as np

from scanbias_jax import keys
from scanbias_jax.evaluate import results
from scanbias_jax.experiments import common, datasets, planted

TASK = "spheres"


def sample_shapes(config) -> dict:
  """Per-sample shapes of inputs and labels, all float32 (`precompile` builds from these)."""
  shape = tuple(config.experiments.spheres_shape)
  return dict(train_x=shape + (1,), eval_x=shape + (1,), y=())


def augment(config):
  """A random left-right mirror per sample and epoch (`experiments.spheres_flip`): a
  head is mirror-plausible, and 60 training studies are few."""
  return mirror if config.experiments.spheres_flip else None


def mirror(key: jax.Array, x):
  """x [i, j, k, c] flipped along i (left-right) with probability 1/2."""
  return jax.numpy.where(jax.random.bernoulli(key), x[::-1], x)


INSERTIONS = ("acquired", "painted")


def insertion(config, prepared) -> str:
  """The sphere insertion this run uses ("auto" resolved)."""
  kind = config.experiments.spheres_insertion
  if kind not in ("auto", *INSERTIONS):
    raise ValueError(f"experiments.spheres_insertion must be 'auto', 'acquired' or "
                     f"'painted', got {kind!r}")
  if kind == "auto":
    return "acquired" if datasets.can_acquire(prepared) else "painted"
  return kind


def beside(config, prepared) -> dict:
  """{result key: (difficulty, insertion)} of the runs with the other insertion."""
  other = INSERTIONS[1 - INSERTIONS.index(insertion(config, prepared))]
  if other == "acquired" and not datasets.can_acquire(prepared):
    return {}
  return {f"{d}_{other}": (d, other) for d in config.experiments.spheres_beside}


def split_sets(config, prepared, difficulty: str, split: str, draws=None,
               memo: dict | None = None, shift_hu: float = 0.0,
               acquired: bool = False) -> tuple[dict, np.ndarray]:
  """({"mixed": (x, y[, clusters]), group value: its rows of them}, groups) of one split,
  built once (a group's set is the mixed set's rows of that group, in the same order;
  `groups` indexes prepared.group_values per mixed sample). With `draws` (one copy a
  study): the paired set. Where a unit (a study, or a traveling head) gives several
  samples, each set carries clusters: the unit of each sample."""
  outside = outside_brain_hu(config)
  if draws is None:
    data = datasets.spheres_set(prepared, difficulty, split, outside_brain_hu=outside,
                                acquired=acquired)
  else:
    data = datasets.paired_spheres_set(prepared, difficulty, draws, split,
                                       outside_brain_hu=outside, acquired=acquired)
  if shift_hu:
    data = dict(data, volumes=planted.calibration_shift(data["volumes"], shift_hu))
    if acquired:  # the lesion is acquired by the shifted scanner too
      response = data["specs"].response
      data["specs"] = data["specs"].replace(response=response.replace(
          offset_hu=np.asarray(response.offset_hu) + np.float32(shift_hu)))
  arrays = build(config, data, datasets.sphere_reach(prepared, data), memo, acquired)
  if datasets.repeats(data["units"]):
    arrays = (*arrays, data["units"])
  return common.by_condition(prepared.group_values, data["groups"], *arrays), data["groups"]


def build(config, data: dict, reach_voxels=None, memo: dict | None = None,
          acquired: bool = False):
  """(x, y) of a `spheres_set` or `paired_spheres_set` dict: spheres inserted (in a box
  of `reach_voxels` about the centre, `spheres.insert_sphere`), windowed, cut to the
  brain box (`crop_size`), resized to `experiments.spheres_shape`, 8 samples at a time.
  A sample without a sphere is its volume alone: built once for all its copies.
  `memo` (a dict kept over the difficulties of one split) holds every sample built,
  keyed by its volume, sphere and voxel key: Medium and Hard share Easy's sphere-free
  samples and every positive whose sphere is not small."""
  shape = tuple(config.experiments.spheres_shape)
  n = len(data["labels"])
  if not n:
    return np.zeros((0, *shape, 1), np.float32), np.zeros(0, np.float32)
  memo = {} if memo is None else memo
  source = data.get("source", np.arange(n))
  size = crop_size(config, data["volumes"].shape[1:], data["spacing"])
  starts = (None if size is None else
            datasets.crop_starts(data["brain_centres"], data["volumes"].shape[1:], size)[source])
  batch = _batcher(*config.prepare.spheres_window, reach_voxels, size, acquired)
  names = _sample_names(data, source)
  firsts = {}  # name -> its first sample, for names not built yet
  for m, name in enumerate(names):
    if name not in memo:
      firsts.setdefault(name, m)
  missing = np.array(list(firsts.values()), np.int64)
  for i in range(0, len(missing), 8):
    rows = missing[np.minimum(np.arange(i, i + 8), len(missing) - 1)]  # padded: one compilation
    made = common.resize(batch(data["volumes"][source[rows]],
                               jax.tree.map(lambda a: np.asarray(a)[rows], data["specs"]),
                               keys.take(data["voxel_keys"], rows),
                               None if starts is None else starts[rows]), shape)
    memo.update({names[m]: made[j] for j, m in enumerate(rows)})
  return np.stack([memo[name] for name in names])[..., None], data["labels"].astype(np.float32)


def _sample_names(data: dict, source) -> list[bytes]:
  """What makes each sample: its volume (the row of `volumes`: the same study in every
  set of one split), and its sphere (spec and voxel key) if it has one."""
  present = np.asarray(data["specs"].present)
  leaves = [np.asarray(leaf) for leaf in jax.tree.leaves(data["specs"])]
  key_data = np.asarray(jax.random.key_data(data["voxel_keys"]))
  names = []
  for m, volume in enumerate(source):
    name = str(int(volume)).encode()
    if present[m]:
      name = b"|".join([name, b"".join(leaf[m].tobytes() for leaf in leaves),
                        key_data[m].tobytes()])
    names.append(name)
  return names


def outside_brain_hu(config) -> float | None:
  """What the network sees outside the brain mask: None (the head as scanned, the
  paper's) or air (`experiments.spheres_input = "brain"`)."""
  kind = config.experiments.spheres_input
  if kind not in ("head", "brain"):
    raise ValueError(f"experiments.spheres_input must be 'head' or 'brain', got {kind!r}")
  return float(config.ingest.volume.air_hu) if kind == "brain" else None


def crop_size(config, volume_shape, spacing) -> tuple | None:
  """Voxels of the `experiments.spheres_crop_mm` box (at most the volume), None = no crop.

  A box of fixed millimetres, centred on each study's brain, keeps every head at
  one scale while the network's voxels cover less than the whole field of view."""
  crop_mm = tuple(config.experiments.spheres_crop_mm or ())
  if not crop_mm:
    return None
  size = np.minimum(np.round(np.asarray(crop_mm) / np.asarray(spacing)).astype(int),
                    np.asarray(volume_shape))
  return tuple(int(v) for v in np.maximum(size, 1))


def training_sets(config, prepared, difficulty: str, draws, memo: dict | None = None,
                  acquired: bool = False) -> dict:
  """condition -> (x, y) training set: the paper's, or paired when `draws` is given."""
  if draws is None:
    return split_sets(config, prepared, difficulty, "train", memo=memo, acquired=acquired)[0]
  paired = datasets.paired_spheres_set(prepared, difficulty, draws, "train",
                                       outside_brain_hu=outside_brain_hu(config),
                                       acquired=acquired)
  return common.by_condition(prepared.group_values, paired["groups"],
                            *build(config, paired, datasets.sphere_reach(prepared, paired), memo,
                                   acquired))


@functools.cache
def _batcher(level: float, width: float, reach_voxels, size, acquired: bool = False):
  return jax.jit(lambda v, s, k, starts: datasets.spheres_batch(
      v, s, k, reach_voxels, starts, size, acquired, level=level, width=width))


def run_condition(config, prepared, difficulty: str, condition: str, key: jax.Array,
                  workdir: str, train: tuple, val: tuple, tests: tuple[dict, np.ndarray],
                  planted_tests: dict | None = None, inserted: str = "painted") -> dict:
  """`tests`: `split_sets`' (sets, groups) of the test split; the mixed set is scored
  once and each group's scores are its rows (the groups' sets are its rows too).
  `planted_tests`: its sets with the planted harm; a single-group condition scores the
  other groups' too."""
  ens, variables, _ = common.fit(config, TASK, keys.stream(key, "train"),
                                 dict(x=train[0], y=train[1]), dict(x=val[0], y=val[1]),
                                 os.path.join(workdir, TASK, difficulty, condition),
                                 augment=augment(config))
  sets, groups = tests
  scores = common.by_condition(prepared.group_values, groups,
                               common.predict(ens, variables, sets[results.MIXED][0]).T)
  scored = {name: (data[1], scores[name][0].T, *data[2:]) for name, data in sets.items()}
  planted_scored = {
      other: (data[1], common.predict(ens, variables, data[0]), *data[2:])
      for other, data in (planted_tests or {}).items()
      if condition != results.MIXED and other not in (results.MIXED, condition)}
  settings = config.experiments
  out = results.classification_condition(
      keys.stream(key, "evaluate"), condition,
      (val[1], common.predict(ens, variables, val[0]), *val[2:]), scored, settings.select_k,
      positive_class="sphere", n_resamples=settings.bootstrap_resamples,
      planted=planted_scored)
  copies = settings.spheres_train_copies
  out["training_set"] = dict(kind="paired" if copies else "paper", copies=copies,
                             samples=int(len(train[1])), positives=int(train[1].sum()))
  out["test_set"] = dict(kind=test_design(config), copies=eval_copies(config),
                         input=settings.spheres_input, insertion=inserted)
  return out


def test_design(config) -> str:
  design = config.experiments.spheres_test
  if design not in ("paper", "paired"):
    raise ValueError(f"experiments.spheres_test must be 'paper' or 'paired', got {design!r}")
  return design


def eval_copies(config) -> int:
  """Sphere positions per paired validation / test study (1 for the paper's sets)."""
  if test_design(config) != "paired":
    return 1
  copies = int(config.experiments.spheres_eval_copies)
  if copies < 1:
    raise ValueError(f"experiments.spheres_eval_copies must be >= 1, got {copies}")
  return copies


def run(config, prepared: datasets.Prepared, key: jax.Array, workdir: str, pool=None) -> dict:
  """{difficulty: {condition: Condition}}, plus {"<difficulty>_<insertion>": its
  single-group conditions} of `beside`. With `pool` (common.condition_pool) a
  difficulty's conditions train there while the next difficulty's sets are built."""
  copies = config.experiments.spheres_train_copies
  draws = (datasets.paired_draws(prepared, datasets.select(prepared, "train"), copies)
           if copies else None)
  evaluated = {}
  if test_design(config) == "paired":
    evaluated = {split: datasets.paired_draws(prepared, datasets.select(prepared, split),
                                              eval_copies(config))
                 for split in ("val", "test")}
  main = insertion(config, prepared)
  runs = {d: (d, main) for d in config.experiments.difficulties}
  runs.update(beside(config, prepared))
  pending = {}
  memos = {}  # per insertion, shared by its difficulties
  shift = planted.planted_hu(config, prepared.group_values)
  for name, (difficulty, inserted) in runs.items():
    memo = memos.setdefault(inserted, {"train": {}, "val": {}, "test": {}, "planted": {}})
    acquired = inserted == "acquired"
    tests = split_sets(config, prepared, difficulty, "test", evaluated.get("test"), memo["test"],
                       acquired=acquired)
    # Beside runs answer one question, the cross-group harm under the other insertion:
    # its single-group conditions only, without the planted control (the main runs have it).
    side = name != difficulty
    planted_tests = (split_sets(config, prepared, difficulty, "test", evaluated.get("test"),
                                memo["planted"], shift, acquired)[0]
                     if shift and not side else None)
    val, _ = split_sets(config, prepared, difficulty, "val", evaluated.get("val"), memo["val"],
                        acquired=acquired)
    train = training_sets(config, prepared, difficulty, draws, memo["train"], acquired)
    pending[name] = {
        condition: common.submit(pool, run_condition, config, prepared, name, condition,
                                 keys.stream(key, f"{name}/{condition}"), workdir,
                                 train[condition], val[condition], tests, planted_tests,
                                 inserted)
        for condition in common.conditions(prepared.group_values)
        if not (side and condition == results.MIXED)}
  return {name: {condition: done.result() for condition, done in conditions.items()}
          for name, conditions in pending.items()}
