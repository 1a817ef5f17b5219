"""Cohort building: balance tables, vendor-balanced age/sex matching, stratified splits.

The paper chose GE and Siemens studies "to maintain similar distributions in age
and gender" and split them 70/9/21 "while maintaining balance across
manufacturers". Here matching is coarsened exact matching: every (sex, age bin)
stratum contributes the same number of studies from each group, so the groups'
age and sex distributions agree up to the bin width.
"""
import os

import numpy as np

from scanbias_jax import files, keys
from scanbias_jax.cohort import manifest

SPLITS = ("train", "val", "test")


def usable_rows(rows, group="vendor") -> list[dict]:
  """Manifest rows that can be matched: status ok, a group value, an age and a sex."""
  return [row for row in rows if row.get("status") == "ok" and row.get(group)
          and str(row.get("age_years", "")) != "" and row.get("sex") in ("M", "F", "O")]


def balance_table(rows, group="vendor") -> list[dict]:
  """Per group: n, age mean/sd, % female, and standardized mean differences vs the rest.

  SMD(age) = (mean_g - mean_rest) / sqrt((sd_g^2 + sd_rest^2) / 2);
  SMD(female) uses p(1 - p) as the variance. |SMD| < 0.1 is the usual "balanced".
  """
  ages = np.array([float(row["age_years"]) for row in rows])
  female = np.array([row["sex"] == "F" for row in rows], float)
  labels = np.array([row[group] for row in rows])
  table = []
  for value in sorted(set(labels)):
    inside = labels == value
    table.append({
        group: value, "n": int(inside.sum()),
        "age_mean": float(ages[inside].mean()), "age_sd": float(ages[inside].std(ddof=1))
        if inside.sum() > 1 else 0.0,
        "pct_female": float(100 * female[inside].mean()),
        "smd_age": _smd(ages[inside], ages[~inside]),
        "smd_female": _smd(female[inside], female[~inside], binary=True),
    })
  return table


def format_table(table, group="vendor") -> str:
  lines = [f"{group:<12} {'n':>5} {'age mean':>9} {'age sd':>7} {'% female':>9} "
           f"{'SMD age':>8} {'SMD sex':>8}"]
  for entry in table:
    lines.append(f"{entry[group]:<12} {entry['n']:>5d} {entry['age_mean']:>9.1f} "
                 f"{entry['age_sd']:>7.1f} {entry['pct_female']:>9.1f} "
                 f"{entry['smd_age']:>8.3f} {entry['smd_female']:>8.3f}")
  return "\n".join(lines)


def match_cohort(rows, key, size=0, group="vendor", age_bin_years=5.0,
                 one_study_per_patient=True) -> list[dict]:
  """Equal numbers per group, drawn stratum by stratum (sex x age bin).

  size: total studies wanted (0 = the largest balanced cohort); fewer come back
  when the data cannot give that many matched studies. age_bin_years <= 0 matches
  on sex alone.
  """
  rows = usable_rows(rows, group)
  if one_study_per_patient:
    first_of_patient = {}
    for row in sorted(rows, key=lambda r: r["study_id"]):
      first_of_patient.setdefault(row.get("patient_id") or row["study_id"], row)
    rows = list(first_of_patient.values())
  groups = sorted({row[group] for row in rows})
  if len(groups) < 2:
    return sorted(rows, key=lambda r: r["study_id"])[: size or None]
  strata = {}
  for row in rows:
    age_bin = int(float(row["age_years"]) // age_bin_years) if age_bin_years > 0 else 0
    stratum = (row["sex"], age_bin)
    strata.setdefault(stratum, {}).setdefault(row[group], []).append(row)
  strata = dict(sorted(strata.items()))
  matchable = np.array([min(len(members.get(g, [])) for g in groups)
                        for members in strata.values()])
  per_group = int(matchable.sum()) if not size else min(size // len(groups), int(matchable.sum()))
  quota = _proportional(matchable, per_group)
  chosen = []
  for (sex, age_bin), members, count in zip(strata, strata.values(), quota):
    for value in groups:
      candidates = sorted(members[value], key=lambda r: r["study_id"]) if count else []
      rng = keys.numpy_rng(keys.stream(key, f"match/{sex}/{age_bin}/{value}"))
      chosen.extend(candidates[i] for i in rng.permutation(len(candidates))[:count])
  return sorted(chosen, key=lambda r: r["study_id"])


def stratified_split(rows, key, fractions=(0.70, 0.09, 0.21), strata=("vendor",),
                     units: dict | None = None) -> dict:
  """study_id -> train | val | test; each stratum is split in the same proportions.

  `units` (study_id -> unit id, e.g. a traveling head's anatomy) keeps every unit's
  studies in one split: the units are split instead, stratified by the sorted strata
  values of their studies. Studies without a unit are units of their own.
  """
  if units is not None:
    members = {}
    for row in rows:
      members.setdefault(str(units.get(row["study_id"], "study:" + row["study_id"])),
                         []).append(row)
    unit_rows = [dict(study_id=unit, stratum="|".join(sorted(
        "/".join(str(r[c]) for c in strata) for r in group)))
                 for unit, group in members.items()]
    by_unit = stratified_split(unit_rows, key, fractions, strata=("stratum",))
    return {r["study_id"]: by_unit[unit] for unit, group in members.items() for r in group}
  groups = {}
  for row in rows:
    groups.setdefault(tuple(str(row[c]) for c in strata), []).append(row["study_id"])
  assignment = {}
  for stratum, study_ids in sorted(groups.items()):
    study_ids = sorted(study_ids)
    rng = keys.numpy_rng(keys.stream(key, "split/" + "/".join(stratum)))
    order = [study_ids[i] for i in rng.permutation(len(study_ids))]
    counts = _proportional(np.asarray(fractions, float), len(order))
    bounds = np.cumsum(counts)
    for index, study_id in enumerate(order):
      assignment[study_id] = SPLITS[int(np.searchsorted(bounds, index, side="right"))]
  return assignment


def largest_remainder(exact, total) -> np.ndarray:
  """Integers near `exact` summing to `total` (the largest remainders rounded up, ties
  to the earlier entry)."""
  exact = np.asarray(exact, float)
  counts = np.floor(exact).astype(int)
  for index in np.argsort(-(exact - counts), kind="stable")[:max(total - counts.sum(), 0)]:
    counts[index] += 1
  return counts


def _proportional(weights, total) -> np.ndarray:
  """Integers proportional to `weights` summing to `total`."""
  weights = np.asarray(weights, float)
  if total <= 0 or weights.sum() == 0:
    return np.zeros(len(weights), int)
  return largest_remainder(weights / weights.sum() * total, total)


def _smd(a, b, binary=False) -> float:
  if a.size == 0 or b.size == 0:
    return 0.0
  if binary:
    pooled = (a.mean() * (1 - a.mean()) + b.mean() * (1 - b.mean())) / 2
  else:
    pooled = (a.var(ddof=1 if a.size > 1 else 0) + b.var(ddof=1 if b.size > 1 else 0)) / 2
  return float((a.mean() - b.mean()) / np.sqrt(pooled)) if pooled > 0 else 0.0


def build_cohort(rows, key, settings):
  """Matched cohort rows (with a `split` column) and balance tables before and after.

  settings: config.cohort. The split is stratified by the balanced group.
  """
  candidates = usable_rows(rows, settings.group)
  chosen = match_cohort(rows, keys.stream(key, "match"), settings.size, settings.group,
                        settings.age_bin_years, settings.one_study_per_patient)
  splits = stratified_split(chosen, keys.stream(key, "split"), settings.split_fractions,
                            (settings.group,))
  cohort = [dict(row, split=splits[row["study_id"]]) for row in chosen]
  before = balance_table(candidates, settings.group) if candidates else []
  after = balance_table(chosen, settings.group) if chosen else []
  return cohort, before, after


BALANCE_COLUMNS = ("n", "age_mean", "age_sd", "pct_female", "smd_age", "smd_female")


def write_cohort_tables(out_dir, config):
  """From out_dir/manifest.csv: the matched cohort with its split and balance tables.

  Writes cohort.csv, balance_all.csv and balance_cohort.csv; returns
  (cohort rows, balance of all usable studies, balance of the cohort).
  """
  with open(os.path.join(out_dir, "manifest.csv")) as f:
    rows = manifest.from_csv(f.read())
  cohort, before, after = build_cohort(rows, keys.stream(keys.root(config.seed), "cohort"),
                                       config.cohort)
  columns = (config.cohort.group,) + BALANCE_COLUMNS
  files.write_text(os.path.join(out_dir, "balance_all.csv"), manifest.to_csv(before, columns))
  files.write_text(os.path.join(out_dir, "balance_cohort.csv"),
                   manifest.to_csv(after, columns))
  files.write_text(os.path.join(out_dir, "cohort.csv"),
                   manifest.to_csv(cohort, manifest.MANIFEST_COLUMNS + ("split",)))
  return cohort, before, after
