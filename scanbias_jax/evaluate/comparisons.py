"""Proportions and cross-group differences with intervals that stay honest at the edges,
p-values, and the smallest difference a comparison could have detected.

A proportion of studies (accuracy, sensitivity, specificity) gets the Wilson score
interval: a model right on 10 of 10 studies reads [72, 100] %, not [100, 100].
A difference of two proportions from independent test sets gets Newcombe's hybrid
score interval (built from the two Wilson intervals; Newcombe 1998, method 10),
Fisher's exact p-value, and the minimum detectable difference: the smallest fall
from the first group's proportion that a two-sided 5 % test on these test-set sizes
finds with 80 % power (Cohen's h, statsmodels' NormalIndPower). A difference of
per-study means (Dice) gets Welch's t-test and the minimum detectable difference in
units of the pooled SD (Cohen's d). statsmodels and scipy do the arithmetic.

Clustered samples (the paired sphere test: every study scored with and without a
sphere) are not independent: a proportion over them gets the Wilson interval at the
Korn-Graubard effective sample size (`effective_n`), the difference Newcombe's
interval from those two intervals and a z test at the effective sizes (a Rao-Scott
style correction), and the MDD the effective sizes. With one sample per cluster all
of it is the unclustered method again.
"""
import numpy as np
from scipy import optimize, stats
from statsmodels.stats.power import NormalIndPower, TTestPower
from statsmodels.stats.proportion import confint_proportions_2indep, proportion_confint

ALPHA, POWER = 0.05, 0.80
NAN = float("nan")
PROPORTION_CI = "Wilson score"
DIFFERENCE_CI = "Newcombe hybrid score"
PROPORTION_TEST = "Fisher exact"
MEAN_TEST = "Welch t"
CLUSTERED_PROPORTION_CI = "Wilson score at the effective n (Korn-Graubard)"
CLUSTERED_DIFFERENCE_CI = "Newcombe hybrid score at the effective n"
CLUSTERED_TEST = "z test at the effective n"
PAIRED_DIFFERENCE_CI = "Newcombe paired (method 10) at the effective n, per-head correlation"
PAIRED_TEST = "sign-flip permutation over heads"
PAIRED_MEAN_TEST = "paired t"
MDD_METHOD = f"{int(POWER * 100)} % power, two-sided {ALPHA:g} (Cohen's h / d)"


def wilson(successes: int, n: int, level: float = 0.95) -> list[float]:
  """Wilson score interval of successes / n; [nan, nan] for n = 0."""
  if n == 0:
    return [NAN, NAN]
  low, high = proportion_confint(int(successes), int(n), alpha=1 - level, method="wilson")
  return [float(max(low, 0.0)), float(min(high, 1.0))]


def effective_n(correct, clusters) -> float:
  """Korn & Graubard's (1998) effective sample size of the proportion of `correct`
  samples when samples come in `clusters` (a study id per sample): p(1 - p) / v, v the
  cluster-robust variance of the proportion, kept within [clusters, samples] (a design
  effect above the cluster size m would need negatively weighted samples; below 1 it
  would claim more than independence). Where p is 0 or 1 there is no variance to
  measure the design effect with: the number of clusters, the cautious end."""
  y = np.asarray(correct, np.float64).ravel()
  _, cluster_of = np.unique(np.asarray(clusters).ravel(), return_inverse=True)
  n, n_clusters = y.size, int(cluster_of.max()) + 1 if y.size else 0
  p = y.mean() if n else NAN
  if n_clusters < 2 or p in (0.0, 1.0):
    return float(n_clusters)
  residual = np.bincount(cluster_of, weights=y - p)
  variance = n_clusters / (n_clusters - 1) * np.sum(residual ** 2) / n ** 2
  if variance <= 0:
    return float(n)
  return float(np.clip(p * (1 - p) / variance, n_clusters, n))


AUROC_EDGE_CI = "Hanley-McNeil score interval (Newcombe 2006) at the units"


def hanley_mcneil_variance(auc: float, n_pos: float, n_neg: float) -> float:
  """Hanley & McNeil's (1982) variance of an AUROC estimated from n_pos and n_neg samples."""
  q1, q2 = auc / (2 - auc), 2 * auc ** 2 / (1 + auc)
  return (auc * (1 - auc) + (n_pos - 1) * (q1 - auc ** 2)
          + (n_neg - 1) * (q2 - auc ** 2)) / (n_pos * n_neg)


def auroc_score_interval(auc: float, n_pos: float, n_neg: float,
                         level: float = 0.95) -> list[float]:
  """The AUROC values theta not rejected by (auc - theta)^2 <= z^2 V(theta), V the
  Hanley-McNeil variance at theta (Newcombe's 2006 score-type method): unlike a
  bootstrap or a Wald interval it keeps a width where auc is 0 or 1."""
  z2 = stats.norm.ppf(0.5 + level / 2) ** 2
  def excess(theta):
    return (auc - theta) ** 2 - z2 * hanley_mcneil_variance(theta, n_pos, n_neg)
  tiny = 1e-9
  low = 0.0 if auc <= tiny else optimize.brentq(excess, 0.0, auc - tiny)
  high = 1.0 if auc >= 1 - tiny else optimize.brentq(excess, auc + tiny, 1.0)
  return [float(low), float(high)]


def wilson_at(p: float, n_eff: float, level: float = 0.95) -> list[float]:
  """Wilson score interval of a proportion p observed on n_eff (possibly fractional)
  effective samples."""
  if not n_eff > 0:
    return [NAN, NAN]
  low, high = proportion_confint(p * n_eff, n_eff, alpha=1 - level, method="wilson")
  return [float(max(low, 0.0)), float(min(high, 1.0))]


def newcombe(p1: float, ci1, p2: float, ci2, phi: float = 0.0) -> list[float]:
  """Newcombe's hybrid score interval of p1 - p2 from the two proportions' intervals;
  `phi`, the correlation of paired outcomes, gives his paired method 10 (Newcombe
  1998b), and 0 the independent one (method 10 of Newcombe 1998)."""
  (l1, u1), (l2, u2) = ci1, ci2
  d = p1 - p2
  below = (p1 - l1) ** 2 - 2 * phi * (p1 - l1) * (u2 - p2) + (u2 - p2) ** 2
  above = (u1 - p1) ** 2 - 2 * phi * (u1 - p1) * (p2 - l2) + (p2 - l2) ** 2
  return [float(d - np.sqrt(max(below, 0.0))), float(d + np.sqrt(max(above, 0.0)))]


def clustered_proportion_difference(correct1, clusters1, correct2, clusters2,
                                    level: float = 0.95) -> dict:
  """mean(correct1) - mean(correct2) of two independent sets of clustered samples:
  difference, ci (Newcombe at the effective n), p_value (z test at the effective n),
  mdd, and each side's n_eff."""
  c1, c2 = (np.asarray(c, np.float64).ravel() for c in (correct1, correct2))
  if c1.size == 0 or c2.size == 0:
    return dict(difference=NAN, ci=[NAN, NAN], p_value=NAN, mdd=NAN)
  n1, n2 = effective_n(c1, clusters1), effective_n(c2, clusters2)
  p1, p2 = float(c1.mean()), float(c2.mean())
  ci = newcombe(p1, wilson_at(p1, n1, level), p2, wilson_at(p2, n2, level))
  pooled = (p1 * n1 + p2 * n2) / (n1 + n2)
  spread = np.sqrt(pooled * (1 - pooled) * (1 / n1 + 1 / n2))
  p_value = float(2 * stats.norm.sf(abs(p1 - p2) / spread)) if spread > 0 else 1.0
  return dict(difference=p1 - p2, ci=ci, p_value=p_value, mdd=detectable_fall(p1, n1, n2),
              n_eff=[n1, n2])


def paired_clustered_difference(correct1, clusters1, correct2, clusters2, level: float = 0.95,
                                n_permutations: int = 10000, seed: int = 0) -> dict:
  """mean(correct1) - mean(correct2) where both sets hold the same units (traveling
  heads: each head's acquisition by one vendor in the first set, by the other in the
  second), with the same number of samples per unit in each set.

  Interval: Newcombe's method 10 for paired proportions (Newcombe 1998b) from the two
  effective-n Wilson intervals and the correlation of the heads' accuracies on the two
  vendors (0 where undefined: the independent interval). p-value: sign-flip
  permutation of the per-head differences (scipy.stats.permutation_test). MDD: the
  per-head differences' SD x Cohen's d_z at 80 % power (the independent MDD where that
  SD is 0)."""
  c1, c2 = (np.asarray(c, np.float64).ravel() for c in (correct1, correct2))
  ids = np.union1d(clusters1, clusters2)
  per_head = [np.array([c[np.asarray(k) == h].mean() for h in ids])
              for c, k in ((c1, clusters1), (c2, clusters2))]
  n1, n2 = effective_n(c1, clusters1), effective_n(c2, clusters2)
  p1, p2 = float(c1.mean()), float(c2.mean())
  spread = [np.std(m) for m in per_head]
  phi = float(np.corrcoef(*per_head)[0, 1]) if min(spread) > 0 else 0.0
  ci = newcombe(p1, wilson_at(p1, n1, level), p2, wilson_at(p2, n2, level), phi)
  differences = per_head[0] - per_head[1]
  if np.any(differences != 0):
    test = stats.permutation_test(
        (per_head[0], per_head[1]), lambda a, b, axis: np.mean(a - b, axis=axis),
        permutation_type="samples", n_resamples=n_permutations, vectorized=True,
        random_state=np.random.default_rng(seed))
    p_value = float(test.pvalue)
  else:
    p_value = 1.0
  sd = float(np.std(differences, ddof=1)) if ids.size > 1 else 0.0
  mdd = sd * _detectable_paired_effect(ids.size) if sd > 0 else detectable_fall(p1, n1, n2)
  return dict(difference=p1 - p2, ci=ci, p_value=p_value, mdd=mdd, n_eff=[n1, n2], phi=phi,
              n_units=int(ids.size))


def _detectable_paired_effect(n: int) -> float:
  """Cohen's d_z a two-sided ALPHA paired test on n units finds with POWER."""
  return float(TTestPower().solve_power(effect_size=None, nobs=n, alpha=ALPHA, power=POWER))


def _detectable_effect(n1: int, n2: int) -> float:
  """Cohen's h (or d) a two-sided ALPHA test on n1 and n2 items finds with POWER."""
  return float(NormalIndPower().solve_power(effect_size=None, nobs1=n1, ratio=n2 / n1,
                                            alpha=ALPHA, power=POWER))


def detectable_fall(p1: float, n1: int, n2: int) -> float:
  """The smallest p1 - p2 (a fall from p1) with Cohen's h = 2 asin sqrt(p1) -
  2 asin sqrt(p2) at the detectable effect; p1 itself when even p2 = 0 is not enough."""
  phi2 = 2 * np.arcsin(np.sqrt(p1)) - _detectable_effect(n1, n2)
  return float(p1 - (np.sin(phi2 / 2) ** 2 if phi2 > 0 else 0.0))


def proportion_difference(k1: int, n1: int, k2: int, n2: int, level: float = 0.95) -> dict:
  """k1/n1 - k2/n2 of independent sets: difference, ci, p_value, mdd (NaN if a set is empty)."""
  if n1 == 0 or n2 == 0:
    return dict(difference=NAN, ci=[NAN, NAN], p_value=NAN, mdd=NAN)
  low, high = confint_proportions_2indep(int(k1), int(n1), int(k2), int(n2), method="newcomb",
                                         compare="diff", alpha=1 - level)
  _, p_value = stats.fisher_exact([[k1, n1 - k1], [k2, n2 - k2]])
  return dict(difference=k1 / n1 - k2 / n2, ci=[float(low), float(high)],
              p_value=float(p_value), mdd=detectable_fall(k1 / n1, n1, n2))


def mean_difference_test(values1, values2) -> dict:
  """Welch's p-value and the minimum detectable difference of two sets of per-study
  values (pooled SD x Cohen's d); NaN when a set has fewer than two values."""
  a = np.asarray(values1, np.float64)
  b = np.asarray(values2, np.float64)
  a, b = a[np.isfinite(a)], b[np.isfinite(b)]
  if a.size < 2 or b.size < 2:
    return dict(p_value=NAN, mdd=NAN)
  pooled = np.sqrt(((a.size - 1) * a.var(ddof=1) + (b.size - 1) * b.var(ddof=1))
                   / (a.size + b.size - 2))
  p_value = stats.ttest_ind(a, b, equal_var=False).pvalue if pooled > 0 else (
      1.0 if a.mean() == b.mean() else 0.0)
  return dict(p_value=float(p_value), mdd=float(pooled * _detectable_effect(a.size, b.size)))


def paired_mean_difference_test(values1, values2) -> dict:
  """Paired t p-value and the minimum detectable difference (SD of the differences x
  Cohen's d_z) of per-unit values measured on both sides."""
  a, b = np.asarray(values1, np.float64), np.asarray(values2, np.float64)
  d = a - b
  sd = float(np.std(d, ddof=1))
  if sd == 0:
    return dict(p_value=1.0 if d.mean() == 0 else 0.0, mdd=0.0)
  return dict(p_value=float(stats.ttest_rel(a, b).pvalue),
              mdd=sd * _detectable_paired_effect(d.size))
