"""Wilson, Newcombe, Fisher, detectable differences: against published and hand values."""
import numpy as np
import pytest
from scipy import stats

from scanbias_jax.evaluate import comparisons


def test_wilson_by_hand_and_honest_at_the_edges():
  np.testing.assert_allclose(comparisons.wilson(10, 10), [0.72246, 1.0], atol=1e-4)
  np.testing.assert_allclose(comparisons.wilson(0, 10), [0.0, 0.27754], atol=1e-4)
  np.testing.assert_allclose(comparisons.wilson(5, 10), [0.23659, 0.76341], atol=1e-4)
  assert all(np.isnan(comparisons.wilson(0, 0)))


def test_newcombe_matches_the_published_example():
  """Newcombe (1998), Table II, example (a): 56/70 - 48/80 -> 0.0524 to 0.3339."""
  out = comparisons.proportion_difference(56, 70, 48, 80)
  assert out["difference"] == pytest.approx(0.2)
  np.testing.assert_allclose(out["ci"], [0.0524, 0.3339], atol=1e-4)
  assert out["p_value"] == pytest.approx(stats.fisher_exact([[56, 14], [48, 32]])[1])


def test_difference_of_two_perfect_sets_is_not_a_point():
  out = comparisons.proportion_difference(10, 10, 10, 10)
  assert out["difference"] == 0.0 and out["p_value"] == 1.0
  assert out["ci"][0] < -0.2 and out["ci"][1] > 0.2


def test_detectable_fall_by_hand():
  """n = 10 + 10: h = (z_.975 + z_.8) sqrt(2/10) ~ 1.253; from p1 = 1, p2 = sin^2((pi - h)/2)."""
  h = (stats.norm.ppf(0.975) + stats.norm.ppf(0.8)) * np.sqrt(0.2)
  expected = 1.0 - np.sin((np.pi - h) / 2) ** 2
  assert comparisons.detectable_fall(1.0, 10, 10) == pytest.approx(expected, abs=2e-3)
  # More studies, smaller detectable differences; a tiny set cannot detect any fall.
  assert comparisons.detectable_fall(0.9, 100, 100) < comparisons.detectable_fall(0.9, 20, 20)
  assert comparisons.detectable_fall(0.3, 2, 2) == pytest.approx(0.3)


def test_mean_difference_test_matches_scipy_and_pooled_sd():
  rng = np.random.default_rng(0)
  a, b = rng.normal(0.95, 0.01, 20), rng.normal(0.94, 0.02, 25)
  out = comparisons.mean_difference_test(a, b)
  assert out["p_value"] == pytest.approx(stats.ttest_ind(a, b, equal_var=False).pvalue)
  pooled = np.sqrt((19 * a.var(ddof=1) + 24 * b.var(ddof=1)) / 43)
  d = (stats.norm.ppf(0.975) + stats.norm.ppf(0.8)) * np.sqrt(1 / 20 + 1 / 25)
  assert out["mdd"] == pytest.approx(pooled * d, rel=0.01)
  assert np.isnan(comparisons.mean_difference_test([0.9], b)["mdd"])


def test_effective_n_is_n_for_singletons_and_the_studies_for_exact_copies():
  rng = np.random.default_rng(0)
  correct = rng.random(30) < 0.7
  assert comparisons.effective_n(correct, np.arange(30)) == 30
  # Each study's samples all right or all wrong: the copies add nothing.
  assert comparisons.effective_n(np.repeat(correct, 2), np.repeat(np.arange(30), 2)) == 30
  # Independent within studies: close to the samples (Korn-Graubard, clipped to [30, 60]).
  inside = rng.random(600) < 0.7
  many = comparisons.effective_n(inside, np.repeat(np.arange(300), 2))
  assert 480 < many <= 600
  # At 0 or 100 % there is no variance to measure the design effect: the studies.
  assert comparisons.effective_n(np.ones(40), np.repeat(np.arange(20), 2)) == 20


def test_clustered_methods_reduce_to_wilson_newcombe_and_the_z_test_for_singletons():
  from statsmodels.stats.proportion import confint_proportions_2indep, proportions_ztest
  a = np.r_[np.ones(56), np.zeros(14)]
  b = np.r_[np.ones(48), np.zeros(32)]
  np.testing.assert_allclose(comparisons.wilson_at(0.8, 70), comparisons.wilson(56, 70))
  out = comparisons.clustered_proportion_difference(a, np.arange(70), b, np.arange(80))
  np.testing.assert_allclose(out["ci"], [0.0524, 0.3339], atol=1e-4)   # Newcombe's example
  np.testing.assert_allclose(out["ci"], confint_proportions_2indep(56, 70, 48, 80,
                                                                   method="newcomb"))
  assert out["p_value"] == pytest.approx(proportions_ztest([56, 48], [70, 80])[1])
  assert out["mdd"] == pytest.approx(comparisons.detectable_fall(0.8, 70, 80))
  # The same studies each scored twice, identically: the intervals of the studies alone.
  twice = comparisons.clustered_proportion_difference(
      np.repeat(a, 2), np.repeat(np.arange(70), 2), np.repeat(b, 2), np.repeat(np.arange(80), 2))
  np.testing.assert_allclose(twice["ci"], out["ci"])
  assert twice["n_eff"] == [70.0, 80.0]


def test_paired_difference_on_the_same_heads():
  rng = np.random.default_rng(4)
  heads = np.repeat(np.arange(25), 2)
  easy = rng.random(25) < 0.5                         # heads easy for both vendors ...
  a = np.repeat(easy | (rng.random(25) < 0.6), 2).astype(float)
  b = np.repeat(easy | (rng.random(25) < 0.3), 2).astype(float)
  paired = comparisons.paired_clustered_difference(a, heads, b, heads)
  independent = comparisons.clustered_proportion_difference(a, heads, b, heads)
  assert paired["difference"] == pytest.approx(independent["difference"])
  assert paired["phi"] > 0                            # ... so the paired interval is narrower
  assert paired["ci"][1] - paired["ci"][0] < independent["ci"][1] - independent["ci"][0]
  assert paired["ci"][0] < paired["difference"] < paired["ci"][1]
  # Newcombe 1998b's paired method 10 on whole counts: with no correlation it is the
  # independent hybrid interval.
  x = np.r_[np.ones(10), np.zeros(10)]
  y = np.r_[np.ones(5), np.zeros(5), np.ones(5), np.zeros(5)]      # phi = 0 against x
  zero = comparisons.paired_clustered_difference(x, np.arange(20), y, np.arange(20))
  assert zero["phi"] == pytest.approx(0.0, abs=1e-12)
  np.testing.assert_allclose(zero["ci"], comparisons.proportion_difference(10, 20, 10, 20)["ci"])
  # Identical outcomes on both vendors: no difference, p = 1, interval about 0.
  same = comparisons.paired_clustered_difference(a, heads, a, heads)
  assert same["difference"] == 0 and same["p_value"] == 1.0
  assert same["ci"][0] < 0 < same["ci"][1]
  # The sign-flip p-value against scipy's exact paired test on the head differences.
  small = comparisons.paired_clustered_difference(a[:16], heads[:16], b[:16], heads[:16],
                                                  n_permutations=100000)
  exact = stats.permutation_test((a[:16:2], b[:16:2]), lambda u, v, axis: np.mean(u - v, axis=axis),
                                 permutation_type="samples", vectorized=True,
                                 n_resamples=np.inf).pvalue
  assert small["p_value"] == pytest.approx(exact)


def test_auroc_score_interval_keeps_a_width_at_the_edges():
  from scanbias_jax.evaluate import comparisons as c
  low, high = c.auroc_score_interval(1.0, 20, 20)
  assert high == 1.0 and 0.85 < low < 0.95
  assert c.auroc_score_interval(1.0, 80, 80)[0] > low          # narrower with more units
  mirrored = c.auroc_score_interval(0.0, 20, 20)               # the same interval, flipped
  np.testing.assert_allclose(mirrored, [1 - high, 1 - low], atol=1e-9)
  # Inside (0, 1) and at large n it approaches the Wald interval of the same variance.
  wald = 0.8 + np.array([-1, 1]) * 1.959964 * np.sqrt(c.hanley_mcneil_variance(0.8, 2000, 2000))
  np.testing.assert_allclose(c.auroc_score_interval(0.8, 2000, 2000), wald, atol=2e-3)
  # Hanley & McNeil's variance at AUROC 0.5 with equal groups: (1/12)(1/n+1/n) + O(1/n^2).
  assert c.hanley_mcneil_variance(0.5, 1000, 1000) == pytest.approx(2 / 12 / 1000, rel=0.01)
