"""The report's plain-language summary, computed from the results' numbers only.

Three questions (the paper's): is the group recognisable (Name the Manufacturer
accuracy of the member-averaged output vs chance, with its 95% interval); does
single-group training hurt the other group (cross-group drop with its interval);
does the harm grow with task difficulty (the drops easy -> medium -> hard).

Every claim is conditioned on the 95% bootstrap intervals: a drop is called a drop
(harm) only when its interval lies above zero, and a trend only when the drops are
monotone, the easy and hard intervals do not overlap, and the larger drop is itself
a harm. Otherwise the line says there is no clear difference or trend, and why.
"""
import math

from scanbias_jax.report import harm_table

MIXED = "mixed"
DIFFICULTIES = ("easy", "medium", "hard")


def _finite(*values) -> bool:
  return all(v is not None and math.isfinite(float(v)) for v in values)


def _pct(x: float) -> str:
  return f"{100 * x:.1f}%"


def _with_interval(value: float, interval, percent: bool = True) -> str:
  """"92.5% [80.1, 97.4]" (a proportion) or "0.997 [0.985, 1.000]" (an AUROC)."""
  if percent:
    return f"{_pct(value)} [{100 * interval[0]:.1f}, {100 * interval[1]:.1f}]"
  return f"{value:.3f} [{interval[0]:.3f}, {interval[1]:.3f}]"


def recognisable(results: dict) -> list[str]:
  """Name the Manufacturer: test accuracy vs chance (the majority-class share)."""
  lines = []
  for name, condition in results.get("name_manufacturer", {}).items():
    test = condition["test"].get(MIXED)
    if test is None:
      lines.append(f"Name the Manufacturer (trained on {name}): n/a (no mixed test set).")
      continue
    averaged = test["averaged"]["selected"]
    accuracy = averaged["metrics"]["accuracy"]
    low, high = averaged["ci"]["accuracy"]
    chance = max(test["n_positive"], test["n_negative"]) / max(test["n"], 1)
    if not _finite(accuracy, low, high):
      why = averaged["metrics"]["reasons"].get("accuracy") or averaged["ci"]["reasons"].get(
          "accuracy", "undefined")
      lines.append(f"Name the Manufacturer (trained on {name}): n/a ({why}).")
      continue
    if low > chance:
      verdict = "the group is recognisable: accuracy is above chance"
    elif high < chance:
      verdict = "accuracy is below chance"
    else:
      verdict = "the group is not distinguishable from chance on this test set"
    lines.append(
        f"Name the Manufacturer (trained on {name}, {test['n']} test studies): "
        f"{verdict} ({_pct(accuracy)}, 95% CI {_pct(low)}-{_pct(high)}; "
        f"chance {_pct(chance)}).")
    lines += control_lines(condition.get("controls"), "the CNN's member-averaged output")
  probe = results.get("controls", {}).get("texture_probe")
  if probe is not None:
    lines += control_lines(probe, "the noise-texture probe (logistic regression on "
                           "brain NPS features; the signal's ceiling)")
  return lines or ["Name the Manufacturer: n/a (not run)."]


def control_lines(control, who: str) -> list[str]:
  """One line: accuracy (Wilson interval), AUROC (bootstrap) and permutation p."""
  if not control:
    return []
  if "reason" in control:
    return [f"Control, {who}: n/a ({control['reason']})."]
  low, high = control["accuracy_ci"]
  a_low, a_high = control["auroc_ci"]
  if not _finite(control["auroc"], a_low, a_high):
    return [f"Control, {who}: AUROC undefined on {control['n']} test studies."]
  shuffled = (f"within each of {control['n_units']} heads"
              if control.get("permutation") == "within units" else "")
  return [f"Control, {who}: accuracy {_pct(control['accuracy'])} "
          f"(95% {_ci_name(control)} {_pct(low)}-{_pct(high)}), AUROC {control['auroc']:.3f} "
          f"({_auroc_ci(control)}), permutation p = "
          f"{control['permutation_p']:.4f} ({control['n_permutations']} shuffles of the "
          f"{control['n']} test labels{' ' + shuffled if shuffled else ''})."]


def _auroc_ci(control: dict) -> str:
  """"95% bootstrap low-high" of the AUROC, or the method's own name where it is not the
  bootstrap (the score interval that replaces a bootstrap collapsed at AUROC 0 or 1)."""
  low, high = control["auroc_ci"]
  method = control.get("auroc_ci_method", "bootstrap")
  name = "bootstrap" if "bootstrap" in method else method
  return f"95% {name} {low:.3f}-{high:.3f}"


def _ci_name(control: dict) -> str:
  """"Wilson", or the clustered method's name where units repeat (traveling heads)."""
  method = control.get("accuracy_ci_method", "Wilson score")
  return "Wilson" if method == "Wilson score" else method


def trend(drops: list[dict]) -> tuple[str, list[str]]:
  """(verdict, reasons) for the drops {difference, ci} of easy, medium, hard.

  A trend is claimed only if the point drops are monotone, the easy and hard 95%
  intervals do not overlap (a conservative test of their difference), and the
  larger end's interval lies above zero, so that the claim agrees with that task's
  cross-group table. Otherwise the verdict is "no clear trend" and the reasons say
  which condition failed; a verdict and its reasons never contradict each other.
  """
  values = [d["difference"] for d in drops]
  (easy_low, easy_high), (hard_low, hard_high) = drops[0]["ci"], drops[-1]["ci"]
  rising = values[0] <= values[1] <= values[2] and values[0] < values[2]
  falling = values[0] >= values[1] >= values[2] and values[0] > values[2]
  reasons = []
  if not (rising or falling):
    reasons.append("the drops are not monotone")
  if easy_low <= hard_high and hard_low <= easy_high:
    reasons.append("the easy and hard intervals overlap")
  if not reasons:
    if rising and hard_low > 0:
      return "the harm grows with difficulty", []
    if falling and easy_low > 0:
      return "the harm shrinks with difficulty", []
    reasons.append(f"the {'hard' if rising else 'easy'}-task interval shows no harm")
  return "no clear trend with difficulty", reasons


def difficulty_trend(results: dict, metric: str = "accuracy") -> list[str]:
  """Whether the cross-group drop grows from easy to medium to hard (see `trend`)."""
  lines = []
  spheres = results.get("spheres", {})
  groups = results["groups"]
  for train_group in groups:
    for other in groups:
      if other == train_group:
        continue
      drops = [harm_table.entry(spheres.get(d, {}).get(train_group, {}), other, metric)[0]
               for d in DIFFICULTIES]
      head = f"Trained on {train_group}, tested on {other}"
      if any(d is None for d in drops):
        missing = [d for d, v in zip(DIFFICULTIES, drops) if v is None]
        lines.append(f"{head}: n/a (no drop for {', '.join(missing)}).")
        continue
      verdict, reasons = trend(drops)
      listed = ", ".join(
          f"{name} {100 * d['difference']:+.1f} [{100 * d['ci'][0]:+.1f}, {100 * d['ci'][1]:+.1f}]"
          for name, d in zip(DIFFICULTIES, drops))
      why = "".join(f"; {r}" for r in reasons)
      lines.append(f"{head}: {verdict}{why} ({metric} on {train_group} minus on {other}, "
                   f"points with 95% CI: {listed}).")
  return lines or ["Difficulty trend: n/a (no single-group conditions run)."]


def _reached(cnn: dict, probe: dict) -> str:
  """Whether the CNN's AUROC reaches the probe's: the probe's point estimate lies
  within or below the CNN's 95% interval (the probe's own interval collapses at 1.0)."""
  if not (cnn and probe and "auroc_ci" in cnn and "auroc" in probe
          and _finite(cnn["auroc_ci"][1], probe["auroc"])):
    return ""
  if not probe.get("permutation_p", 1.0) < 0.05:
    return "; the noise-texture probe finds no signal either"
  if cnn["auroc_ci"][1] >= probe["auroc"]:
    return (f"; the CNN reached the noise-texture probe (probe AUROC {probe['auroc']:.3f} "
            "is inside the CNN's interval)")
  return (f"; the CNN did not reach the noise-texture probe (probe AUROC "
          f"{probe['auroc']:.3f} is above the CNN's interval): the images carry more of the "
          "signal than the CNN found")


def headline(results: dict) -> list[str]:
  """The report's first lines: can the group be named (CNN beside the probe and its
  controls), and how many cross-group comparisons show a difference."""
  lines, methods = [], None
  probe = results.get("controls", {}).get("texture_probe") or {}
  for name, condition in results.get("name_manufacturer", {}).items():
    cnn = condition.get("controls") if isinstance(condition, dict) else None
    if not cnn or "accuracy_ci" not in cnn:
      continue
    named = cnn["accuracy_ci"][0] > 0.5 and cnn["permutation_p"] < 0.05
    verdict = "Yes" if named else "Not shown"
    methods = methods or cnn
    lines.append(
        f"Can the {results.get('group_attribute', 'group')} be named from the images? "
        f"{verdict}: the CNN (trained on {name}) is right on "
        f"{_with_interval(cnn['accuracy'], cnn['accuracy_ci'])} of {cnn['n']} test studies, "
        f"AUROC {_with_interval(cnn['auroc'], cnn['auroc_ci'], percent=False)}, "
        f"permutation p = {cnn['permutation_p']:.2g}" + _reached(cnn, probe) + ".")
  if probe and "accuracy_ci" in probe:
    methods = methods or probe
    lines.append(
        "Noise-texture probe (the signal's ceiling, no deep learning): "
        f"{_with_interval(probe['accuracy'], probe['accuracy_ci'])}, AUROC "
        f"{_with_interval(probe['auroc'], probe['auroc_ci'], percent=False)}, permutation p = "
        f"{probe['permutation_p']:.2g}.")
  elif probe:
    lines.append(f"Noise-texture probe: n/a ({probe.get('reason', 'not run')}).")
  if harm_table.comparisons(results):
    lines.append(harm_table.answer(results) + " The forest plot below shows each "
                 "comparison; the Summary's table lists them.")
  provenance = results.get("provenance", {})
  design = provenance.get("config", {}).get("synth", {}).get("design")
  if provenance.get("source") == "dicom":
    design = "dicom"
  if lines and design in DESIGNS:
    lines.append(DESIGNS[design])
  insertion = sphere_insertion(results)
  if lines and insertion:
    lines.append(insertion)
  strength = provenance.get("config", {}).get("synth", {}).get("signature_strength")
  if lines and provenance.get("source") == "synthetic" and strength is not None:
    lines.append("This run is the negative control: every vendor's scanner physics is "
                 "the same (signature strength 0), so the CNN and the probe should sit at "
                 "chance." if strength == 0 else
                 "Negative control: the same command with "
                 "--config.synth.signature_strength=0 gives every vendor the same scanner "
                 "physics; the CNN and the probe should then sit at chance.")
  if methods:
    lines.append(f"Intervals: 95%; accuracy {_ci_name(methods)}, AUROC "
                 f"{methods.get('auroc_ci_method', 'bootstrap')}.")
  return lines or ["Nothing to report yet: no experiment has results."]


INSERTIONS = dict(
    acquired="acquired through each study's scanner (its slice profile, MTF and "
             "calibration, its own noise kept over the sphere: what a real lesion looks "
             "like; lesions/spheres.insert_acquired)",
    painted="painted after reconstruction, the paper's method (voxels replaced by "
            "N(mean, std) HU: sharp, without the scanner's noise)")


def sphere_insertion(results: dict) -> str:
  """One sentence: how the spheres got into the studies, and what ran beside."""
  runs = {name: next(iter(conditions.values()), {}).get("test_set", {}).get("insertion")
          for name, conditions in results.get("spheres", {}).items()}
  main = [i for name, i in runs.items() if name in DIFFICULTIES and i]
  if not main:
    return ""
  text = f"Spheres: {INSERTIONS.get(main[0], main[0])}."
  beside = sorted((name.split("_")[0], i) for name, i in runs.items()
                  if name not in DIFFICULTIES and i)
  if beside:
    text += (" Measured beside, in the harm table's rows 'spheres <difficulty> "
             "<insertion>': " + "; ".join(f"{d} {INSERTIONS.get(i, i).split(' (')[0]}"
                                         for d, i in beside) + ".")
  return text


DESIGNS = dict(
    dicom="Design: an observational export (the vendors' patients differ; vendor may be "
          "confounded with anything that differs between their patients).",
    paper="Design: the paper's (a different patient in every study; vendors are compared on "
          "different heads).",
    traveling="Design: traveling heads (every anatomy acquired on every vendor, each "
              "acquisition its own study; splits keep a head in one split). Cross-vendor "
              "differences are paired over the same test heads.")


def summarise(results: dict) -> dict[str, list]:
  """Question -> its answer: lines, and a table where one answers it (tables.Table)."""
  return {
      "Is the group recognisable?": recognisable(results),
      "Does single-group training hurt the other group?": [harm_table.answer(results),
                                                           harm_table.table(results)],
      "Does the harm grow with task difficulty?": difficulty_trend(results),
  }
