"""Controls for Name the Manufacturer: the noise-texture probe (a positive control,
the signal's ceiling) and permutation p-values.

The probe (evaluate/probe.py) reads each study's ingested volume inside its brain
mask (the prepare stage's), fits on the training split, scores the test split. Its
AUROC interval is the stratified study bootstrap of evaluate/bootstrap.py, its
accuracy interval Wilson's (it does not collapse to a point at 0 or 100 %).
"""
import numpy as np

from scanbias_jax import keys
from scanbias_jax.evaluate import bootstrap, metrics, probe
from scanbias_jax.experiments import datasets

N_PERMUTATIONS = 10000


def binary_scores(key, labels, scores, n_resamples: int, clusters=None) -> dict:
  """Metrics of 0/1 labels and scores with intervals and a permutation p-value;
  `clusters` (a unit per study, e.g. a traveling head): intervals resample units and
  the permutations shuffle labels within units."""
  labels = np.asarray(labels).astype(int)
  point = metrics.classification(labels, scores)
  ci = bootstrap.classification_ci(keys.stream(key, "bootstrap"), labels, scores, n_resamples,
                                   clusters=clusters)
  out = dict(n=int(labels.size), accuracy=point["accuracy"], auroc=point["auroc"],
             accuracy_ci=ci["accuracy"], auroc_ci=ci["auroc"],
             accuracy_ci_method=ci["methods"]["accuracy"],
             auroc_ci_method=ci["methods"]["auroc"],
             permutation_p=probe.permutation_p_value(
                 keys.numpy_rng(keys.stream(key, "permutation")), labels, scores,
                 N_PERMUTATIONS, clusters),
             n_permutations=N_PERMUTATIONS)
  if clusters is not None:
    out.update(n_units=int(np.unique(clusters).size), permutation="within units")
  return out


def study_features(prepared: datasets.Prepared, rows) -> tuple[np.ndarray, list[str]]:
  """(features of the rows whose brain holds a texture square, why each other row has
  none); the kept rows keep their order."""
  table, skipped = [], []
  for row in rows:
    volume, spacing = datasets.read_nifti(datasets.volume_path(prepared, row))
    mask, _ = datasets.read_nifti(datasets.mask_path(prepared, row))
    try:
      table.append(probe.texture_features(volume, mask, float(spacing[0])))
    except ValueError as error:
      table.append(None)
      skipped.append(f"study {row['study_id']}: {error}")
  return table, skipped


def texture_probe(config, prepared: datasets.Prepared, key) -> dict:
  """The probe on the train and test splits (binary: two groups), or a reason."""
  groups = list(prepared.group_values)
  if len(groups) != 2:
    return {"reason": f"the probe control is binary here; {len(groups)} groups"}
  data, skipped = {}, []
  for split in ("train", "test"):
    rows = datasets.select(prepared, split)
    features, why = study_features(prepared, rows)
    skipped += why
    kept = [(f, groups.index(r[prepared.group]), r["study_id"])
            for f, r in zip(features, rows) if f is not None]
    data[split] = (np.array([f for f, _, _ in kept]), np.array([y for _, y, _ in kept]),
                   [study_id for _, _, study_id in kept])
  (train_x, train_y, _), (test_x, test_y, test_ids) = data["train"], data["test"]
  if len(set(train_y.tolist())) < 2 or len(set(test_y.tolist())) < 2:
    return {"reason": "too few studies with a measurable brain texture "
                      f"({len(skipped)} without)", "skipped": skipped}
  scores = probe.fit_and_score(train_x, train_y, test_x)[:, 1]
  out = binary_scores(key, test_y, scores, config.experiments.bootstrap_resamples,
                      datasets.repeated_units(prepared, test_ids))
  return dict(out, positive_class=groups[1], features=probe.feature_names(),
              n_train=len(train_y), skipped=skipped)
