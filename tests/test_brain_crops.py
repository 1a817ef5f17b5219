"""Brain crops for Name the Manufacturer: inside the mask, deterministic, averaged per study."""
import jax
import numpy as np
import pytest

from scanbias_jax import keys
from scanbias_jax.experiments import brain_crops


def _box_mask(shape=(40, 40, 6), lo=8, hi=30, slices=(1, 2, 3, 4)):
  mask = np.zeros(shape, bool)
  mask[lo:hi, lo:hi, list(slices)] = True
  return mask


def test_brain_fraction_matches_direct_count():
  rng = np.random.default_rng(0)
  mask = rng.random((20, 18, 3)) > 0.4
  fraction = brain_crops.brain_fraction(mask, 5)
  assert fraction.shape == (16, 14, 3)
  for i, j, k in [(0, 0, 0), (7, 3, 1), (15, 13, 2)]:
    assert fraction[i, j, k] == pytest.approx(mask[i:i + 5, j:j + 5, k].mean(), abs=1e-6)


def test_crops_lie_inside_the_brain_on_distinct_slices():
  mask = _box_mask()
  positions = brain_crops.crop_positions(mask, 10, 50, 3, np.random.default_rng(1))
  assert len(positions) == 50
  for i0, j0, slices in positions:
    assert len(set(slices.tolist())) == 3
    assert mask[i0:i0 + 10, j0:j0 + 10][..., slices].all()
  corners = {(i0, j0) for i0, j0, _ in positions}
  assert len(corners) > 10          # drawn over the brain, not one fixed place


def test_small_brain_lowers_the_bar_instead_of_failing():
  mask = _box_mask(lo=10, hi=16)    # 6 px brain, 10 px crops: never 95 % brain
  positions = brain_crops.crop_positions(mask, 10, 4, 3, np.random.default_rng(0))
  best = max(mask[i:i + 10, j:j + 10, k].mean() for i in range(31) for j in range(31)
             for k in range(6))
  for i0, j0, slices in positions:
    assert mask[i0:i0 + 10, j0:j0 + 10][..., slices].mean(axis=(0, 1)).min() == pytest.approx(best)


def test_empty_mask_is_a_clear_error():
  with pytest.raises(ValueError, match="empty"):
    brain_crops.crop_positions(np.zeros((20, 20, 4), bool), 8, 2, 3, np.random.default_rng(0))


def test_study_crops_are_deterministic_and_windowed():
  volume = np.random.default_rng(2).normal(40, 30, (40, 40, 6)).astype(np.float32)
  key = keys.stream(jax.random.key(0), "s")
  a = brain_crops.study_crops(volume, _box_mask(), 10, 5, 3, key)
  b = brain_crops.study_crops(volume, _box_mask(), 10, 5, 3, key)
  assert a.shape == (5, 10, 10, 3) and a.dtype == np.float32
  np.testing.assert_array_equal(a, b)
  assert a.min() >= -1.0 and a.max() <= 1.0
  other = brain_crops.study_crops(volume, _box_mask(), 10, 5, 3, keys.stream(key, "x"))
  assert not np.array_equal(a, other)


def test_per_study_scores_is_the_mean_of_each_study_crops():
  scores = np.array([[0.1, 0.3, 0.9, 0.7, 0.5]])
  study = np.array([0, 0, 1, 1, 1])
  np.testing.assert_allclose(brain_crops.per_study_scores(scores, study, 2), [[0.2, 0.7]])


def test_select_studies_keeps_their_crops_and_renumbers():
  data = dict(x=np.arange(5.0)[:, None], y=np.array([0, 0, 1, 1, 1.0]),
              study=np.array([0, 0, 1, 2, 2]), labels=np.array([0, 1, 1]),
              study_ids=["a", "b", "c"], skipped=[])
  picked = brain_crops.select_studies(data, data["labels"] == 1)
  np.testing.assert_array_equal(picked["x"][:, 0], [2.0, 3.0, 4.0])
  np.testing.assert_array_equal(picked["study"], [0, 1, 1])
  assert picked["study_ids"] == ["b", "c"] and list(picked["labels"]) == [1, 1]
