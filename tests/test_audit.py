"""The bias audit's statistics (evaluate/audit.py) against hand-computed cases and sklearn."""
import numpy as np
import pytest
from sklearn.metrics import roc_auc_score

from scanbias_jax.evaluate import audit

FAST = audit.Settings(min_group=5, folds=4, n_permutations=60)


def test_untestable_attributes_say_why():
  assert audit.testable_groups(["", ""], 5) == ([], "tag missing in every study")
  assert audit.testable_groups(["120"] * 9, 5) == ([], "one group only (120)")
  groups, reason = audit.testable_groups(["a"] * 6 + ["b"] * 2 + ["c"] * 3, 5)
  assert groups == [] and "fewer than two groups with >= 5" in reason
  assert audit.testable_groups(["a"] * 6 + ["b"] * 5 + ["c"] * 1 + [""], 5) == (["a", "b"], None)


def _cohort(rng, n_groups, per_group, signal):
  """Probe-like features: group g shifts the first two features by signal x g."""
  labels = np.repeat(np.arange(n_groups), per_group)
  features = rng.normal(size=(labels.size, 11))
  features[:, :2] += signal * labels[:, None]
  values = [f"g{g}" for g in labels]
  patients = [f"p{i}" for i in range(labels.size)]
  return features, values, patients


def test_a_real_signal_is_named_and_a_planted_null_is_not():
  rng = np.random.default_rng(0)
  features, values, patients = _cohort(rng, 3, 30, signal=2.0)
  named = audit.name_attribute(features, values, patients, FAST)
  assert named["testable"] and named["groups"] == ["g0", "g1", "g2"]
  assert named["balanced_accuracy"] > 0.8 and named["auroc"] > 0.9
  assert named["ci"]["auroc"][0] > 0.5 and named["permutation_p"] < 0.05
  assert np.asarray(named["confusion"]).sum() == 90
  # The same features under labels drawn at random (a station name, say).
  shuffled = list(rng.permutation(values))
  null = audit.name_attribute(features, shuffled, patients, FAST)
  assert null["permutation_p"] > 0.05 and not audit.nameable(null)
  low, high = null["ci"]["balanced_accuracy"]
  assert low <= null["chance_balanced_accuracy"] <= high
  assert null["ci"]["auroc"][0] <= 0.5 <= null["ci"]["auroc"][1]


@pytest.mark.parametrize("seed", range(6))
def test_planted_null_attributes_keep_chance_inside_the_interval_the_test_gives(seed):
  """Cross-fitted scores of a null attribute sit below chance; the interval comes from the
  same permutations as p, so it excludes chance exactly when p < 0.05, and a null's
  verdict, p and interval agree."""
  rng = np.random.default_rng(100 + seed)
  features, values, patients = _cohort(rng, 2, 24, signal=0.0)
  null = audit.name_attribute(features, values, patients, FAST, seed=seed)
  for name in ("auroc", "balanced_accuracy"):
    low, high = null["ci"][name]
    chance = 0.5 if name == "auroc" else null["chance_balanced_accuracy"]
    assert (low > chance or high < chance) == (null["p_values"][name] < 0.05)
  assert (null["ci"]["auroc"][0] > 0.5) == (null["permutation_p"] < 0.05 and null["auroc"] > 0.5)


def test_permutation_interval_inverts_the_permutation_test():
  rng = np.random.default_rng(5)
  null = rng.normal(0.45, 0.05, 199)   # cross-fitting's downward bias
  for found in rng.uniform(0.2, 0.8, 300):
    p, (low, high) = audit.permutation_test(found, null, chance=0.5)
    assert (low > 0.5 or high < 0.5) == (p < 0.05), (found, p, low, high)
  p, (low, high) = audit.permutation_test(0.45, null, chance=0.5)
  assert p > 0.5 and low < 0.5 < high   # at the null's centre, chance is inside
  assert audit.permutation_test(0.9, null[:20], chance=0.5) == (2 / 21, [0.0, 1.0])


def test_folds_keep_a_patient_together_and_scores_are_out_of_fold():
  rng = np.random.default_rng(1)
  features, values, _ = _cohort(rng, 2, 20, signal=1.0)
  patients = [f"p{i // 2}" for i in range(40)]   # two studies a patient
  labels = np.array([int(v[1]) for v in values])
  scores = audit.cross_fitted_scores(features, labels, np.array(patients), 4, seed=0)
  assert scores.shape == (40, 2) and np.allclose(scores.sum(1), 1.0)
  from sklearn.model_selection import StratifiedGroupKFold
  for train, test in StratifiedGroupKFold(4, shuffle=True, random_state=0).split(
      features, labels, patients):
    assert not set(np.array(patients)[train]) & set(np.array(patients)[test])


def test_macro_auroc_is_the_mean_of_one_vs_rest_aurocs():
  rng = np.random.default_rng(2)
  labels = np.repeat(np.arange(3), 10)
  scores = rng.dirichlet(np.ones(3), size=30)
  by_hand = np.mean([roc_auc_score(labels == c, scores[:, c]) for c in range(3)])
  assert audit.macro_auroc(labels, scores) == pytest.approx(by_hand)
  two = rng.dirichlet(np.ones(2), size=30)
  binary = (np.arange(30) % 2)
  assert audit.macro_auroc(binary, two) == pytest.approx(roc_auc_score(binary, two[:, 1]))


def test_associations_against_hand_computed_tables():
  same = audit.association(["a"] * 10 + ["b"] * 10, ["x"] * 10 + ["y"] * 10)
  assert same["measure"] == "cramers_v" and same["value"] == pytest.approx(1.0)
  assert same["p"] < 0.001
  # A 2 x 2 table [[5, 5], [5, 5]]: no association at all.
  none = audit.association(["a"] * 10 + ["b"] * 10, ["x", "y"] * 10)
  assert none["value"] == pytest.approx(0.0) and none["p"] > 0.5
  # Numeric: eta^2 is the between-group share of the variance (hand-computed: 8 / 10).
  eta = audit.association(["a", "a", "b", "b"], ["1", "3", "5", "7"], numeric_b=True)
  assert eta["measure"] == "eta" and eta["value"] == pytest.approx(np.sqrt(16 / 20))
  assert audit.association(["a", "a", ""], ["x", "y", "z"])["reason"] == "fewer than two values"


def test_shortcut_risk_sentence_names_attribute_interval_and_label():
  named = {"vendor": {"testable": True, "permutation_p": 0.001, "auroc": 0.97,
                      "ci": {"auroc": [0.91, 1.0]}},
           "station": {"testable": True, "permutation_p": 0.6, "auroc": 0.5,
                       "ci": {"auroc": [0.4, 0.6]}}}
  found = {("vendor", "diagnosis"): {"measure": "cramers_v", "value": 0.4, "p": 0.002},
           ("station", "diagnosis"): {"measure": "cramers_v", "value": 0.5, "p": 0.001}}
  lines = audit.shortcut_risks(named, found, ["diagnosis"])
  assert lines == ["vendor is nameable from the images (AUROC 0.97 [0.91, 1.00]) and "
                   "associated with diagnosis (cramers_v 0.40, p 0.002, q 0.002)"]


def test_q_values_are_benjamini_hochberg_and_gate_the_risks():
  """By hand: p 0.001, 0.002, 0.04, 0.5 of 4 tests -> q 0.004, 0.004, 0.0533, 0.5; an
  association at p 0.04 is one of four tested and no longer flagged."""
  found = {("vendor", "diagnosis"): {"measure": "cramers_v", "value": 0.4, "p": 0.002},
           ("vendor", "sex"): {"measure": "cramers_v", "value": 0.3, "p": 0.04},
           ("station", "diagnosis"): {"measure": "cramers_v", "value": 0.5, "p": 0.001},
           ("station", "sex"): {"measure": "cramers_v", "value": 0.1, "p": 0.5},
           ("kvp", "sex"): {"reason": "one group"}}
  audit.add_q_values(found.values(), "p", "q")
  assert [found[k].get("q") for k in found] == pytest.approx([0.004, 0.04 * 4 / 3, 0.004, 0.5, None])
  named = {"vendor": {"testable": True, "permutation_p": 0.001, "permutation_q": 0.002,
                      "auroc": 0.97, "ci": {"auroc": [0.91, 1.0]}}}
  lines = audit.shortcut_risks(named, found, ["diagnosis", "sex"])
  assert len(lines) == 1 and "diagnosis" in lines[0] and "q 0.004" in lines[0]
  assert not audit.nameable(dict(named["vendor"], permutation_q=0.06))


def test_held_out_split_is_grouped_by_patient_stratified_and_disjoint():
  labels = np.repeat([0, 1, 2], 20)
  patients = np.arange(60) // 2                      # two studies a patient
  train, val, test = audit.held_out_split(labels, patients, 5, seed=3)
  assert sorted(np.concatenate([train, val, test])) == list(range(60))
  homes = [set(patients[part]) for part in (train, val, test)]
  assert not (homes[0] & homes[1] or homes[0] & homes[2] or homes[1] & homes[2])
  for part in (val, test):
    assert set(labels[part]) == {0, 1, 2}
  assert len(test) == pytest.approx(12, abs=2) and len(train) == pytest.approx(36, abs=4)


def test_held_out_scores_against_scikit_learn_and_a_shuffled_null():
  from sklearn.metrics import balanced_accuracy_score
  rng = np.random.default_rng(1)
  labels = np.repeat([0, 1, 2], 12)
  informative = np.eye(3)[labels] * 2 + rng.random((36, 3))
  named = audit.held_out(labels, informative / informative.sum(1, keepdims=True),
                         ["a", "b", "c"], FAST)
  assert named["balanced_accuracy"] == pytest.approx(
      balanced_accuracy_score(labels, informative.argmax(1)))
  assert named["permutation_p"] == pytest.approx(2 / (1 + FAST.n_permutations))  # two-sided
  assert np.trace(np.asarray(named["confusion"])) == 36
  noise = rng.random((36, 3))
  noise /= noise.sum(1, keepdims=True)
  assert audit.held_out(labels, noise, ["a", "b", "c"],
                        FAST)["permutation_p"] > 0.05


def test_the_cnn_names_the_listed_attributes_then_the_probes_strongest():
  from scanbias_jax.experiments import audit_cnn
  named = {"vendor": {"testable": True, "auroc": 0.9}, "kvp": {"testable": True, "auroc": 0.99},
           "station": {"testable": True, "auroc": 0.5}, "year": {"testable": False}}
  settings = lambda **k: audit.Settings(**k)  # pylint: disable=unnecessary-lambda-assignment
  assert audit_cnn.chosen(settings(), named) == ["kvp"]
  assert audit_cnn.chosen(settings(cnn_attributes=("station", "year"), cnn_strongest=2),
                          named) == ["station", "kvp", "vendor"]
  assert audit_cnn.chosen(settings(cnn_strongest=0), named) == []
