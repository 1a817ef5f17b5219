"""The paper's Tables 2-6 laid out as in the paper, ours beside the paper's values.

Each metric gets sub-rows: ours over the selected members (mean +- std), ours
over all members (so the selection is visible), ours for the member-averaged
output with its 95% interval (Wilson score for accuracy, sensitivity and
specificity, a study bootstrap for AUROC and Dice), and the paper. Our numbers come only
from the results structure (see `evaluate/results.py`); a cell that cannot be
computed says "n/a (why)". Paper values come from `paper_values` and are shown
only where our column is the same group (vendor) as the paper's.
"""
import dataclasses
import html
import math

from scanbias_jax.report import paper_values

MIXED = "mixed"
DIFFICULTIES = ("easy", "medium", "hard")
# The paper's row order in Tables 3-5.
SPHERE_METRICS = ("accuracy", "specificity", "sensitivity", "auroc")
LABELS = dict(accuracy="Accuracy", specificity="Specificity", sensitivity="Sensitivity",
              auroc="AUROC", dice="Dice")


INTERVALS_NOTE = ("Averaged output's 95% intervals: Wilson score for accuracy, sensitivity "
                  "and specificity (a proportion of studies; it does not collapse at 0 or "
                  "100%), stratified study bootstrap for AUROC.")


@dataclasses.dataclass
class Table:
  title: str
  header: list[str]
  rows: list[list[str]]
  notes: list[str] = dataclasses.field(default_factory=list)


def _value(x) -> float:
  return float("nan") if x is None else float(x)


def _fmt(x, scale: float, digits: int) -> str:
  return f"{_value(x) * scale:.{digits}f}"


def summary_cell(summary: dict | None, metric: str, scale: float, digits: int) -> str:
  """Mean +- std over members, or n/a with the reason."""
  if summary is None:
    return "n/a (not run)"
  entry = summary[metric]
  if not math.isfinite(_value(entry.get("mean"))):
    return f"n/a ({entry.get('reason', 'undefined')})"
  std = _value(entry.get("std"))
  spread = (f" ± {_fmt(std, scale, digits)}" if math.isfinite(std)
            else f" (std n/a: {entry.get('std_reason', 'undefined')})")
  return _fmt(entry["mean"], scale, digits) + spread


def averaged_cell(averaged: dict | None, metric: str, scale: float, digits: int) -> str:
  """Metric of the member-averaged output with its interval (see the module docstring)."""
  if averaged is None:
    return "n/a (not run)"
  point = _value(averaged["metrics"][metric])
  if not math.isfinite(point):
    return f"n/a ({averaged['metrics']['reasons'].get(metric, 'undefined')})"
  low, high = (_value(v) for v in averaged["ci"][metric])
  if not (math.isfinite(low) and math.isfinite(high)):
    why = averaged["ci"].get("reasons", {}).get(metric, "undefined")
    return f"{_fmt(point, scale, digits)} [CI n/a: {why}]"
  return (f"{_fmt(point, scale, digits)} "
          f"[{_fmt(low, scale, digits)}, {_fmt(high, scale, digits)}]")


def paper_cell(value, digits: int, reason: str | None = None) -> str:
  if reason:
    return f"n/a ({reason})"
  if value is None:
    return "not reported"
  mean, std = value
  return f"{mean:.{digits}f}" + ("" if std is None else f" ± {std:.{digits}f}")


def _members_label(condition: dict, which: str) -> str:
  selection = condition["selection"]
  if which == "selected":
    return f"ours, best {len(selection['selected'])} of {selection['n_members']}"
  return f"ours, all {selection['n_members']}"


def _split(condition: dict | None, column: str) -> dict | None:
  if condition is None:
    return None
  return condition["validation"] if column == "validation" else condition["test"].get(column)


def _paper_reason(groups: list[str], column: str) -> str | None:
  """Why the paper has no comparable value for our column, or None if it has."""
  if column in ("validation", MIXED):
    same = sorted(groups) == sorted(paper_values.PAPER_GROUPS)
    return None if same else "paper groups are GE/Siemens"
  return None if column in paper_values.PAPER_GROUPS else f"{column} not in paper"


def _metric_rows(condition, columns, metric, scale, digits, paper, paper_digits,
                 paper_reasons) -> list[list[str]]:
  label = LABELS[metric]
  rows = []
  for which in ("selected", "all"):
    who = _members_label(condition, which) if condition else "ours"
    rows.append([f"{label}: {who}"] + [
        summary_cell(_split(condition, c)["summary"][which] if _split(condition, c) else None,
                     metric, scale, digits) for c in columns])
  rows.append([f"{label}: ours, averaged output [95% CI]"] + [
      averaged_cell(_split(condition, c)["averaged"]["selected"] if _split(condition, c)
                    else None, metric, scale, digits) for c in columns])
  rows.append([f"{label}: paper"] + [
      paper_cell(None if paper is None else paper.get(c), paper_digits, paper_reasons[c])
      for c in columns])
  return rows


def _columns(results: dict, train_group: str) -> tuple[list[str], list[str]]:
  groups = list(results["groups"])
  columns = ["validation", MIXED] + groups
  names = [f"Validation ({train_group})", "Test mixed"] + [f"Test {g}" for g in groups]
  return columns, names


def name_manufacturer_table(results: dict) -> Table:
  """Table 2: accuracy and AUROC on the mixed test set, accuracy per group."""
  groups = list(results["groups"])
  conditions = results.get("name_manufacturer", {})
  header = ["", "Test accuracy (%)", "AUROC"] + [f"{g} (%)" for g in groups]
  rows = []
  for name, condition in conditions.items():
    test = condition["test"]
    for which in ("selected", "all"):
      cells = [summary_cell(test[MIXED]["summary"][which] if MIXED in test else None,
                            "accuracy", 100, 2),
               summary_cell(test[MIXED]["summary"][which] if MIXED in test else None,
                            "auroc", 1, 2)]
      cells += [summary_cell(test[g]["summary"][which] if g in test else None,
                             "accuracy", 100, 2) for g in groups]
      rows.append([f"trained on {name}: {_members_label(condition, which)}"] + cells)
    averaged = {c: test[c]["averaged"]["selected"] for c in test}.get
    rows.append([f"trained on {name}: ours, averaged output [95% CI]",
                 averaged_cell(averaged(MIXED), "accuracy", 100, 2),
                 averaged_cell(averaged(MIXED), "auroc", 1, 2)]
                + [averaged_cell(averaged(g), "accuracy", 100, 2) for g in groups])
  if not conditions:
    rows.append(["ours"] + ["n/a (not run)"] * (len(header) - 1))
  same = sorted(groups) == sorted(paper_values.PAPER_GROUPS)
  for group_name, paper in paper_values.TABLE2.items():
    mixed_reason = None if same else "paper groups are GE/Siemens"
    rows.append([f"paper, {group_name} (5 models)",
                 paper_cell(paper["accuracy"], 2, mixed_reason),
                 paper_cell(paper["auroc"], 2, mixed_reason)]
                + [paper_cell(paper.get(g), 2, _paper_reason(groups, g)) for g in groups])
  notes = ["Per-group columns are accuracy on that group's test studies "
           "(AUROC needs both classes, so it is given for the mixed test set only).",
           "Paper: two ensembles of five models each; no selection rule is stated.",
           INTERVALS_NOTE]
  for name, condition in conditions.items():
    notes.append(f"Trained on {name}: label 1 = {condition.get('positive_class', '?')}; "
                 f"selection: {condition['selection']['reason']}.")
  return Table("Table 2. Name the Manufacturer", header, rows, notes)


def spheres_tables(results: dict) -> list[Table]:
  """Tables 3-5: one per training condition (mixed first, then each group)."""
  spheres = results.get("spheres", {})
  trained = [MIXED] + list(results["groups"])
  tables = []
  for train_group in trained:
    columns, names = _columns(results, train_group)
    paper_name, paper = paper_values.SPHERES.get(train_group, (None, None))
    if train_group != MIXED and train_group not in paper_values.PAPER_GROUPS:
      paper = None
    reasons = {c: _paper_reason(results["groups"], c) for c in columns}
    if paper is None:
      reasons = {c: f"paper did not train on {train_group}" for c in columns}
    rows = []
    for difficulty in DIFFICULTIES:
      condition = spheres.get(difficulty, {}).get(train_group)
      rows.append([f"**{difficulty.capitalize()} task**"] + [""] * len(columns))
      for metric in SPHERE_METRICS:
        rows += _metric_rows(condition, columns, metric, 100, 1,
                             None if paper is None else paper[difficulty][metric], 1, reasons)
    title = ("Sphere classification, trained on mixed groups" if train_group == MIXED
             else f"Sphere classification, trained on {train_group} only")
    title = f"{paper_name}. {title}" if paper_name and paper is not None else title
    notes = ["Percent (AUROC x 100). Mean ± sample std over members; averaged output = "
             "mean probability of the selected members, threshold "
             f"{_threshold(spheres, train_group)}.", INTERVALS_NOTE]
    for difficulty in DIFFICULTIES:
      condition = spheres.get(difficulty, {}).get(train_group)
      if condition:
        notes.append(f"{difficulty}: {condition['selection']['reason']}.")
    notes += _training_set_note(spheres, train_group)
    tables.append(Table(title, ["Metric"] + names, rows, notes))
  return tables


def _training_set_note(spheres: dict, train_group: str) -> list[str]:
  """A note when the models trained on the paired set rather than the paper's."""
  sets = [c.get("training_set") for d in DIFFICULTIES
          if (c := spheres.get(d, {}).get(train_group))]
  paired = [s for s in sets if s and s["kind"] == "paired"]
  test_sets = [c.get("test_set", {}) for d in DIFFICULTIES
               if (c := spheres.get(d, {}).get(train_group))]
  tested = [t.get("kind", "paper") for t in test_sets]
  notes = []
  if paired:
    copies, samples = paired[0]["copies"], paired[0]["samples"]
    notes.append(f"Trained on the paired set (experiments.spheres_train_copies = {copies}): "
                 f"every training study {copies}x without and {copies}x with a sphere, "
                 f"{samples} samples; the paper trained on each study once, with its own label.")
  if "paired" in tested:
    copies = max(t.get("copies", 1) for t in test_sets)
    times = "once" if copies == 1 else f"{copies} times (sphere positions)"
    notes.append(f"Validation and test sets paired (experiments.spheres_test): every study "
                 f"scored {times} with and as often without a sphere, so a column holds "
                 f"{2 * copies} samples a study; intervals resample whole studies (traveling "
                 f"heads: whole heads) with all their samples (Wilson at the Korn-Graubard "
                 f"effective n, cluster bootstrap for AUROC). The paper scored each study once.")
  elif tested:
    notes.append("Validation and test sets are the paper's: each study once, its own label.")
  if any(t.get("input") == "brain" for t in test_sets):
    notes.append("Input: the brain alone (experiments.spheres_input = \"brain\"): air "
                 "outside each study's skull-strip mask, the same with and without its "
                 "sphere; the paper gave the whole head.")
  return notes


def _threshold(spheres: dict, train_group: str) -> str:
  for by_condition in spheres.values():
    if train_group in by_condition:
      return str(by_condition[train_group]["threshold"])
  return "n/a (not run)"


def segmentation_table(results: dict) -> Table:
  """Table 6: Dice per training condition and test set."""
  segmentation = results.get("segmentation", {})
  groups = list(results["groups"])
  columns = ["validation"] + groups + [MIXED]
  header = ["Metric", "Validation (own)"] + [f"Test {g}" for g in groups] + ["Test mixed"]
  rows = []
  for train_group in [MIXED] + groups:
    condition = segmentation.get(train_group)
    paper = paper_values.TABLE6.get(train_group)
    reasons = {c: _paper_reason(groups, c) for c in columns}
    if train_group != MIXED and train_group not in paper_values.PAPER_GROUPS:
      paper, reasons = None, {c: f"paper did not train on {train_group}" for c in columns}
    rows.append([f"**Models trained on {train_group}**"] + [""] * len(columns))
    rows += _metric_rows(condition, columns, "dice", 1, 4, paper, 4, reasons)
  notes = ["Hard Dice of masks thresholded at 0.5, mean over volumes; mean ± sample std "
           "over members. Paper: mean only; '-' (not reported) for the full test set of "
           "single-vendor models."]
  for train_group, condition in segmentation.items():
    notes.append(f"{train_group}: {condition['selection']['reason']}.")
  return Table("Table 6. Segmentation (Dice)", header, rows, notes)


def transfer_table(results: dict) -> Table:
  """Cross-group drop: metric on the training group's test set minus another's."""
  header = ["Task", "Trained on", "Tested on", "Accuracy drop (points)",
            "AUROC drop (points)", "Dice drop"]
  rows = []
  blocks = [(f"spheres {d}", results.get("spheres", {}).get(d, {})) for d in DIFFICULTIES]
  blocks.append(("segmentation", results.get("segmentation", {})))
  for task, conditions in blocks:
    for train_group, condition in conditions.items():
      for other, drop in condition.get("transfer", {}).items():
        cells = [_drop_cell(drop, m, 100, 1) for m in ("accuracy", "auroc")]
        cells.append(_drop_cell(drop, "dice", 1, 4))
        rows.append([task, train_group, other] + cells)
  if not rows:
    rows.append(["n/a (no single-group conditions run)"] + [""] * 5)
  notes = ["Member-averaged output of the selected members; positive = worse on the other "
           "group. Interval, p and MDD of each cell from one t procedure over heads "
           "(paired) or studies (Welch) on per-unit values (evaluate/harm.py): the "
           "interval excludes zero exactly when p < 0.05; MDD = the fall that test finds "
           "with 80% power."]
  return Table("Cross-group drop", header, rows, notes)


def _drop_cell(drop: dict, metric: str, scale: float, digits: int) -> str:
  if metric not in drop:
    return "—"
  entry = drop[metric]
  if not math.isfinite(_value(entry["difference"])):
    return f"n/a ({drop.get('reasons', {}).get(metric, 'undefined')})"
  low, high = entry["ci"]
  cell = (f"{_fmt(entry['difference'], scale, digits)} "
          f"[{_fmt(low, scale, digits)}, {_fmt(high, scale, digits)}]")
  if math.isfinite(_value(entry.get("p_value"))):
    cell += f", p = {_value(entry['p_value']):.2g}"
  if math.isfinite(_value(entry.get("mdd"))):
    cell += f", MDD {_fmt(entry['mdd'], scale, digits)}"
  return cell


def all_tables(results: dict) -> list[Table]:
  return ([name_manufacturer_table(results)] + spheres_tables(results)
          + [segmentation_table(results), transfer_table(results)])


def to_markdown(table: Table) -> str:
  def line(cells):
    return "| " + " | ".join(str(c).replace("|", "\\|") for c in cells) + " |"
  lines = [f"### {table.title}", "", line(table.header), "|" + "---|" * len(table.header)]
  lines += [line(row) for row in table.rows]
  lines += [""] + [f"- {note}" for note in table.notes]
  return "\n".join(lines) + "\n"


def to_html(table: Table) -> str:
  def cell(content, tag):
    return f"<{tag}>{html.escape(str(content)).replace('**', '')}</{tag}>"
  head = "".join(cell(h, "th") for h in table.header)
  body = "".join("<tr>" + "".join(cell(c, "td") for c in row) + "</tr>" for row in table.rows)
  notes = "".join(f"<li>{html.escape(n)}</li>" for n in table.notes)
  return (f"<h3>{html.escape(table.title)}</h3><table><thead><tr>{head}</tr></thead>"
          f"<tbody>{body}</tbody></table><ul class='notes'>{notes}</ul>")
