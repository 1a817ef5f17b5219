"""The paper's best-k-of-n member selection."""
import numpy as np
import pytest

from scanbias_jax.evaluate import selection


def _members(pairs):
  return [dict(accuracy=a, auroc=u) for a, u in pairs]


def test_best_k_by_mean_of_accuracy_and_auroc():
  members = _members([(0.70, 0.80), (0.90, 0.95), (0.85, 0.99), (0.60, 0.60), (0.95, 0.70)])
  chosen = selection.select_members(members, 3)
  # Means: 0.75, 0.925, 0.92, 0.60, 0.825.
  assert chosen.indices == (1, 2, 4)
  assert "best 3 of 5" in chosen.reason
  assert chosen.to_dict()["selected"] == [1, 2, 4]


def test_lexicographic_criterion():
  members = _members([(0.9, 0.5), (0.9, 0.7), (0.8, 1.0)])
  chosen = selection.select_members(members, 2, criterion="lexicographic")
  assert chosen.indices == (1, 0)


def test_ties_go_to_the_lower_index_and_are_order_stable():
  members = _members([(0.8, 0.9)] * 4)
  assert selection.select_members(members, 2).indices == (0, 1)
  # Same mean, but the better accuracy wins before the index does.
  members = _members([(0.8, 0.9), (0.9, 0.8), (0.8, 0.9)])
  assert selection.select_members(members, 2).indices == (1, 0)


def test_non_finite_members_rank_last():
  members = _members([(np.nan, 0.9), (0.5, 0.5), (0.6, np.nan), (0.7, 0.7)])
  chosen = selection.select_members(members, 3)
  assert chosen.indices[:2] == (3, 1)
  assert "non-finite" in chosen.reason


def test_k_none_or_large_keeps_everyone():
  members = _members([(0.5, 0.5), (0.9, 0.9)])
  assert selection.select_members(members, None).indices == (0, 1)
  assert selection.select_members(members, 5).indices == (0, 1)


def test_permutation_equivariance():
  rng = np.random.default_rng(1)
  members = _members(rng.random((10, 2)))
  order = rng.permutation(10)
  chosen = selection.select_members(members, 6).indices
  permuted = selection.select_members([members[i] for i in order], 6).indices
  assert sorted(order[list(permuted)]) == sorted(chosen)


def test_other_metrics_and_bad_arguments():
  members = [dict(dice=d) for d in (0.9, 0.95, 0.8)]
  assert selection.select_members(members, 1, ("dice",)).indices == (1,)
  with pytest.raises(ValueError):
    selection.select_members(members, 1, ("dice",), criterion="best")
  with pytest.raises(ValueError):
    selection.select_members(members, 0, ("dice",))
  with pytest.raises(ValueError):
    selection.select_members([], 1)
