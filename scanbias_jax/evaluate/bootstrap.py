"""95% intervals of one test set's member-averaged output: percentile bootstrap for
AUROC and Dice, Wilson score for the proportions of studies (accuracy, sensitivity,
specificity; evaluate/comparisons.py), which a bootstrap collapses to a point at 0
or 100 %. Differences between two test sets are evaluate/harm.py's.

Classification resamples are stratified by class: each resample draws the
positives from the positives and the negatives from the negatives, with
replacement, so every resample has both classes (when the data does) and the
class balance of the test set. All resamples are drawn at once and the metrics
are computed vectorised; AUROC uses the Mann-Whitney rank form, which equals
scikit-learn's `roc_auc_score` (ties counted one half). The numpy Generator is
seeded from a JAX key through `keys.numpy_rng`, so a key gives the same interval.

With `clusters` (a study id per sample, where a study gives several samples: the
paired sphere test), the bootstrap resamples whole studies, never samples, and the
proportions use the effective sample size (`comparisons.effective_n`).
"""
import jax
import numpy as np
from scipy import stats

from scanbias_jax import keys
from scanbias_jax.evaluate import comparisons, metrics

NAN = float("nan")


def _percentile_interval(values: np.ndarray, level: float) -> list[float]:
  tail = 100.0 * (1.0 - level) / 2.0
  low, high = np.percentile(values, [tail, 100.0 - tail])
  return [float(low), float(high)]


def stratified_indices(rng: np.random.Generator, labels: np.ndarray,
                       n_resamples: int) -> np.ndarray:
  """(n_resamples, N) indices; column block c always draws from class c."""
  blocks = []
  for value in (0, 1):
    members = np.flatnonzero(labels == value)
    if members.size:
      blocks.append(members[rng.integers(0, members.size, (n_resamples, members.size))])
  return np.concatenate(blocks, axis=1)


def cluster_members(clusters) -> np.ndarray | list[np.ndarray]:
  """Sample indices of each cluster (sorted ids): an array (n_clusters, size) when every
  cluster has the same size, else a list of arrays."""
  _, cluster_of = np.unique(np.asarray(clusters).ravel(), return_inverse=True)
  sizes = np.bincount(cluster_of)
  if (sizes == sizes[0]).all():
    return np.argsort(cluster_of, kind="stable").reshape(sizes.size, sizes[0])
  return [np.flatnonzero(cluster_of == c) for c in range(sizes.size)]


def cluster_indices(rng: np.random.Generator, clusters: np.ndarray,
                    n_resamples: int) -> list[np.ndarray] | np.ndarray:
  """Per resample, the sample indices of `n_clusters` clusters drawn with replacement:
  an array (n_resamples, N) when every cluster has the same size, else a list."""
  members = cluster_members(clusters)
  draws = rng.integers(0, len(members), (n_resamples, len(members)))
  if isinstance(members, np.ndarray):
    return members[draws].reshape(n_resamples, -1)
  return [np.concatenate([members[c] for c in row]) for row in draws]


def clustered_auroc(rng: np.random.Generator, labels: np.ndarray, scores: np.ndarray,
                    clusters: np.ndarray, n_resamples: int) -> np.ndarray:
  """AUROC of each cluster resample; resamples with a single class are left out."""
  index = cluster_indices(rng, clusters, n_resamples)
  if isinstance(index, np.ndarray):
    y = labels[index]
    both = (y.sum(1) > 0) & (y.sum(1) < y.shape[1])
    return resampled_auroc(y[both], scores[index][both])
  values = []
  for rows in index:
    y = labels[rows]
    if 0 < y.sum() < y.size:
      values.append(resampled_auroc(y[None], scores[rows][None])[0])
  return np.asarray(values)


def resampled_auroc(labels: np.ndarray, scores: np.ndarray) -> np.ndarray:
  """AUROC of each row of (B, N) labels/scores (both classes in every row)."""
  ranks = stats.rankdata(scores, axis=1)
  n_pos = labels.sum(axis=1)
  n_neg = labels.shape[1] - n_pos
  rank_sum = (ranks * labels).sum(axis=1)
  return (rank_sum - n_pos * (n_pos + 1) / 2.0) / (n_pos * n_neg)


def classification_ci(key: jax.Array, labels, scores, n_resamples: int = 1000,
                      level: float = 0.95, threshold: float = 0.5, clusters=None) -> dict:
  """95% intervals {metric: [low, high]} of the four classification metrics: Wilson
  for the proportions, the stratified percentile bootstrap for AUROC.

  Also returns `reasons` (metric -> why it has no interval), `methods`,
  `n_resamples` and `level`. A metric undefined on the data (see
  `metrics.classification`) has interval [NaN, NaN].
  """
  labels = np.asarray(labels).astype(int).ravel()
  scores = np.asarray(scores, dtype=np.float64).ravel()
  point = metrics.classification(labels, scores, threshold)
  proportion = comparisons.PROPORTION_CI if clusters is None else (
      comparisons.CLUSTERED_PROPORTION_CI)
  out = dict(n_resamples=int(n_resamples), level=float(level), reasons={},
             methods=dict(accuracy=proportion, sensitivity=proportion, specificity=proportion,
                          auroc="stratified study bootstrap" if clusters is None else
                          "study (cluster) bootstrap"))
  undefined = {m for m in metrics.CLASSIFICATION if not np.isfinite(point[m])}
  for name in undefined:
    out[name] = [NAN, NAN]
    out["reasons"][name] = point["reasons"].get(name, "undefined")
  if clusters is None:
    for name, (successes, n) in _proportions(labels, scores, threshold).items():
      if name not in undefined:
        out[name] = comparisons.wilson(successes, n, level)
  else:
    clusters = np.asarray(clusters).ravel()
    for name, (correct, members) in _correct(labels, scores, threshold).items():
      if name not in undefined:
        n_eff = comparisons.effective_n(correct[members], clusters[members])
        out[name] = comparisons.wilson_at(float(correct[members].mean()), n_eff, level)
        out.setdefault("n_eff", {})[name] = n_eff
  if "auroc" not in undefined:  # both classes present
    rng = keys.numpy_rng(key)
    if clusters is None:
      index = stratified_indices(rng, labels, n_resamples)
      values = resampled_auroc(labels[index], scores[index])
    else:
      values = clustered_auroc(rng, labels, scores, clusters, n_resamples)
    out["auroc"] = _percentile_interval(values, level)
    if out["auroc"][0] == out["auroc"][1]:
      # Every resample ranks the classes alike (AUROC 0 or 1): the bootstrap has
      # conditioned the uncertainty away. The score interval at the units does not.
      units = np.arange(labels.size) if clusters is None else clusters
      n_pos, n_neg = (len(np.unique(units[labels == c])) for c in (1, 0))
      out["auroc"] = comparisons.auroc_score_interval(point["auroc"], n_pos, n_neg, level)
      out["methods"]["auroc"] = comparisons.AUROC_EDGE_CI
  return out


def _correct(labels: np.ndarray, scores: np.ndarray, threshold: float) -> dict:
  """{accuracy | sensitivity | specificity: (correct [N] bool, the samples it counts)}."""
  correct = (scores >= threshold) == (labels == 1)
  return dict(accuracy=(correct, np.ones(labels.size, bool)), sensitivity=(correct, labels == 1),
              specificity=(correct, labels == 0))


def _proportions(labels: np.ndarray, scores: np.ndarray, threshold: float) -> dict:
  """{accuracy | sensitivity | specificity: (studies right, studies)}."""
  return {name: (int(correct[counted].sum()), int(counted.sum()))
          for name, (correct, counted) in _correct(labels, scores, threshold).items()}


def mean_ci(key: jax.Array, values, n_resamples: int = 1000, level: float = 0.95,
            name: str = "dice", clusters=None) -> dict:
  """Percentile interval of the mean of per-item values (e.g. per-volume Dice).

  Non-finite items (Dice of two empty masks) are left out before resampling; with
  `clusters` (a unit per item) whole units are resampled.
  """
  values = np.asarray(values, dtype=np.float64).ravel()
  finite = np.isfinite(values)
  values = values[finite]
  out = dict(n_resamples=int(n_resamples), level=float(level), reasons={})
  if values.size == 0:
    out[name], out["reasons"][name] = [NAN, NAN], "no defined values"
    return out
  rng = keys.numpy_rng(key)
  if clusters is None:
    means = values[rng.integers(0, values.size, (n_resamples, values.size))].mean(axis=1)
  else:
    units = np.asarray(clusters).ravel()[finite]
    index = cluster_indices(rng, units, n_resamples)
    means = (values[index].mean(axis=1) if isinstance(index, np.ndarray) else
             np.array([values[i].mean() for i in index]))
  out[name] = _percentile_interval(means, level)
  return out
