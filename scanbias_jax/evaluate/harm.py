"""The cross-group harm statistic: one procedure gives each comparison's difference,
95 % interval, p-value and minimum detectable difference (MDD), so they cannot disagree.

The resampling unit is the head where both sides hold the same heads (traveling heads:
a paired comparison), else the study. Each unit gets a value whose mean over the units
is the metric (its linearisation, or influence value):
  - a proportion of samples (accuracy, sensitivity, specificity): the ratio estimator's
    value p + (y_i - p m_i) / mean(m), y_i of the unit's m_i counted samples right (the
    unit's own share when every unit holds as many samples);
  - AUROC: the unit's summed structural components (DeLong et al. 1988, clustered as
    Obuchowski 1997); their mean is the Mann-Whitney AUROC;
  - a per-sample mean (Dice): the unit's mean.
Paired: the per-unit differences, a one-sample t over units (df = units - 1).
Independent: the two sides' unit values, Welch's t (Satterthwaite df).
From the one standard error SE and df: interval d +- t(0.975, df) SE, p the two-sided
t-test, MDD the difference the same test finds with 80 % power (noncentral t). So the
interval excludes zero exactly when p < 0.05, and the MDD is ~1.43x its half-width.

Rates sit at 0 or 1 often (every head's spheres found on both vendors): the units then
agree exactly and SE would collapse to 0. Pseudo-samples keep it honest at the edges:
Agresti & Min's (2005) half a sample-pair in each cell of the paired 2 x 2 table, or
Agresti & Caffo's (2000) one right and one wrong sample a side when independent, each
entered as a unit of weight 1 / m^2 (m samples a unit), so that it weighs as one sample
and not as one head. With one sample a unit these are those two methods, with t in
place of z. Simulated clustered tests (tests/test_harm.py) cover 94-97 % away from the
edges and 96-99 % at them. Means (Dice) get none.
"""
import numpy as np
from scipy import optimize, stats

ALPHA, POWER = 0.05, 0.80
NAN = float("nan")
RATES = ("accuracy", "sensitivity", "specificity", "auroc")
METHOD = ("paired t over heads on per-head values (Agresti-Min pseudo-pairs for rates)",
          "Welch t over studies on per-study values (Agresti-Caffo pseudo-samples for rates)")


def _units(clusters, n: int) -> tuple[np.ndarray, np.ndarray]:
  """(sorted unit ids, each sample's unit index); every sample its own unit if None."""
  ids = np.arange(n) if clusters is None else np.asarray(clusters).ravel()
  return np.unique(ids, return_inverse=True)


def proportion_values(correct, counted, clusters=None) -> tuple[np.ndarray, np.ndarray, float]:
  """(unit ids, linearised unit values, samples a unit) of mean(correct[counted]), over
  the units holding a counted sample."""
  correct = np.asarray(correct, np.float64).ravel()
  counted = np.asarray(counted, bool).ravel()
  ids, unit_of = _units(clusters, correct.size)
  m = np.bincount(unit_of, weights=counted, minlength=ids.size)
  y = np.bincount(unit_of, weights=correct * counted, minlength=ids.size)
  keep = m > 0
  m, y, ids = m[keep], y[keep], ids[keep]
  p = y.sum() / m.sum()
  return ids, p + (y - p * m) / m.mean(), float(m.mean())


def auroc_values(labels, scores, clusters=None) -> tuple[np.ndarray, np.ndarray, float]:
  """(unit ids, unit values, samples a unit) whose mean is the AUROC: A + U c_i, c_i
  the unit's share of the AUROC's first-order (Hajek) projection."""
  labels = np.asarray(labels).astype(int).ravel()
  scores = np.asarray(scores, np.float64).ravel()
  ids, unit_of = _units(clusters, labels.size)
  pos, neg = scores[labels == 1], scores[labels == 0]
  wins = (pos[:, None] > neg[None, :]) + 0.5 * (pos[:, None] == neg[None, :])
  auc = float(wins.mean())
  component = np.zeros(labels.size)
  component[labels == 1] = (wins.mean(axis=1) - auc) / pos.size
  component[labels == 0] = (wins.mean(axis=0) - auc) / neg.size
  share = np.bincount(unit_of, weights=component, minlength=ids.size)
  return ids, auc + ids.size * share, labels.size / ids.size


def mean_values(values, clusters=None) -> tuple[np.ndarray, np.ndarray, float]:
  """(unit ids, unit means, samples a unit) of the finite per-sample values."""
  values = np.asarray(values, np.float64).ravel()
  finite = np.isfinite(values)
  ids, unit_of = _units(None if clusters is None else np.asarray(clusters).ravel()[finite],
                        int(finite.sum()))
  count = np.bincount(unit_of, minlength=ids.size)
  return ids, np.bincount(unit_of, weights=values[finite]) / count, float(count.mean())


def _undefined() -> dict:
  return dict(difference=NAN, ci=[NAN, NAN], p_value=NAN, mdd=NAN)


def _filed(out: dict, name: str, compared: dict) -> None:
  """out[name] = the comparison; a reason it has none goes to out["reasons"]."""
  if "reason" in compared:
    out["reasons"][name] = compared.pop("reason")
  out[name] = compared


def _weighted(values, weights) -> tuple[float, float]:
  """(mean, variance with the real units' df) of weighted unit values."""
  total = weights.sum()
  mean = float((weights * values).sum() / total)
  return mean, float((weights * (values - mean) ** 2).sum() / (total - 1))


def _pseudo(rate: bool, samples: float, paired: bool) -> tuple[np.ndarray, np.ndarray]:
  """(values, weights) of the edge pseudo-units (none for means)."""
  if not rate:
    return np.zeros(0), np.zeros(0)
  if paired:  # half a sample-pair in each of the four cells: d = +1, -1, 0, 0
    return np.array([1.0, -1.0, 0.0]), np.array([0.5, 0.5, 1.0]) / samples ** 2
  return np.array([1.0, 0.0]), np.array([1.0, 1.0]) / samples ** 2


def detectable(se: float, df: float, alpha: float = ALPHA, power: float = POWER) -> float:
  """The difference a two-sided `alpha` t-test with this SE and df rejects with `power`
  (noncentral t)."""
  if not (se > 0 and df > 0):
    return NAN
  critical = stats.t.ppf(1 - alpha / 2, df)

  def shortfall(delta):
    shift = delta / se
    lower = np.nan_to_num(stats.nct.cdf(-critical, df, shift))  # NaN far in the tail
    return stats.nct.sf(critical, df, shift) + lower - power
  return float(optimize.brentq(shortfall, 0.0, (critical + 10.0) * se, xtol=1e-12 * se))


def _from_se(difference: float, centre: float, se: float, df: float, level: float,
             **extra) -> dict:
  if not (se > 0 and df > 0):  # a mean equal in every unit: nothing varies
    same = bool(centre == 0)
    return dict(difference=difference, ci=[float(centre)] * 2, p_value=1.0 if same else 0.0,
                mdd=0.0, se=0.0, df=float(df), **extra)
  half = stats.t.ppf(0.5 + level / 2, df) * se
  return dict(difference=difference, ci=[float(centre - half), float(centre + half)],
              p_value=float(2 * stats.t.sf(abs(centre) / se, df)),
              mdd=detectable(se, df, 1 - level), se=float(se), df=float(df), **extra)


def compare(first: tuple, second: tuple, rate: bool, level: float = 0.95,
            paired: bool = True) -> dict:
  """metric(first) - metric(second) from each side's (unit ids, unit values, samples a
  unit): paired over the units where both sides hold the same ones (and `paired`: ids
  that name the same units on both sides), else independent.
  Returns difference (of the metric itself), ci, p_value, mdd, se, df, n_units, design."""
  (ids1, v1, m1), (ids2, v2, m2) = first, second
  if ids1.size < 2 or ids2.size < 2:
    return dict(_undefined(), reason="fewer than two units on a side")
  difference = float(v1.mean() - v2.mean())
  if paired and ids1.size == ids2.size and np.array_equal(ids1, ids2):
    extra_values, extra_weights = _pseudo(rate, (m1 + m2) / 2, paired=True)
    d = np.concatenate([v1 - v2, extra_values])
    w = np.concatenate([np.ones(ids1.size), extra_weights])
    centre, variance = _weighted(d, w)
    return _from_se(difference, centre, np.sqrt(variance / w.sum()), ids1.size - 1, level,
                    n_units=[int(ids1.size)] * 2, design="paired", method=METHOD[0])
  centres, parts, dfs = [], [], []
  for values, samples in ((v1, m1), (v2, m2)):
    extra_values, extra_weights = _pseudo(rate, samples, paired=False)
    w = np.concatenate([np.ones(values.size), extra_weights])
    centre, variance = _weighted(np.concatenate([values, extra_values]), w)
    centres.append(centre)
    parts.append(variance / w.sum())
    dfs.append(values.size - 1)
  se2 = sum(parts)
  df = se2 ** 2 / sum(p ** 2 / k for p, k in zip(parts, dfs)) if se2 > 0 else 0.0
  return _from_se(difference, centres[0] - centres[1], np.sqrt(se2), df, level,
                  n_units=[int(ids1.size), int(ids2.size)], design="independent",
                  method=METHOD[1])


def classification_difference(first: tuple, second: tuple, threshold: float = 0.5,
                              clusters=None, level: float = 0.95) -> dict:
  """{metric: compare(...)} for accuracy, sensitivity, specificity and AUROC of two
  (labels, scores) test sets; `clusters` = (first's, second's) unit per sample or None.
  Metrics undefined on a side are NaN with a reason under `reasons`."""
  out = dict(level=float(level), reasons={})
  sides = []
  for part, (labels, scores) in enumerate((first, second)):
    labels = np.asarray(labels).astype(int).ravel()
    scores = np.asarray(scores, np.float64).ravel()
    units = None if clusters is None else np.asarray(clusters[part]).ravel()
    sides.append((labels, scores, units))
  counted = dict(accuracy=lambda y: np.ones(y.size, bool), sensitivity=lambda y: y == 1,
                 specificity=lambda y: y == 0)
  for name in RATES:
    if name == "auroc":
      missing = [np.unique(y).size < 2 for y, _, _ in sides]
      why = "a test set holds one class"
    else:
      missing = [not counted[name](y).any() for y, _, _ in sides]
      why = f"no samples counted by {name} in a test set"
    if any(missing):
      _filed(out, name, dict(_undefined(), reason=why))
      continue
    if name == "auroc":
      values = [auroc_values(y, s, u) for y, s, u in sides]
    else:
      values = [proportion_values((s >= threshold) == (y == 1), counted[name](y), u)
                for y, s, u in sides]
    # Without clusters every sample is its own unit, numbered per side: never paired.
    _filed(out, name, compare(*values, rate=True, level=level, paired=clusters is not None))
  return out


def mean_difference(first, second, clusters=None, level: float = 0.95,
                    name: str = "dice") -> dict:
  """{name: compare(...)} of two sets of per-sample values (per-volume Dice)."""
  units = (None, None) if clusters is None else clusters
  out = {"level": float(level), "reasons": {}}
  _filed(out, name, compare(mean_values(first, units[0]), mean_values(second, units[1]),
                            rate=False, level=level, paired=clusters is not None))
  return out
