"""The bias audit's report.md and self-contained report.html (experiments/audit.py).

It opens with the answer: the shortcut risks in plain words, then which attributes
the images name (a bar chart of AUROC with intervals), what could not be tested and
why, the confusion matrices and the association heat map. Only attribute names,
group values the manifest already holds (pseudonyms for sites) and numbers appear.
"""
import html
from pathlib import Path

import numpy as np

from scanbias_jax import files
from scanbias_jax.evaluate import audit
from scanbias_jax.report import figures, render, tables


def _interval(values) -> str:
  return f"[{values[0]:.2f}, {values[1]:.2f}]"


def _cell(result: dict, metric: str) -> str:
  """"0.95 [0.92, 0.97]": a metric with its interval."""
  return f"{result[metric]:.2f} {_interval(result['ci'][metric])}"


def verdict(result: dict, alpha: float = 0.05) -> str:
  if not result["testable"]:
    return f"not tested: {result['reason']}"
  if audit.nameable(result, alpha):
    return "nameable from the images"
  p, q = result["permutation_p"], result.get("permutation_q", result["permutation_p"])
  if p < alpha and result["auroc"] < 0.5:
    return "not nameable (AUROC below chance)"
  if p < alpha:
    return f"not nameable after adjusting for the attributes tested (q {q:.2g})"
  return "not nameable (interval contains chance)"


def _rows(by_attribute: dict, cells, columns: int) -> list[list[str]]:
  """A table row an attribute: its name and `cells(result)`, or, untested, dashes and
  why."""
  rows = []
  for attribute, r in by_attribute.items():
    label = audit.ATTRIBUTES.get(attribute, attribute)
    rows.append([label, *cells(r)] if r["testable"]
                else [label, *["-"] * (columns - 2), verdict(r)])
  return rows


def naming_table(named: dict) -> tables.Table:
  def cells(r):
    return [", ".join(f"{g} ({n})" for g, n in zip(r["groups"], r["n_per_group"])),
            _cell(r, "balanced_accuracy"), f"{r['chance_balanced_accuracy']:.2f}",
            _cell(r, "auroc"),
            f"{r['permutation_p']:.3g} (q {r.get('permutation_q', r['permutation_p']):.3g})",
            verdict(r)]
  header = ["Attribute", "Groups (studies)", "Balanced accuracy [95% CI]", "Chance",
            "Macro AUROC [95% CI]", "Permutation p (q)", "Verdict"]
  return tables.Table(
      "Name the X: the noise-texture probe, cross-fitted over patient-grouped folds",
      header, _rows(named, cells, len(header)),
      ["p (two-sided) and interval of each statistic from one permutation test: the labels "
       "shuffled over studies and the cross-fitting redone; the interval inverts that test, "
       "so it excludes chance exactly when p < 0.05 (p and q are the AUROC's). q: "
       "Benjamini-Hochberg over the attributes tested, which the verdict uses."])


def cnn_reading(result: dict) -> str:
  """How the CNN compares with the probe on the same test studies, in words."""
  cnn, beside = result["cnn"], result["probe"]
  high = cnn["ci"]["auroc"][1]
  if cnn["auroc"] >= beside["auroc"]:
    return "the CNN reached the probe"
  if high >= beside["auroc"]:
    return "the CNN is below the probe, within its interval"
  return "the CNN is below the probe: it did not find all the images carry"


def cnn_table(by_cnn: dict) -> tables.Table:
  def cells(r):
    split = r["split"]
    return [f"{split['train']} / {split['val']} / {split['test']}",
            _cell(r["cnn"], "balanced_accuracy"), _cell(r["cnn"], "auroc"),
            f"{r['cnn']['permutation_p']:.3g}", _cell(r["probe"], "auroc"), cnn_reading(r)]
  header = ["Attribute", "Studies train / val / test", "CNN balanced accuracy [95% CI]",
            "CNN macro AUROC [95% CI]", "CNN permutation p", "Probe AUROC, same test studies",
            "Reading"]
  return tables.Table(
      "Name the X: the ShallowCNN ensemble on held-out studies, the probe beside it",
      header, _rows(by_cnn, cells, len(header)),
      ["One split grouped by patient; CNN: crop probabilities averaged per study, then "
       "over the members; p: test labels shuffled over the fixed scores; the probe fitted "
       "on the same training and validation studies."])


def association_table(found: list[dict], alpha: float = 0.05) -> tables.Table:
  q = lambda a: a.get("q", a["p"])  # pylint: disable=unnecessary-lambda-assignment
  rows = [[a["a"], a["b"], a["measure"], f"{a['value']:.2f}", f"{a['p']:.3g}", f"{q(a):.3g}",
           a["n"]] for a in found if "value" in a and q(a) < alpha]
  return tables.Table(f"Associations with q < {alpha} (Cramer's V; eta for age; q: "
                      f"Benjamini-Hochberg over the {sum('p' in a for a in found)} pairs)",
                      ["Attribute", "With", "Measure", "Value", "p", "q", "Studies"], rows)


def _bar_chart(named: dict, by_cnn: dict, path: Path) -> Path:
  import matplotlib.pyplot as plt  # pylint: disable=g-import-not-at-top
  tested = [(a, r) for a, r in named.items() if r["testable"]]
  cnn_label = "CNN, held-out studies"
  fig, ax = plt.subplots(figsize=(7, 0.45 * max(len(tested), 1) + 1.2))
  for y, (attribute, r) in enumerate(tested[::-1]):
    low, high = r["ci"]["auroc"]
    color = "#c0392b" if verdict(r).startswith("nameable") else "#7f8c8d"
    ax.barh(y, r["auroc"] - 0.5, left=0.5, color=color, height=0.6)
    ax.plot([low, high], [y, y], color="black", linewidth=1.2)
    if by_cnn.get(attribute, {}).get("testable"):
      cnn = by_cnn[attribute]["cnn"]
      ax.errorbar(cnn["auroc"], y + 0.3, xerr=[[cnn["auroc"] - cnn["ci"]["auroc"][0]],
                                               [cnn["ci"]["auroc"][1] - cnn["auroc"]]],
                  fmt="D", color="#2c3e50", markersize=4, linewidth=1, label=cnn_label)
      cnn_label = None
  if cnn_label is None:
    ax.legend(loc="lower right", fontsize=7)
  ax.set_yticks(range(len(tested)))
  ax.set_yticklabels([audit.ATTRIBUTES.get(a, a) for a, _ in tested[::-1]], fontsize=8)
  ax.axvline(0.5, color="0.3", linewidth=0.8)
  ax.set_xlim(0.3, 1.0)
  ax.set_xlabel("macro one-vs-rest AUROC, 95% interval (0.5: chance); bars: the probe")
  fig.tight_layout()
  return figures.save(fig, path)


def _heat_map(found: list[dict], path: Path) -> Path:
  import matplotlib.pyplot as plt  # pylint: disable=g-import-not-at-top
  names = list(dict.fromkeys([a["a"] for a in found] + [a["b"] for a in found]))
  grid = np.full((len(names), len(names)), np.nan)
  for a in found:
    if "value" in a:
      grid[names.index(a["a"]), names.index(a["b"])] = a["value"]
  fig, ax = plt.subplots(figsize=(0.5 * len(names) + 2.5, 0.5 * len(names) + 1.5))
  image = ax.imshow(grid, vmin=0, vmax=1, cmap="viridis")
  ax.set_xticks(range(len(names)))
  ax.set_xticklabels(names, rotation=60, ha="right", fontsize=7)
  ax.set_yticks(range(len(names)))
  ax.set_yticklabels(names, fontsize=7)
  fig.colorbar(image, ax=ax, label="Cramer's V (eta for numeric columns)")
  fig.tight_layout()
  return figures.save(fig, path)


def _confusions(named: dict, by: str = "probe") -> list[tables.Table]:
  out = []
  for attribute, r in named.items():
    if r["testable"]:
      out.append(tables.Table(
          f"Confusion matrix, {by}: {audit.ATTRIBUTES.get(attribute, attribute)} (rows true, "
          "columns predicted)", ["", *r["groups"]],
          [[g, *map(str, row)] for g, row in zip(r["groups"], r["confusion"])]))
  return out


def headline(results: dict) -> list[str]:
  named = results["named"]
  nameable = [audit.ATTRIBUTES.get(a, a) for a, r in named.items()
              if verdict(r).startswith("nameable")]
  lines = [f"{results['n_studies']} studies audited ({results['source']})."]
  lines.append("Nameable from the images: " + (", ".join(nameable) or "none") + ".")
  for attribute, r in results.get("cnn", {}).items():
    if r["testable"]:
      cnn = r["cnn"]
      lines.append(
          f"The CNN names the {audit.ATTRIBUTES.get(attribute, attribute)} of "
          f"{r['split']['test']} held-out studies with AUROC {cnn['auroc']:.2f} "
          f"{_interval(cnn['ci']['auroc'])} (p {cnn['permutation_p']:.3g}; the probe on the "
          f"same studies {r['probe']['auroc']:.2f}): {cnn_reading(r)}.")
  lines += results["shortcut_risks"] or [
      "No attribute is both nameable from the images and associated with a label, age or "
      "sex at q < 0.05 (Benjamini-Hochberg)."]
  return lines


def render_audit(results: dict, out_dir) -> dict:
  out_dir = Path(out_dir)
  (out_dir / "figures").mkdir(parents=True, exist_ok=True)
  by_cnn = results.get("cnn", {})
  bars = _bar_chart(results["named"], by_cnn, out_dir / "figures" / "auroc.png")
  heat = _heat_map(results["associations"], out_dir / "figures" / "associations.png")
  all_tables = [naming_table(results["named"])]
  if by_cnn:
    all_tables += [cnn_table(by_cnn)]
  all_tables += [association_table(results["associations"]), *_confusions(results["named"]),
                 *_confusions({a: r["cnn"] for a, r in by_cnn.items() if r["testable"]},
                              "CNN on held-out studies")]
  bar_caption = ("Which attributes the images name: the probe's AUROC (bars) and the "
                 "CNN's (diamonds) with their 95% intervals")
  heat_caption = "Associations between attributes, demographics and labels"
  lines = headline(results)
  md = ["# Bias audit", "", "## The answer", ""] + [f"- {line}" for line in lines]
  md += ["", f"![{bar_caption}](figures/{bars.name})", "", f"*{bar_caption}*", "",
         "## Tables", ""] + [tables.to_markdown(t) for t in all_tables]
  md += [f"![{heat_caption}](figures/{heat.name})", "", f"*{heat_caption}*", ""]
  if results["skipped"]:
    md += ["## Studies without a measurable brain texture", ""]
    md += [f"- {s}" for s in results["skipped"]] + [""]
  files.write_text(out_dir / "report.md", "\n".join(md))
  body = ["<h1>Bias audit</h1><h2>The answer</h2><ul class='answer'>"
          + "".join(f"<li>{html.escape(line)}</li>" for line in lines) + "</ul>",
          render.embedded(bars, bar_caption),
          "<h2>Tables</h2>", *[tables.to_html(t) for t in all_tables],
          render.embedded(heat, heat_caption)]
  body += [f"<p>{html.escape(s)}</p>" for s in results["skipped"]]
  page = (f"<!DOCTYPE html><html><head><meta charset='utf-8'><title>Bias audit</title>"
          f"<style>{render.STYLE}</style></head><body>{''.join(body)}</body></html>")
  files.write_text(out_dir / "report.html", page)
  return {"report.md": out_dir / "report.md", "report.html": out_dir / "report.html",
          "figures/auroc.png": bars, "figures/associations.png": heat}
