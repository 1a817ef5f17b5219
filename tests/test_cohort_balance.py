"""Vendor-balanced age/sex matching, balance tables (SMD) and the stratified split."""
import collections

import ml_collections
import numpy as np
import pytest

from scanbias_jax import keys
from scanbias_jax.cohort import balance


def _manifest(n_ge=120, n_siemens=80, seed=0):
  """GE patients older and more often female than Siemens ones: unbalanced on purpose."""
  rng = np.random.default_rng(seed)
  rows = []
  for vendor, n, age_mean, female in (("GE", n_ge, 65, 0.65), ("Siemens", n_siemens, 55, 0.4)):
    for i in range(n):
      rows.append({"study_id": f"study-{vendor}-{i:03d}", "patient_id": f"p-{vendor}-{i}",
                   "status": "ok", "vendor": vendor,
                   "age_years": f"{np.clip(rng.normal(age_mean, 12), 18, 95):.0f}",
                   "sex": "F" if rng.random() < female else "M"})
  rows.append({"study_id": "study-x", "patient_id": "p-x", "status": "rejected",
               "vendor": "GE", "age_years": "50", "sex": "F"})
  return rows


def test_balance_table_reports_imbalance():
  table = {t["vendor"]: t for t in balance.balance_table(balance.usable_rows(_manifest()))}
  assert table["GE"]["n"] == 120 and table["Siemens"]["n"] == 80
  assert table["GE"]["smd_age"] > 0.5 and table["Siemens"]["smd_age"] < -0.5
  assert table["GE"]["smd_female"] > 0.3
  assert "SMD age" in balance.format_table(list(table.values()))


def test_matched_cohort_is_balanced_and_deterministic():
  key = keys.root(0)
  chosen = balance.match_cohort(_manifest(), key, size=60, age_bin_years=5)
  assert collections.Counter(r["vendor"] for r in chosen) == {"GE": 30, "Siemens": 30}
  assert chosen == balance.match_cohort(_manifest(), key, size=60, age_bin_years=5)
  assert chosen != balance.match_cohort(_manifest(), keys.root(1), size=60, age_bin_years=5)
  table = balance.balance_table(chosen)
  assert all(abs(t["smd_female"]) < 1e-9 for t in table)
  assert all(abs(t["smd_age"]) < 0.2 for t in table)
  largest = balance.match_cohort(_manifest(), key)
  assert len(largest) % 2 == 0 and len(largest) > len(chosen)
  assert "study-x" not in {r["study_id"] for r in largest}


def test_one_study_per_patient():
  rows = _manifest(10, 10)
  rows += [dict(rows[0], study_id="study-GE-repeat")]
  chosen = balance.match_cohort(rows, keys.root(0), one_study_per_patient=True)
  assert len({r["patient_id"] for r in chosen}) == len(chosen)


@pytest.mark.parametrize("n", [391, 40])
def test_split_is_70_9_21_per_vendor(n):
  rows = [r for r in _manifest(n, n) if r["status"] == "ok"]
  splits = balance.stratified_split(rows, keys.root(0))
  counts = collections.Counter((r["vendor"], splits[r["study_id"]]) for r in rows)
  for vendor in ("GE", "Siemens"):
    shares = [counts[(vendor, s)] / n for s in balance.SPLITS]
    np.testing.assert_allclose(shares, [0.70, 0.09, 0.21], atol=1.0 / n)
    assert counts[(vendor, "train")] == counts[("GE", "train")]
  assert splits == balance.stratified_split(list(reversed(rows)), keys.root(0))


def test_build_cohort_adds_splits():
  settings = ml_collections.ConfigDict(dict(size=40, group="vendor", age_bin_years=5.0,
                                            split_fractions=(0.7, 0.09, 0.21),
                                            one_study_per_patient=True))
  cohort, before, after = balance.build_cohort(_manifest(), keys.root(0), settings)
  assert len(cohort) == 40 and {r["split"] for r in cohort} == set(balance.SPLITS)
  assert abs(before[0]["smd_age"]) > abs(after[0]["smd_age"])


def test_units_keep_each_traveling_head_in_one_split():
  """60 heads, each acquired on GE and Siemens: every head's two studies share a split,
  the splits keep their fractions, and each split holds both vendors equally."""
  rows = [dict(study_id=f"s{h}-{v}", vendor=v, label=str((h + (v == "GE")) % 2))
          for h in range(60) for v in ("GE", "Siemens")]
  units = {r["study_id"]: r["study_id"].split("-")[0] for r in rows}
  splits = balance.stratified_split(rows, keys.root(0), strata=("vendor", "label"), units=units)
  for h in range(60):
    assert splits[f"s{h}-GE"] == splits[f"s{h}-Siemens"]
  counts = {s: sum(v == s for v in splits.values()) for s in ("train", "val", "test")}
  # Two unit strata (GE/0|Siemens/1, GE/1|Siemens/0) of 30 heads: 21 / 3 / 6 heads each.
  assert counts == {"train": 84, "val": 12, "test": 24}
  for split in counts:
    vendors = [sid.split("-")[1] for sid, s in splits.items() if s == split]
    assert vendors.count("GE") == vendors.count("Siemens")
  assert splits == balance.stratified_split(list(reversed(rows)), keys.root(0),
                                            strata=("vendor", "label"), units=units)
