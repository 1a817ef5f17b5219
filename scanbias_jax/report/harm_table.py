"""The report's answer to "does single-group training hurt the other group?": one
sentence, then a table with a row per cross-group comparison (difference [95 %
interval], p, MDD, the planted harm the same comparison detected, a verdict in words),
and the forest plot's rows. Every number is evaluate/harm.py's: an interval excludes
zero exactly when p < 0.05, so a verdict follows from either.
"""
import math

import numpy as np

from scanbias_jax.report.tables import Table

DIFFICULTIES = ("easy", "medium", "hard")
HOW_TO_READ = (
    "How to read this: difference = the metric on the training group's own test studies "
    "minus on the other group's (positive = worse on the other group: harm). Interval, p "
    "and MDD come from one t procedure over heads (paired, where both groups' test sets "
    "hold the same heads) or studies (Welch), on each unit's value of the metric; rates "
    "add Agresti-Min / Agresti-Caffo pseudo-samples so that 0 % and 100 % keep a width "
    "(evaluate/harm.py). The interval excludes zero exactly when p < 0.05. MDD: the fall "
    "that test finds with 80 % power. Planted: the same comparison with the other group's "
    "tissue calibration shifted by the stated HU (experiments/planted.py), a harm known "
    "to be there.")


def _finite(*values) -> bool:
  return all(v is not None and math.isfinite(float(v)) for v in values)


def entry(condition: dict, other: str, metric: str, block: str = "transfer"):
  """(the comparison's numbers, None) or (None, why there are none)."""
  found = condition.get(block, {}).get(other, {})
  value = found.get(metric)
  if value is None or not _finite(value["difference"], *value["ci"]):
    return None, (found.get("reasons", {}).get(metric, "not computed") if found else "not run")
  return value, None


def comparisons(results: dict) -> list[dict]:
  """Every cross-group comparison: task, train_group, other, metric, scale, unit,
  digits, value (or None and reason), planted (or None)."""
  found = results.get("spheres", {})
  names = [d for d in DIFFICULTIES if d in found] + sorted(set(found) - set(DIFFICULTIES))
  blocks = [(f"spheres {d.replace('_', ' ')}", found[d], "accuracy", 100.0, "points", 1)
            for d in names]
  blocks.append(("segmentation", results.get("segmentation", {}), "dice", 1.0, "Dice", 4))
  out = []
  for task, conditions, metric, scale, unit, digits in blocks:
    for train_group, condition in conditions.items():
      for other in condition.get("transfer", {}):
        value, reason = entry(condition, other, metric)
        planted, _ = entry(condition, other, metric, "planted")
        out.append(dict(task=task, train_group=train_group, other=other, metric=metric,
                        scale=scale, unit=unit, digits=digits, value=value, reason=reason,
                        planted=planted))
  return out


def _number(x: float, row: dict, sign: str = "+") -> str:
  return f"{row['scale'] * x:{sign}.{row['digits']}f}"


def with_interval(value: dict, row: dict) -> str:
  low, high = value["ci"]
  return (f"{_number(value['difference'], row)} [{_number(low, row)}, "
          f"{_number(high, row)}]")


def verdict(value: dict, row: dict) -> str:
  """Harm, benefit, or what the interval rules out, in words."""
  low, high = value["ci"]
  if low > 0:
    return f"harm: worse on {row['other']}"
  if high < 0:
    return f"better on {row['other']}"
  return (f"no harm shown; a fall above {_number(high, row, '')} {row['unit']} is "
          "ruled out")


def _planted_cell(planted, row: dict, shift: float) -> str:
  if planted is None:
    return "not planted"
  found = "detected" if planted["ci"][0] > 0 else "not detected"
  return f"+{shift:g} HU: {with_interval(planted, row)}, {found}"


def table(results: dict) -> Table:
  shift = planted_hu(results)
  rows = []
  for row in comparisons(results):
    head = [row["task"], f"{row['train_group']} -> {row['other']}"]
    value = row["value"]
    if value is None:
      rows.append(head + [f"n/a ({row['reason']})", "", "", "", ""])
      continue
    p, mdd = value.get("p_value"), value.get("mdd")
    rows.append(head + [with_interval(value, row), f"{p:.2g}" if _finite(p) else "n/a",
                        _number(mdd, row, "") if _finite(mdd) else "n/a",
                        _planted_cell(row["planted"], row, shift), verdict(value, row)])
  header = ["Task", "Trained on -> tested on", "Difference [95 % CI]", "p", "MDD",
            "Planted harm, same comparison", "Verdict"]
  units = "Spheres: accuracy in points (of 100); segmentation: Dice."
  return Table("Cross-group harm", header, rows or [["n/a (no single-group conditions run)"]
                                                    + [""] * 6], [units, HOW_TO_READ])


def planted_hu(results: dict) -> float:
  config = results.get("provenance", {}).get("config", {})
  return float(config.get("experiments", {}).get("planted_harm_hu", 0.0) or 0.0)


def answer(results: dict) -> str:
  """One sentence: whether this cohort shows harm, how large, and how large a harm it
  could have shown (the MDDs, and the planted harm it detected)."""
  rows = [r for r in comparisons(results) if r["value"] is not None]
  if not rows:
    return "Cross-group harm: n/a (no single-group conditions run)."
  harmed = [r for r in rows if r["value"]["ci"][0] > 0]
  spheres = [r for r in rows if r["metric"] == "accuracy"]
  could = ""
  if spheres:
    mdds = [100 * r["value"]["mdd"] for r in spheres if _finite(r["value"].get("mdd"))]
    could = (f"; these test sets detect a sphere-accuracy fall of {np.median(mdds):.1f} "
             f"points (median MDD, {min(mdds):.1f}-{max(mdds):.1f})") if mdds else ""
  planted = [r for r in spheres if r["planted"] is not None]
  if planted:
    drops = [100 * r["planted"]["difference"] for r in planted]
    found = sum(r["planted"]["ci"][0] > 0 for r in planted)
    could += (f", and a planted +{planted_hu(results):g} HU tissue calibration shift on the "
              f"other vendor was detected in {found} of {len(planted)} sphere comparisons "
              f"(drops {min(drops):+.1f} to {max(drops):+.1f} points)")
  if harmed:
    worst = max(harmed, key=lambda r: r["value"]["ci"][0] * r["scale"])
    return (f"This cohort shows cross-group harm in {len(harmed)} of {len(rows)} "
            f"comparisons, the largest {worst['task']} {worst['train_group']} -> "
            f"{worst['other']}: {with_interval(worst['value'], worst)} {worst['unit']}"
            f"{could}.")
  better = sum(r["value"]["ci"][1] < 0 for r in rows)
  below = (f" ({better} lies below it: better on the other group)" if better == 1 else
           f" ({better} lie below it: better on the other group)" if better else "")
  return (f"This cohort shows no cross-group harm: none of {len(rows)} comparisons has an "
          f"interval above zero{below}{could}.")


def forest_panels(results: dict) -> dict:
  """The forest plot's rows (`figures.forest_plot`): every cross-group difference of the
  spheres (accuracy, points) and of segmentation (Dice, x 100) with interval and MDD."""
  panels = {"accuracy": dict(unit="points", rows=[]), "Dice": dict(unit="Dice x 100", rows=[])}
  for row in comparisons(results):
    value = row["value"]
    if value is None:
      continue
    panel = "accuracy" if row["metric"] == "accuracy" else "Dice"
    panels[panel]["rows"].append(dict(
        label=f"{row['task']}: {row['train_group']} -> {row['other']}",
        difference=100 * value["difference"], ci=[100 * c for c in value["ci"]],
        mdd=100 * value["mdd"] if _finite(value.get("mdd")) else float("nan")))
  return panels
