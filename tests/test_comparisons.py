"""Wilson, effective n and the AUROC score interval: against published and hand values."""
import numpy as np
import pytest
from scipy import stats

from scanbias_jax.evaluate import comparisons


def test_wilson_by_hand_and_honest_at_the_edges():
  np.testing.assert_allclose(comparisons.wilson(10, 10), [0.72246, 1.0], atol=1e-4)
  np.testing.assert_allclose(comparisons.wilson(0, 10), [0.0, 0.27754], atol=1e-4)
  np.testing.assert_allclose(comparisons.wilson(5, 10), [0.23659, 0.76341], atol=1e-4)
  assert all(np.isnan(comparisons.wilson(0, 0)))


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
