"""The noise-texture probe: it names the vendor when the scanners differ and cannot
when `signature_strength` is 0 (the negative control), on small synthesized volumes."""
import numpy as np
import pytest
from sklearn.metrics import roc_auc_score

from configs import default
from scanbias_jax import keys
from scanbias_jax.evaluate import probe
from scanbias_jax.synth import cohort, scanner


def texture_table(strength, anatomies=12, matrix=128):
  """Features, vendor labels and anatomy ids of a traveling GE/Siemens cohort."""
  synth = default.get_config().synth
  synth.design, synth.num_studies = "traveling", 2 * anatomies
  synth.thin_only_fraction = synth.tilt_fraction = 0.0
  synth.matrix, synth.signature_strength = matrix, strength
  key = keys.root(7)
  plans = cohort.plan_cohort(key, synth)
  profiles = cohort.profiles(synth)
  rows, labels, heads = [], [], []
  for anatomy in range(anatomies):
    group = [p for p in plans if p.anatomy == anatomy]
    for plan, series in zip(group, cohort.render_group(key, group, synth)):
      routine = next(s for s in series if s.kind == "routine")
      volume = np.moveaxis(scanner.stored_to_hu(routine.acquired.stored,
                                                profiles[plan.vendor]), 0, -1)
      pixel = routine.geometry.pixel_mm
      rows.append(probe.texture_features(volume, probe.brain_mask(volume, pixel), pixel))
      labels.append(synth.vendors.index(plan.vendor))
      heads.append(anatomy)
  return np.array(rows), np.array(labels), np.array(heads)


@pytest.mark.parametrize("strength", [1.0, 0.0])
def test_probe_names_the_vendor_only_when_the_scanners_differ(strength):
  x, y, heads = texture_table(strength)
  assert x.shape[1] == len(probe.feature_names())
  train = heads < 8                      # whole anatomies in one split
  scores = probe.fit_and_score(x[train], y[train], x[~train])[:, 1]
  auroc = roc_auc_score(y[~train], scores)
  p = probe.permutation_p_value(np.random.default_rng(0), y[~train], scores, 2000)
  if strength:
    assert auroc >= 0.95 and p < 0.05, (auroc, p)
  else:
    assert p > 0.05, (auroc, p)


def test_permutation_p_value_matches_exhaustive_enumeration():
  # 3 positives among 6: 20 labelings; perfect separation is reached by one of them.
  labels = np.array([0, 0, 0, 1, 1, 1])
  scores = np.arange(6.0)
  p = probe.permutation_p_value(np.random.default_rng(1), labels, scores, 20000)
  assert abs(p - 1 / 20) < 0.006
  assert probe.permutation_p_value(np.random.default_rng(1), labels, -scores, 2000) == 1.0


def test_fit_and_score_fills_frequencies_beyond_the_grid():
  rng = np.random.default_rng(2)
  x = rng.normal(size=(20, 3))
  y = (x[:, 0] > 0).astype(int)
  x[:, 2] = np.nan                       # a band no study's grid reaches
  x[3, 1] = np.nan
  proba = probe.fit_and_score(x[:14], y[:14], x[14:])
  assert proba.shape == (6, 2) and np.isfinite(proba).all()
  assert roc_auc_score(y[14:], proba[:, 1]) == 1.0




def test_within_cluster_shuffles_keep_each_clusters_labels():
  rng = np.random.default_rng(0)
  labels = np.tile([0, 1], 30)                         # a traveling head: GE then Siemens
  heads = np.repeat(np.arange(30), 2)
  shuffled = probe.within_cluster_shuffles(rng, labels, heads, 2000)
  for row in shuffled[:50]:
    assert all(sorted(row[heads == h].tolist()) == [0, 1] for h in range(30))
  swapped = (shuffled[:, 0] == 1).mean()
  assert 0.45 < swapped < 0.55                         # each head swaps half the time
  singletons = probe.within_cluster_shuffles(rng, labels, np.arange(60), 10)
  assert (singletons == labels).all()
  # Scores dominated by the head with a tiny vendor shift: every head ranks its Siemens
  # acquisition first. Shuffling within heads sees it; shuffling freely mostly does not.
  scores = np.repeat(rng.random(30), 2) + 1e-3 * labels
  p = probe.permutation_p_value(np.random.default_rng(1), labels, scores, 2000, heads)
  assert p < 0.01
  assert probe.permutation_p_value(np.random.default_rng(1), labels, scores, 2000) > 0.1
  flat = np.repeat(rng.random(30), 2)                  # no vendor shift at all
  assert probe.permutation_p_value(np.random.default_rng(1), labels, flat, 2000, heads) > 0.2
