"""The sweep's report: the answer in words and numbers, a figure a metric, every point.

Reads only the sweep's results.json (sweep/run.py). Harm is said from the minority's
side: "costs X points" is the majority's metric minus the minority's, with the
interval of evaluate/harm.py's one procedure (paired over the shared test heads).
A figure puts the metric against the first numeric axis (the signature strength by
default), a line per value of the other axes (the mix), the interval as a band, and
each point's MDD as a dotted line below zero: a cost above it is one these test heads
would find 80 % of the time.
"""
import html
import math
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from scanbias_jax import files  # noqa: E402
from scanbias_jax.report import figures, tables  # noqa: E402
from scanbias_jax.report import render as study_report  # noqa: E402

STRENGTH = "synth.signature_strength"
SHARE = "sweep.majority_share"
REAL_STRENGTH = 1.0   # the built-in profiles as measured on real scanners
UNITS = dict(accuracy="points", dice="Dice points")
DIGITS = dict(accuracy=1, dice=2)   # Dice gaps between vendors are hundredths of a point


def _finite(*values) -> bool:
  return all(v is not None and math.isfinite(v) for v in values)


def _x_axis(results: dict) -> str:
  """The axis figures run along: the strength if swept, else the first numeric axis."""
  numeric = [a for a, values in results["axes"].items()
             if all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in values)]
  if STRENGTH in numeric:
    return STRENGTH
  return numeric[0] if numeric else next(iter(results["axes"]))


def _line_label(point: dict, x_axis: str) -> str:
  others = {k: v for k, v in point["axes"].items() if k != x_axis}
  if set(others) == {SHARE}:
    share = others[SHARE]
    return f"{share * 100:.0f}/{(1 - share) * 100:.0f} {point['majority']}/{point['minority']}"
  return ", ".join(f"{k.rsplit('.', 1)[-1]}={v}" for k, v in others.items()) or "all"


def cost(point: dict, task: str) -> dict | None:
  """The minority's loss on `task` (x100: points): value, ci, p, mdd; None if undefined."""
  gap = point["tasks"].get(task, {}).get("minority_minus_majority") or {}
  if not _finite(gap.get("difference")):
    return None
  low, high = gap["ci"]
  return dict(value=-100 * gap["difference"], ci=[-100 * high, -100 * low],
              p=gap["p_value"], mdd=100 * gap["mdd"] if _finite(gap.get("mdd")) else float("nan"))


def _interval(value: float, ci, digits: int = 1) -> str:
  if not _finite(value):
    return "n/a"
  if ci is None or not _finite(*ci):
    return f"{value:.{digits}f}"
  return f"{value:.{digits}f} [{ci[0]:.{digits}f}, {ci[1]:.{digits}f}]"


def _task_name(task: str) -> str:
  if task.startswith("spheres/"):
    return f"{task.split('/')[1].capitalize()} spheres"
  return task.replace("_", " ").capitalize()


def answer(results: dict) -> list[str]:
  """The opening lines: the cost at real-scanner strength and the most imbalanced mix
  short of single-vendor, and the lowest strength where the cost exceeds its MDD."""
  points = results["points"]
  harm_tasks = [t for t in results["tasks"] if t != "name_manufacturer"]
  lines = []
  strengths = sorted({p["axes"].get(STRENGTH) for p in points} - {None})
  real = min(strengths, key=lambda s: abs(s - REAL_STRENGTH)) if strengths else None
  shares = sorted({p["axes"].get(SHARE) for p in points} - {None})
  imbalanced = [s for s in shares if s < 1.0]
  mixes = [s for s in (max(imbalanced) if imbalanced else None,
                       1.0 if 1.0 in shares else None) if s is not None]
  for task in harm_tasks:
    for share in mixes:
      found = [p for p in points if p["axes"].get(STRENGTH) == real
               and p["axes"].get(SHARE) == share]
      if not found:
        continue
      p = found[0]
      c = cost(p, task)
      mix_words = (f"a {share * 100:.0f}/{(1 - share) * 100:.0f} {p['majority']}/"
                   f"{p['minority']} mix" if share < 1 else f"training on {p['majority']} alone")
      if c is None:
        lines.append(f"{_task_name(task)}: at strength {real:g}, {mix_words}: no difference "
                     "could be computed.")
        continue
      verdict = ("the interval holds zero: no harm shown" if c["ci"][0] <= 0 <= c["ci"][1]
                 else "harm" if c["value"] > 0 else "the minority does better")
      digits = DIGITS.get(p["tasks"][task]["metric"], 1)
      lines.append(f"{_task_name(task)}: at real-scanner strength ({real:g}) {mix_words} costs "
                   f"{p['minority']} {_interval(c['value'], c['ci'], digits)} "
                   f"{UNITS.get(p['tasks'][task]['metric'], 'points')} ({verdict}; "
                   f"p = {c['p']:.3g}, MDD {c['mdd']:.{digits}f}).")
    exceeded = sorted({p["axes"].get(STRENGTH) for p in points
                       if (c := cost(p, task)) is not None and _finite(c["mdd"])
                       and c["value"] > c["mdd"] and c["ci"][0] > 0} - {None})
    lines.append(f"{_task_name(task)}: the minority's loss first exceeds its MDD at strength "
                 f"{exceeded[0]:g}." if exceeded else
                 f"{_task_name(task)}: at no strength swept does the minority's loss exceed "
                 "its MDD with an interval above zero.")
  lines += nameability_lines(results)
  return lines


def nameability_lines(results: dict) -> list[str]:
  """Name the Manufacturer per strength (it depends on the data, not the mix)."""
  seen, parts = set(), []
  for p in results["points"]:
    strength = p["axes"].get(STRENGTH)
    if strength in seen or not p.get("nameability"):
      continue
    seen.add(strength)
    cnn = p["nameability"].get("cnn", {})
    probe = p["nameability"].get("probe", {})
    if "accuracy" not in cnn:
      continue
    parts.append(f"strength {strength:g}: CNN {_interval(100 * cnn['accuracy'], _pct(cnn['accuracy_ci']))}"
                 f" %, AUROC {_interval(cnn['auroc'], cnn['auroc_ci'], 3)}, permutation "
                 f"p {cnn['permutation_p']:.3g}; probe AUROC "
                 f"{_interval(probe.get('auroc', float('nan')), probe.get('auroc_ci'), 3)}")
  return ["Name the Manufacturer (chance 50 %): " + "; ".join(parts) + "."] if parts else []


def _pct(ci):
  return None if ci is None else [100 * v if v is not None else float("nan") for v in ci]


def _series(results: dict, x_axis: str, value_of) -> dict:
  """{line label: [(x, value, lo, hi, mdd)]} sorted by x."""
  lines = {}
  for p in results["points"]:
    got = value_of(p)
    if got is not None:
      lines.setdefault(_line_label(p, x_axis), []).append((p["axes"][x_axis], *got))
  return {k: sorted(v) for k, v in lines.items()}


def figure(lines: dict, path: Path, title: str, ylabel: str, xlabel: str,
           reference: float | None = None, mdd: bool = False) -> Path:
  fig, ax = plt.subplots(figsize=(6.4, 4.0))
  for index, (name, rows) in enumerate(lines.items()):
    x, y, lo, hi, md = (np.array(c, float) for c in zip(*rows))
    color = plt.cm.viridis(index / max(len(lines) - 1, 1))
    ax.plot(x, y, "o-", color=color, label=name)
    ax.fill_between(x, lo, hi, color=color, alpha=0.15, linewidth=0)
    if mdd and np.isfinite(md).any():
      ax.plot(x, md, ":", color=color, linewidth=1)
  if reference is not None:
    ax.axhline(reference, color="0.4", linewidth=0.8)
  ax.set_xlabel(xlabel)
  ax.set_ylabel(ylabel)
  ax.set_title(title, fontsize=10)
  if lines:
    ax.legend(fontsize=7)
  fig.tight_layout()
  return figures.save(fig, path)


def all_figures(results: dict, out: Path) -> dict:
  """{caption: path} of a figure a metric."""
  x_axis = _x_axis(results)
  xlabel = x_axis.rsplit(".", 1)[-1].replace("_", " ")
  made = {}
  for task in results["tasks"]:
    if task == "name_manufacturer":
      continue
    unit = UNITS.get(results["points"][0]["tasks"][task]["metric"], "points")

    def value_of(p, task=task):
      c = cost(p, task)
      return None if c is None else (c["value"], *c["ci"], c["mdd"])
    caption = (f"{_task_name(task)}: the minority vendor's loss ({unit}, majority minus "
               "minority) against " + xlabel + "; band: 95 % interval; dotted: the MDD "
               "(80 % power); a loss above its dotted line and with its band above zero is "
               "harm these test heads detect")
    made[caption] = figure(_series(results, x_axis, value_of),
                           out / f"sweep_{task.replace('/', '_')}.png",
                           f"{_task_name(task)}: cost to the minority vendor", unit, xlabel,
                           reference=0.0, mdd=True)
  for name, key in (("CNN", "cnn"), ("probe", "probe")):
    def value_of(p, key=key):
      got = p.get("nameability", {}).get(key, {})
      if not _finite(got.get("auroc")) or not got.get("auroc_ci") or not _finite(*got["auroc_ci"]):
        return None
      return (got["auroc"], *got["auroc_ci"], float("nan"))
    lines = _series(results, x_axis, value_of)
    if not lines:
      continue
    first = next(iter(lines.values()))  # nameability does not depend on the mix: one line
    caption = (f"Name the Manufacturer, {name}: AUROC against {xlabel} (the same at every "
               "mix: trained on every training study); band: 95 % interval; line: chance")
    made[caption] = figure({name: first}, out / f"sweep_names_{key}.png",
                           f"Name the Manufacturer ({name})", "AUROC", xlabel, reference=0.5)
  return made


def points_table(results: dict) -> tables.Table:
  harm_tasks = [t for t in results["tasks"] if t != "name_manufacturer"]
  header = [a.rsplit(".", 1)[-1] for a in results["axes"]] + ["NtM CNN acc %", "probe AUROC"]
  for task in harm_tasks:
    header += [f"{_task_name(task)}: minority / majority", "cost [95% CI]", "p", "MDD"]
  rows = []
  for p in results["points"]:
    row = [f"{v:g}" if isinstance(v, float) else str(v) for v in p["axes"].values()]
    cnn = p.get("nameability", {}).get("cnn", {})
    probe = p.get("nameability", {}).get("probe", {})
    row.append(_interval(100 * cnn["accuracy"], _pct(cnn["accuracy_ci"]))
               if _finite(cnn.get("accuracy")) else "n/a")
    row.append(_interval(probe["auroc"], probe.get("auroc_ci"), 3)
               if _finite(probe.get("auroc")) else "n/a")
    for task in harm_tasks:
      line = p["tasks"].get(task, {})
      values = [line.get("by_vendor", {}).get(v, {}).get("value") for v in (p["minority"],
                                                                            p["majority"])]
      row.append(" / ".join(f"{100 * v:.{DIGITS.get(line.get('metric'), 1)}f}"
                            if _finite(v) else "n/a" for v in values))
      c = cost(p, task)
      digits = DIGITS.get(line.get("metric"), 1)
      row += (["n/a"] * 3 if c is None else
              [_interval(c["value"], c["ci"], digits), f"{c['p']:.3g}",
               f"{c['mdd']:.{digits}f}"])
    rows.append(row)
  return tables.Table("Every point", header, rows, notes=[
      "cost: the majority's metric minus the minority's, x100, on the shared test heads "
      "(paired over heads: interval, p and MDD from one procedure, evaluate/harm.py)",
      "Name the Manufacturer is trained once per data (strength) on every training study"])


def render(results: dict, run_dir) -> dict:
  """Writes report.md and report.html (figures embedded) into `run_dir`."""
  run_dir = Path(run_dir)
  out = run_dir / "figures"
  out.mkdir(parents=True, exist_ok=True)
  title = results.get("title") or "Vendor dose-response sweep"
  lines = answer(results)
  made = all_figures(results, out)
  table = points_table(results)
  test = results["test_set"]
  design = (f"Test set shared by every point: {test['heads']} heads, studies per vendor "
            f"{test['studies']}; the same heads at every point: {test['same_heads_every_point']}.")
  md = [f"# {title}", "", "## The answer", ""] + [f"- {line}" for line in lines]
  md += ["", design, "", "## Figures", ""]
  for caption, path in made.items():
    md += [f"![{caption}](figures/{path.name})", "", f"*{caption}*", ""]
  md += ["## Points", "", tables.to_markdown(table)]
  files.write_text(run_dir / "report.md", "\n".join(md))
  body = [f"<h1>{html.escape(title)}</h1>", "<h2>The answer</h2><ul class='answer'>"
          + "".join(f"<li>{html.escape(line)}</li>" for line in lines) + "</ul>",
          f"<p>{html.escape(design)}</p>", "<h2>Figures</h2>"]
  body += [study_report.embedded(path, caption) for caption, path in made.items()]
  body += ["<h2>Points</h2>", tables.to_html(table)]
  page = (f"<!DOCTYPE html><html><head><meta charset='utf-8'><title>{html.escape(title)}"
          f"</title><style>{study_report.STYLE}</style></head><body>{''.join(body)}</body></html>")
  files.write_text(run_dir / "report.html", page)
  return {"report.md": run_dir / "report.md", "report.html": run_dir / "report.html",
          **{f"figures/{p.name}": p for p in made.values()}}
