"""Bootstrap intervals: determinism, containment, stratification, coverage."""
import numpy as np
import pytest
from sklearn import metrics as skm

from scanbias_jax import keys
from scanbias_jax.evaluate import bootstrap, metrics


def _data(n=80, seed=0):
  rng = np.random.default_rng(seed)
  labels = np.repeat([0, 1], n // 2)
  scores = np.clip(0.35 + 0.3 * labels + 0.25 * rng.standard_normal(n), 0, 1)
  return labels, scores


def _key(seed=0):
  return keys.stream(keys.root(seed), "bootstrap")


def test_same_key_same_interval_other_key_other_interval():
  labels, scores = _data()
  first = bootstrap.classification_ci(_key(0), labels, scores, 300)
  again = bootstrap.classification_ci(_key(0), labels, scores, 300)
  other = bootstrap.classification_ci(_key(1), labels, scores, 300)
  assert first == again
  assert any(first[m] != other[m] for m in metrics.CLASSIFICATION)


def test_interval_contains_point_estimate():
  labels, scores = _data()
  point = metrics.classification(labels, scores)
  ci = bootstrap.classification_ci(_key(), labels, scores, 500)
  for name in metrics.CLASSIFICATION:
    low, high = ci[name]
    assert low <= point[name] <= high, name
    assert high > low, name
  assert ci["level"] == 0.95 and ci["n_resamples"] == 500


def test_resamples_are_stratified():
  labels = np.array([0, 1, 1, 0, 1, 1, 1])
  index = bootstrap.stratified_indices(keys.numpy_rng(_key()), labels, 50)
  drawn = labels[index]
  assert index.shape == (50, 7)
  assert (drawn.sum(axis=1) == 5).all()  # every resample keeps 5 positives, 2 negatives


def test_vectorised_auroc_matches_scikit_learn_with_ties():
  rng = np.random.default_rng(3)
  labels = np.tile(np.repeat([0, 1], 10), (6, 1))
  scores = rng.integers(0, 5, labels.shape) / 4.0
  expected = [skm.roc_auc_score(l, s) for l, s in zip(labels, scores)]
  np.testing.assert_allclose(bootstrap.resampled_auroc(labels, scores), expected)


def test_single_class_has_no_auroc_interval():
  ci = bootstrap.classification_ci(_key(), [1] * 10, np.linspace(0, 1, 10), 100)
  assert np.isnan(ci["auroc"]).all() and "one class" in ci["reasons"]["auroc"]
  assert np.isnan(ci["specificity"]).all()
  assert np.isfinite(ci["accuracy"]).all() and np.isfinite(ci["sensitivity"]).all()


def test_coverage_of_a_known_mean():
  # Mean of 40 draws from N(0.8, 0.1): a 90% interval should cover 0.8 about 90% of
  # the time (percentile intervals run a little narrow at small n).
  rng = np.random.default_rng(7)
  covered = 0
  trials = 200
  for t in range(trials):
    values = 0.8 + 0.1 * rng.standard_normal(40)
    low, high = bootstrap.mean_ci(keys.item(_key(), t), values, 400, level=0.9)["dice"]
    covered += low <= 0.8 <= high
  assert 0.8 <= covered / trials <= 0.97


def test_coverage_of_a_known_accuracy():
  rng = np.random.default_rng(8)
  labels = np.repeat([0, 1], 50)
  covered = 0
  trials = 100
  for t in range(trials):
    correct = rng.random(100) < 0.75  # true accuracy 0.75 in each class
    scores = np.where(correct == (labels == 1), 0.9, 0.1)
    low, high = bootstrap.classification_ci(keys.item(_key(), t), labels, scores,
                                            300)["accuracy"]
    covered += low <= 0.75 <= high
  assert 0.85 <= covered / trials <= 1.0


def test_mean_ci_skips_undefined_values():
  ci = bootstrap.mean_ci(_key(), [0.5, np.nan, 0.7], 200)
  assert 0.5 <= ci["dice"][0] <= ci["dice"][1] <= 0.7
  empty = bootstrap.mean_ci(_key(), [np.nan], 200)
  assert np.isnan(empty["dice"]).all() and empty["reasons"]["dice"]


def test_clustered_intervals_resample_whole_studies():
  labels, scores = _data(40)
  order = np.ravel(np.c_[np.arange(20), np.arange(20, 40)])   # 0, 1, 0, 1, ...
  labels, scores = labels[order], scores[order]
  studies = np.repeat(np.arange(20), 2)        # a study without and with: the paired test
  rng = np.random.default_rng(0)
  for index in bootstrap.cluster_indices(rng, studies, 50):
    drawn = studies[index]
    assert index.size == 40 and all((drawn == s).sum() % 2 == 0 for s in np.unique(drawn))
  ci = bootstrap.classification_ci(_key(), labels, scores, 300, clusters=studies)
  assert ci["methods"]["auroc"] == "study (cluster) bootstrap"
  assert ci["auroc"][0] <= skm.roc_auc_score(labels, scores) <= ci["auroc"][1]
  again = bootstrap.classification_ci(_key(), labels, scores, 300, clusters=studies)
  assert ci == again
  # One sample a study: the clustered proportions are the plain Wilson intervals.
  plain = bootstrap.classification_ci(_key(), labels, scores, 300)
  single = bootstrap.classification_ci(_key(), labels, scores, 300, clusters=np.arange(40))
  for name in ("accuracy", "sensitivity", "specificity"):
    np.testing.assert_allclose(single[name], plain[name])
  # Every study scored twice with the same output: no more information than once.
  twice = bootstrap.classification_ci(_key(), np.repeat(labels, 2), np.repeat(scores, 2), 300,
                                      clusters=np.repeat(np.arange(40), 2))
  np.testing.assert_allclose(twice["accuracy"], plain["accuracy"])


def test_mean_ci_with_clusters_resamples_units():
  rng = np.random.default_rng(3)
  heads = rng.normal(0.9, 0.03, 20)
  values = np.repeat(heads, 2) + rng.normal(0, 0.002, 40)   # each head twice, nearly equal
  clustered = bootstrap.mean_ci(_key(), values, 2000, clusters=np.repeat(np.arange(20), 2))
  by_head = bootstrap.mean_ci(_key(), values.reshape(20, 2).mean(1), 2000)
  as_if_independent = bootstrap.mean_ci(_key(), values, 2000)
  width = lambda ci: ci["dice"][1] - ci["dice"][0]
  assert width(clustered) == pytest.approx(width(by_head), rel=0.15)
  assert width(as_if_independent) < 0.85 * width(clustered)   # copies would shrink it


def test_perfect_separation_gets_an_auroc_interval_that_is_not_a_point():
  """AUROC 1: every bootstrap resample is 1 too; the score interval at the units is not."""
  from scanbias_jax.evaluate import comparisons
  labels = np.array([0, 1] * 10)
  scores = np.where(labels == 1, 0.9, 0.1) + np.linspace(0, 0.05, 20)
  ci = bootstrap.classification_ci(keys.root(0), labels, scores, n_resamples=200)
  assert ci["methods"]["auroc"] == comparisons.AUROC_EDGE_CI
  np.testing.assert_allclose(ci["auroc"], comparisons.auroc_score_interval(1.0, 10, 10))
  # With clusters (a head = one positive and one negative) the units are the heads.
  heads = np.repeat(np.arange(10), 2)
  clustered = bootstrap.classification_ci(keys.root(0), labels, scores, n_resamples=200,
                                          clusters=heads)
  np.testing.assert_allclose(clustered["auroc"], comparisons.auroc_score_interval(1.0, 10, 10))
  copies = bootstrap.classification_ci(keys.root(0), np.tile(labels, 2), np.tile(scores, 2),
                                       n_resamples=200, clusters=np.tile(heads, 2))
  np.testing.assert_allclose(copies["auroc"], clustered["auroc"])   # copies add no units
  # Away from the edge the bootstrap stays.
  noisy = scores.copy()
  noisy[:2] = noisy[1::-1]
  assert bootstrap.classification_ci(keys.root(0), labels, noisy, n_resamples=200)[
      "methods"]["auroc"] != comparisons.AUROC_EDGE_CI
