"""Intervals of one proportion or AUROC that stay honest at the edges.

A proportion of studies (accuracy, sensitivity, specificity) gets the Wilson score
interval: a model right on 10 of 10 studies reads [72, 100] %, not [100, 100].
Clustered samples (the paired sphere test: every study scored with and without a
sphere) are not independent: a proportion over them gets the Wilson interval at the
Korn-Graubard effective sample size (`effective_n`); with one sample per cluster that
is the plain Wilson interval again. Differences between groups are evaluate/harm.py's.
"""
import numpy as np
from scipy import optimize, stats
from statsmodels.stats.proportion import proportion_confint

NAN = float("nan")
PROPORTION_CI = "Wilson score"
CLUSTERED_PROPORTION_CI = "Wilson score at the effective n (Korn-Graubard)"


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
