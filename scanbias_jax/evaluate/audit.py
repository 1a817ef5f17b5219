"""The bias audit: which acquisition attributes can be named from the images, and which
of them line up with each other and with the labels (issue 17).

For every attribute of the manifest (`ATTRIBUTES`) with at least two groups of
`min_group` studies, "Name the X" by the noise-texture probe (evaluate/probe.py):
a standardised multinomial logistic regression on each study's brain texture,
cross-fitted over folds grouped by patient (every study is scored by a model that
never saw its patient), then
  - balanced accuracy and macro one-vs-rest AUROC (scikit-learn) with 95 % intervals
    from a bootstrap over patients, and the confusion matrix;
  - a permutation p-value: the labels shuffled over studies and the whole
    cross-fitting redone, so the null includes what fitting can find in noise.
Associations: Cramer's V with the chi-square p-value between categorical columns
(scipy.stats), the correlation ratio with a Kruskal-Wallis p-value for a numeric one.
Everything here is numbers in, numbers out; launch/audit.py reads the volumes.
"""
import dataclasses

import joblib
import numpy as np
from scipy import stats
from sklearn.metrics import balanced_accuracy_score, confusion_matrix, roc_auc_score
from sklearn.model_selection import StratifiedGroupKFold

from scanbias_jax.evaluate import probe

# Manifest columns asked about, and what the report calls them.
ATTRIBUTES = {"vendor": "vendor", "model": "scanner model", "kernel": "reconstruction kernel",
              "institution": "institution", "station": "station", "kvp": "tube voltage (kVp)",
              "source_thickness_mm": "slice thickness of the chosen series",
              "recon_diameter_mm": "reconstruction diameter", "study_year": "study year"}


@dataclasses.dataclass(frozen=True)
class Settings:
  min_group: int = 10            # studies a group needs to be tested
  folds: int = 5
  n_permutations: int = 200
  workers: int = 1               # processes for the permutation refits (joblib)
  cnn_attributes: tuple = ()     # attributes the CNN names too (experiments/audit_cnn.py)
  cnn_strongest: int = 1         # ... and this many more: the probe's strongest


def testable_groups(values, min_group: int) -> tuple[list[str], str | None]:
  """(the groups with >= min_group studies, sorted; None) or ([], why the attribute
  cannot be tested)."""
  if not len(values):
    return [], "no study passed ingest (rejects.csv says why)"
  present = [v for v in values if v not in ("", None)]
  if not present:
    return [], "tag missing in every study"
  names, counts = np.unique(present, return_counts=True)
  groups = [str(n) for n, c in zip(names, counts) if c >= min_group]
  if len(names) == 1:
    return [], f"one group only ({names[0]})"
  if len(groups) < 2:
    return [], (f"fewer than two groups with >= {min_group} studies "
                f"({len(names)} groups, largest {int(counts.max())})")
  return groups, None


def cross_fitted_scores(features, labels, patients, folds: int, seed: int) -> np.ndarray:
  """Out-of-fold probabilities [n, classes]: each study scored by the probe fitted on
  the folds that hold none of its patient's studies."""
  labels = np.asarray(labels)
  scores = np.zeros((len(labels), int(labels.max()) + 1))
  splitter = StratifiedGroupKFold(n_splits=folds, shuffle=True, random_state=seed)
  for train, test in splitter.split(features, labels, patients):
    fitted = probe.fit_and_score(features[train], labels[train], features[test])
    scores[np.ix_(test, np.unique(labels[train]))] = fitted
  return scores


def macro_auroc(labels, scores) -> float:
  if scores.shape[1] == 2:
    return float(roc_auc_score(labels, scores[:, 1]))
  return float(roc_auc_score(labels, scores, multi_class="ovr", average="macro",
                             labels=np.arange(scores.shape[1])))


def statistics(labels, scores) -> dict:
  return {"balanced_accuracy": float(balanced_accuracy_score(labels, scores.argmax(1))),
          "auroc": macro_auroc(labels, scores)}


def permutation_test(found: float, null, chance: float, level: float = 0.95) -> tuple:
  """(two-sided p, interval) of a statistic against its permutation `null`, one test.

  p = min(1, 2 min(P(null >= found), P(null <= found))) with the +1 of an exact
  permutation p. The interval inverts that test under a shift: the values theta for
  which found - (theta - chance) would not be rejected, so it excludes `chance` exactly
  when p < 1 - level (and sits where the null's own bias says: a null attribute's
  cross-fitted AUROC below 0.5 keeps chance inside). Clipped to [0, 1]."""
  null = np.sort(np.asarray(null, np.float64))
  b, tail = null.size, (1 - level) / 2
  upper = (1 + np.sum(null >= found - 1e-12)) / (b + 1)
  lower = (1 + np.sum(null <= found + 1e-12)) / (b + 1)
  p = float(min(1.0, 2 * min(upper, lower)))
  allowed = int(np.ceil(tail * (b + 1) - 1 - 1e-9)) - 1  # null values past found a rejection allows
  if allowed < 0:  # too few permutations to reject at this level
    return p, [0.0, 1.0]
  high_q, low_q = null[b - 1 - allowed], null[allowed]
  interval = [chance + found - high_q, chance + found - low_q]
  return p, [float(np.clip(v, 0.0, 1.0)) for v in interval]


def _summary(labels, scores, groups, nulls: dict, settings: Settings) -> dict:
  """The numbers of one "Name the X": balanced accuracy and macro AUROC, each with the
  p and interval of its permutation test against `nulls[name]`; the verdict's p is
  the AUROC's (it does not hang on the argmax threshold, which unequal groups tilt)."""
  found = statistics(labels, scores)
  chance = {"balanced_accuracy": 1.0 / len(groups), "auroc": 0.5}
  tests = {name: permutation_test(found[name], nulls[name], chance[name]) for name in found}
  return {
      "testable": True, "groups": groups, "n": int(len(labels)),
      "n_per_group": [int(c) for c in np.bincount(labels, minlength=len(groups))],
      "chance_balanced_accuracy": chance["balanced_accuracy"], **found,
      "ci": {name: interval for name, (_, interval) in tests.items()},
      "p_values": {name: p for name, (p, _) in tests.items()},
      "permutation_p": tests["auroc"][0], "permutation_statistic": "auroc",
      "n_permutations": len(nulls["auroc"]), "ci_method": "permutation test inverted",
      "confusion": confusion_matrix(labels, scores.argmax(1),
                                    labels=np.arange(len(groups))).tolist()}


def _nulls(draws: list[dict]) -> dict:
  return {name: [d[name] for d in draws] for name in ("balanced_accuracy", "auroc")}


def _shuffled_statistics(x, labels, units, folds, seed) -> dict:
  return statistics(labels, cross_fitted_scores(x, labels, units, folds, seed))


def labelled(values, settings: Settings) -> tuple:
  """(groups, rows kept, class index per kept row, None) of one attribute's values, or
  (None, None, None, why it cannot be tested)."""
  groups, reason = testable_groups(values, settings.min_group)
  if reason:
    return None, None, None, reason
  keep = np.flatnonzero(np.isin(values, groups))
  return groups, keep, np.array([groups.index(values[i]) for i in keep]), None


def name_attribute(features, values, patients, settings: Settings, seed: int = 0) -> dict:
  """"Name the X" for one attribute: `values` the attribute per study (strings, ""
  missing), `features` [n, f] the probe's, `patients` the grouping of the folds."""
  groups, keep, labels, reason = labelled(values, settings)
  if reason:
    return {"testable": False, "reason": reason}
  x, units = np.asarray(features)[keep], np.asarray(patients)[keep]
  folds = min(settings.folds, int(np.bincount(labels).min()))
  if folds < 2:
    return {"testable": False, "reason": "too few studies a group to cross-fit"}
  scores = cross_fitted_scores(x, labels, units, folds, seed)
  rng = np.random.default_rng(seed)
  shuffles = [rng.permutation(labels) for _ in range(settings.n_permutations)]
  null = joblib.Parallel(n_jobs=settings.workers)(
      joblib.delayed(_shuffled_statistics)(x, shuffled, units, folds, seed)
      for shuffled in shuffles)
  return {**_summary(labels, scores, groups, _nulls(null), settings), "folds": folds}


def held_out(labels, scores, groups, settings: Settings, seed: int = 0) -> dict:
  """"Name the X" of a model scored on held-out studies: `scores` [n, classes] are
  fixed, so the permutation null shuffles the labels over them (nothing is refitted)."""
  labels, scores = np.asarray(labels), np.asarray(scores)
  rng = np.random.default_rng(seed)
  null = [statistics(shuffled, scores) for shuffled in
          (rng.permutation(labels) for _ in range(settings.n_permutations))]
  return _summary(labels, scores, groups, _nulls(null), settings)


def held_out_split(labels, patients, folds: int, seed: int) -> tuple:
  """(train, val, test) row indices: `folds` folds stratified by label and grouped by
  patient (StratifiedGroupKFold); the first tests, the second validates, the rest train."""
  splitter = StratifiedGroupKFold(n_splits=folds, shuffle=True, random_state=seed)
  parts = [test for _, test in splitter.split(np.zeros(len(labels)), labels, patients)]
  return np.sort(np.concatenate(parts[2:])), np.sort(parts[1]), np.sort(parts[0])


def association(a, b, numeric_b: bool = False) -> dict:
  """Cramer's V and the chi-square p of two categorical columns, or (numeric `b`) the
  correlation ratio eta and the Kruskal-Wallis p; studies missing either are left out."""
  a, b = np.asarray(a, object), np.asarray(b, object)
  keep = np.array([x not in ("", None) and y not in ("", None) for x, y in zip(a, b)], bool)
  a, b = a[keep].astype(str), b[keep]
  if np.unique(a).size < 2 or (not numeric_b and np.unique(b.astype(str)).size < 2):
    return {"n": int(keep.sum()), "reason": "fewer than two values"}
  if numeric_b:
    y = b.astype(float)
    samples = [y[a == g] for g in np.unique(a)]
    between = sum(len(s) * (s.mean() - y.mean()) ** 2 for s in samples)
    total = ((y - y.mean()) ** 2).sum()
    return {"n": int(len(y)), "measure": "eta",
            "value": float(np.sqrt(between / total)) if total else 0.0,
            "p": float(stats.kruskal(*samples).pvalue) if total else 1.0}
  table = stats.contingency.crosstab(a, b.astype(str)).count
  return {"n": int(keep.sum()), "measure": "cramers_v",
          "value": float(stats.contingency.association(table, method="cramer")),
          "p": float(stats.chi2_contingency(table).pvalue)}


def add_q_values(results, p_key: str, q_key: str) -> None:
  """Benjamini-Hochberg q-values (scipy.stats.false_discovery_control) in place: each
  dict of `results` that holds a finite `p_key` gets `q_key`, adjusted over all of
  them. An audit tests many attributes and many pairs; at p < 0.05 one pair in twenty
  would look associated by chance."""
  tested = [r for r in results if np.isfinite(r.get(p_key, np.nan))]
  if tested:
    q = stats.false_discovery_control([r[p_key] for r in tested], method="bh")
    for r, value in zip(tested, q):
      r[q_key] = float(value)


def nameable(result: dict, alpha: float = 0.05) -> bool:
  """Named from the images: the AUROC above chance with permutation q (p where not
  adjusted) < alpha. Since q >= p, the AUROC's interval then excludes chance too."""
  return bool(result.get("testable")) and \
      result.get("permutation_q", result["permutation_p"]) < alpha and \
      result["auroc"] > 0.5


def shortcut_risks(named: dict, associations: dict, labels: list[str],
                   alpha: float = 0.05) -> list[str]:
  """Plain sentences: an attribute nameable from the images that is associated with a
  label (q < alpha, p where not adjusted)."""
  lines = []
  for attribute, result in named.items():
    if not nameable(result, alpha):
      continue
    low, high = result["ci"]["auroc"]
    for label in labels:
      found = associations.get((attribute, label)) or associations.get((label, attribute), {})
      if found.get("q", found.get("p", 1.0)) < alpha:
        lines.append(f"{ATTRIBUTES.get(attribute, attribute)} is nameable from the images "
                     f"(AUROC {result['auroc']:.2f} [{low:.2f}, {high:.2f}]) and associated "
                     f"with {label} ({found['measure']} {found['value']:.2f}, "
                     f"p {found['p']:.3g}, q {found.get('q', found['p']):.3g})")
  return lines
