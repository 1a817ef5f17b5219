"""Report rendering from a small, complete results structure fabricated here."""
import copy
import json
import math
import re

import numpy as np
import pytest

from scanbias_jax import keys
from scanbias_jax.evaluate import metrics, results as results_lib
from scanbias_jax.report import harm_table, paper_values, render, summary, tables

MEMBERS, K, RESAMPLES = 4, 3, 100
ENVIRONMENT = dict(python="3", packages={"jax": "test"}, git="n/a (test)", devices=["cpu"])


def _outputs(rng, labels, strength):
  """Per-member probabilities with a signal of `strength` (fabricated for tests)."""
  logits = strength * (2 * labels - 1) + rng.standard_normal((MEMBERS, labels.size))
  return 1 / (1 + np.exp(-logits))


def _classification(key, rng, groups, train_group, strength, group_labels=False):
  per_group = {}
  for index, group in enumerate(groups):
    labels = (np.full(12, index % 2) if group_labels else np.tile([0, 1], 6))
    shift = strength if group == train_group or train_group == "mixed" else strength / 2
    per_group[group] = (labels, _outputs(rng, labels, shift))
  mixed = (np.concatenate([v[0] for v in per_group.values()]),
           np.concatenate([v[1] for v in per_group.values()], axis=1))
  validation = mixed if train_group == "mixed" else per_group[train_group]
  return results_lib.classification_condition(
      key, train_group, validation, {"mixed": mixed, **per_group}, K,
      positive_class=groups[1] if group_labels else "sphere", n_resamples=RESAMPLES)


def _segmentation(key, rng, groups, train_group):
  def split(n):
    return dict(member_dice=0.9 + 0.08 * rng.random((MEMBERS, n)),
                averaged_dice={"selected": 0.92 + 0.05 * rng.random(n),
                               "all": 0.91 + 0.05 * rng.random(n)})
  tests = {g: split(5) for g in groups}
  tests["mixed"] = {"member_dice": np.concatenate([t["member_dice"] for t in tests.values()], 1),
                    "averaged_dice": {w: np.concatenate([t["averaged_dice"][w] for t in
                                                         tests.values()]) for w in
                                      ("selected", "all")}}
  validation = split(4)
  chosen = results_lib.select_by_dice(validation["member_dice"], K)
  return results_lib.segmentation_condition(key, train_group, chosen, validation, tests,
                                            n_resamples=RESAMPLES)


def fabricate(groups=("GE", "Siemens"), seed=0,
              difficulties=("easy", "medium", "hard"), segmentation=True):
  groups = list(groups)
  rng = np.random.default_rng(seed)
  key = keys.stream(keys.root(seed), "evaluate")
  conditions = ["mixed"] + groups
  out = dict(schema_version=1, title="Test study", group_attribute="vendor", groups=groups)
  out["name_manufacturer"] = {"mixed": _classification(
      keys.stream(key, "nm"), rng, groups, "mixed", 2.0, group_labels=True)}
  out["spheres"] = {d: {c: _classification(keys.stream(key, f"{d}/{c}"), rng, groups, c, s)
                        for c in conditions}
                    for d, s in (("easy", 3.0), ("medium", 1.5), ("hard", 0.7))
                    if d in difficulties}
  if segmentation:
    out["segmentation"] = {c: _segmentation(keys.stream(key, f"seg/{c}"), rng, groups, c)
                           for c in conditions}
  out["provenance"] = dict(
      config={"seed": seed, "ingest": {"secret": "s3cr3t-value", "workers": 2},
              "patient_name": "DOE^JOHN"},
      keys={"seed": seed, "evaluate": "stream(root, 'evaluate')"},
      stages={"synthesize": {"wall_s": 1.5}, "train": {"wall_s": 20.0, "skipped": True}})
  return out


def _samples(groups):
  image = np.full((24, 24), 30.0)
  mask = np.zeros((24, 24))
  mask[6:18, 6:18] = 1
  sphere = image.copy()
  sphere[10:14, 10:14] = 50.0
  return {g: dict(without_sphere=image, with_sphere=sphere, brain_mask=mask,
                  sphere_mask=(sphere > 40)) for g in groups}


@pytest.fixture(scope="module")
def complete():
  return fabricate()


def _is_explained_or_finite(cell: str) -> bool:
  """A number (all finite), an explained n/a, a section heading or a blank."""
  if cell in ("not reported", "", "—") or cell.startswith("**"):
    return True
  if cell.startswith("n/a ("):
    return cell.endswith(")") and len(cell) > len("n/a ()")
  numbers = re.findall(r"[-+]?\d+\.?\d*|nan|inf", cell, re.IGNORECASE)
  return bool(numbers) and all(math.isfinite(float(x)) for x in numbers)


def test_every_cell_is_produced_and_finite(complete):
  for table in tables.all_tables(complete):
    width = len(table.header)
    labels = 3 if table.title == "Cross-group drop" else 1  # task, trained on, tested on
    for row in table.rows:
      assert len(row) == width, table.title
      for cell in row[labels:]:
        assert _is_explained_or_finite(cell), (table.title, row[0], cell)
        assert "nan" not in cell.lower(), (table.title, cell)
      if ": ours" in row[0] or row[0].startswith("trained on"):
        # Every one of our cells is computed in a complete structure.
        assert not any(c.startswith("n/a") for c in row[1:]), (table.title, row)
  paper = [r for t in tables.spheres_tables(complete) for r in t.rows if r[0].endswith("paper")]
  assert any("98.8 ± 0.0" in c for r in paper for c in r)  # Table 3, easy, validation


def test_report_files_are_self_contained_and_clean(complete, tmp_path):
  written = render.render_report(complete, tmp_path, samples=_samples(complete["groups"]),
                                 environment=ENVIRONMENT)
  page = written["report.html"].read_text()
  text = written["report.md"].read_text()
  assert page.count("src='data:image/png;base64,") == 4   # forest, 2 ROC, samples
  # The first screen leads with the answer and the forest plot, before the tables.
  assert page.index("<h2>The answer</h2>") < page.index("forest") < page.index("<h2>Tables</h2>")
  assert text.index("## The answer") < text.index("figures/forest.png") < text.index("## Tables")
  assert not re.search(r"(src|href)=['\"](?!data:)", page)
  assert "<script" not in page and "<link" not in page
  for link in re.findall(r"!\[[^\]]*\]\(([^)]+)\)", text):
    assert (tmp_path / link).is_file()
  for body in (page, text):
    assert "s3cr3t-value" not in body and "DOE^JOHN" not in body
    assert not re.search(r"PatientName|PatientID|BirthDate|AccessionNumber", body)
    assert not re.search(r"\bnan\b", body, re.IGNORECASE)
  assert "<redacted>" in text and '"workers": 2' in text
  assert "Table 2. Name the Manufacturer" in text and "Table 6." in text
  assert "the group is recognisable" in text or "chance" in text
  assert "Wall time per stage" in text and "20.0" in text


def test_headline_and_forest_rows_come_from_the_numbers(complete):
  panels = harm_table.forest_panels(complete)
  transfers = sum(len(c.get("transfer", {})) for d in ("easy", "medium", "hard")
                  for c in complete["spheres"].get(d, {}).values())
  assert len(panels["accuracy"]["rows"]) == transfers
  first = panels["accuracy"]["rows"][0]
  drop = complete["spheres"]["easy"]["GE"]["transfer"]["Siemens"]["accuracy"]
  assert first["label"] == "spheres easy: GE -> Siemens"
  assert first["difference"] == pytest.approx(100 * drop["difference"])
  lines = summary.headline(complete)
  assert any(line.startswith("This cohort shows") for line in lines)


def test_json_round_trip_renders_the_same_tables(complete, tmp_path):
  text = json.dumps(results_lib.to_jsonable(complete), allow_nan=False)
  again = json.loads(text)
  assert ([tables.to_markdown(t) for t in tables.all_tables(again)]
          == [tables.to_markdown(t) for t in tables.all_tables(complete)])
  render.render_report(again, tmp_path, environment=ENVIRONMENT)
  assert "n/a (no sample slices given)" in (tmp_path / "report.md").read_text()


def test_summary_is_computed_from_the_numbers(complete):
  answers = summary.summarise(complete)
  lines = [line if isinstance(line, str) else tables.to_markdown(line)
           for group in answers.values() for line in group]
  assert all("nan" not in line.lower() for line in lines)
  test = complete["name_manufacturer"]["mixed"]["test"]["mixed"]
  accuracy = test["averaged"]["selected"]["metrics"]["accuracy"]
  assert f"{100 * accuracy:.1f}%" in answers["Is the group recognisable?"][0]
  trend = answers["Does the harm grow with task difficulty?"]
  assert len(trend) == 2 and all("points with 95% CI" in line for line in trend)
  # The cross-group answer: a sentence, then a table row per comparison.
  sentence, table = answers["Does single-group training hurt the other group?"]
  assert sentence.startswith("This cohort shows") and isinstance(table, tables.Table)
  assert len(table.rows) == len(harm_table.comparisons(complete))
  assert any(note.startswith("How to read this") for note in table.notes)


def _hand_made(*drops):
  """Results with GE -> Siemens accuracy drops (difference, low, high) for easy, medium, hard."""
  spheres = {d: {"GE": {"transfer": {"Siemens": {
      "accuracy": {"difference": value, "ci": [low, high]}, "reasons": {}}}}}
      for d, (value, low, high) in zip(summary.DIFFICULTIES, drops)}
  return dict(groups=["GE", "Siemens"], spheres=spheres)


def _trend_line(results):
  return summary.difficulty_trend(results)[0]  # GE -> Siemens; Siemens -> GE is n/a


@pytest.mark.parametrize("drops, verdict, reasons", [
    # Clear growing harm: monotone, easy and hard intervals apart, hard above zero.
    (((0.02, -0.02, 0.06), (0.10, 0.05, 0.15), (0.25, 0.18, 0.32)),
     "the harm grows with difficulty", []),
    (((0.25, 0.18, 0.32), (0.10, 0.05, 0.15), (0.02, -0.02, 0.06)),
     "the harm shrinks with difficulty", []),
    # Not monotone (medium is the worst), though easy and hard are apart.
    (((0.02, -0.02, 0.06), (0.30, 0.22, 0.38), (0.20, 0.12, 0.28)),
     "no clear trend with difficulty", ["not monotone"]),
    # Monotone, but the easy and hard intervals overlap: the reviewer's case.
    (((0.05, 0.00, 0.12), (0.07, 0.01, 0.13), (0.10, 0.04, 0.16)),
     "no clear trend with difficulty", ["intervals overlap"]),
    (((0.05, 0.00, 0.12), (0.20, 0.10, 0.30), (0.04, -0.02, 0.10)),
     "no clear trend with difficulty", ["not monotone", "intervals overlap"]),
    # Monotone and apart, but the hard task shows no harm (only a smaller advantage).
    (((-0.20, -0.25, -0.15), (-0.10, -0.15, -0.05), (0.00, -0.05, 0.05)),
     "no clear trend with difficulty", ["hard-task interval shows no harm"]),
])
def test_difficulty_trend_is_claimed_only_when_the_intervals_support_it(drops, verdict, reasons):
  line = _trend_line(_hand_made(*drops))
  assert line.startswith(f"Trained on GE, tested on Siemens: {verdict}")
  for reason in reasons:
    assert reason in line
  if not reasons:
    assert "no clear" not in line and "overlap" not in line


def test_summary_never_claims_what_its_intervals_contradict():
  rng = np.random.default_rng(0)
  claims = 0
  for _ in range(2000):
    values = rng.uniform(-0.3, 0.5, 3)
    widths = rng.uniform(0.0, 0.3, (3, 2))
    drops = [(v, v - w[0], v + w[1]) for v, w in zip(values, widths)]
    results = _hand_made(*drops)
    line = _trend_line(results)
    claimed = "grows" in line or "shrinks" in line
    claims += claimed
    # A trend claim and an overlap (or no-trend) caveat never share a comparison.
    assert not (claimed and ("overlap" in line or "no clear" in line)), line
    (_, easy_low, easy_high), (_, hard_low, hard_high) = drops[0], drops[2]
    if "grows" in line:
      assert values[0] <= values[1] <= values[2] and hard_low > easy_high and hard_low > 0
    if "shrinks" in line:
      assert values[0] >= values[1] >= values[2] and easy_low > hard_high and easy_low > 0
    # The task with the larger harm is also called a harm in the cross-group table.
    verdicts = [row[-1] for row in harm_table.table(results).rows]
    if "grows" in line:
      assert verdicts[2].startswith("harm: worse on Siemens")
    if "shrinks" in line:
      assert verdicts[0].startswith("harm: worse on Siemens")
    for cross, (_, low, _) in zip(verdicts, drops):
      assert cross.startswith("harm") == (low > 0), cross
  assert claims > 50  # the draws do exercise the claims


def test_missing_and_undefined_cells_say_why(tmp_path):
  partial = fabricate(groups=("Philips", "Canon", "Toshiba"), seed=1,
                      difficulties=("easy", "hard"), segmentation=False)
  del partial["spheres"]["hard"]["Canon"]
  all_tables = tables.all_tables(partial)
  cells = [c for t in all_tables if t.title != "Cross-group drop" for r in t.rows
           for c in r[1:]]
  assert "n/a (not run)" in cells
  assert any("paper groups are GE/Siemens" in c for c in cells)
  assert any("paper did not train on Philips" in c for c in cells)
  assert len(tables.spheres_tables(partial)) == 4  # mixed + three groups
  for cell in cells:
    assert _is_explained_or_finite(cell), cell
  trend = summary.difficulty_trend(partial)
  assert any("n/a (no drop for medium, hard)" in line for line in trend)
  render.render_report(partial, tmp_path, environment=ENVIRONMENT)
  assert (tmp_path / "figures" / "roc_spheres.png").stat().st_size > 1000


def test_single_class_condition_renders(complete):
  one_class = copy.deepcopy(complete)
  test = one_class["spheres"]["easy"]["mixed"]["test"]
  labels = np.ones(6, int)
  scores = np.tile(np.linspace(0.3, 0.9, 6), (MEMBERS, 1))
  test["GE"] = results_lib.classification_split(keys.root(2), labels, scores, [0, 1, 2],
                                                n_resamples=RESAMPLES)
  table = tables.spheres_tables(one_class)[0]
  auroc_rows = [r for r in table.rows if r[0].startswith("AUROC: ours")]
  assert any(c.startswith("n/a (one class present (all positive))") for c in auroc_rows[0])
  assert metrics.classification(labels, scores[0])["reasons"]["auroc"]


def test_paper_values_are_complete_and_typed_as_published():
  for table, columns in ((paper_values.TABLE3, 4), (paper_values.TABLE4, 3),
                         (paper_values.TABLE5, 3)):
    assert set(table) == {"easy", "medium", "hard"}
    for by_metric in table.values():
      assert set(by_metric) == set(tables.SPHERE_METRICS)
      for row in by_metric.values():
        reported = [v for v in row.values() if v is not None]
        assert len(reported) == columns
        assert all(0 <= mean <= 100 and 0 <= std <= 100 for mean, std in reported)
  assert paper_values.TABLE5["hard"]["sensitivity"]["GE"] == (27.2, 6.9)
  assert paper_values.TABLE4["medium"]["specificity"]["Siemens"] == (47.9, 3.4)
  assert paper_values.TABLE6["mixed"]["mixed"] == (0.9784, None)
  assert paper_values.TABLE2["Group 2"]["GE"] == (97.72, 2.21)


def test_mixed_is_not_a_group_value(complete, tmp_path):
  bad = dict(complete, groups=["mixed", "GE"])
  with pytest.raises(ValueError):
    render.render_report(bad, tmp_path, environment=ENVIRONMENT)


def test_headline_says_whether_the_cnn_reached_the_probe():
  base = dict(groups=["GE", "Siemens"], group_attribute="vendor")
  probe = dict(n=20, accuracy=1.0, accuracy_ci=[0.84, 1.0], auroc=1.0, auroc_ci=[1.0, 1.0],
               permutation_p=1e-4)
  def cnn(high):
    return dict(n=20, accuracy=0.95, accuracy_ci=[0.76, 0.99], auroc=0.97,
                auroc_ci=[0.88, high], permutation_p=2e-4)
  reached = summary.headline(dict(base, name_manufacturer={"mixed": {"controls": cnn(1.0)}},
                                  controls={"texture_probe": probe}))
  assert reached[0].startswith("Can the vendor be named from the images? Yes")
  assert "the CNN reached the noise-texture probe" in reached[0]
  short = summary.headline(dict(base, name_manufacturer={"mixed": {"controls": cnn(0.99)}},
                                controls={"texture_probe": probe}))
  assert "did not reach" in short[0]
  blind_probe = dict(probe, auroc=0.51, auroc_ci=[0.26, 0.77], permutation_p=0.49)
  blind = summary.headline(dict(base, name_manufacturer={"mixed": {"controls": cnn(1.0)}},
                                controls={"texture_probe": blind_probe}))
  assert "the noise-texture probe finds no signal either" in blind[0]
  chance = dict(cnn(0.9), accuracy=0.55, accuracy_ci=[0.34, 0.74], permutation_p=0.3)
  assert "Not shown" in summary.headline(dict(base, name_manufacturer={
      "mixed": {"controls": chance}}))[0]


def test_provenance_names_the_cpu_model_and_its_instruction_sets(tmp_path):
  from scanbias_jax.report import render
  intel = tmp_path / "intel"
  intel.write_text("processor\t: 0\nvendor_id\t: GenuineIntel\n"
                   "model name\t: Intel(R) Xeon(R) Platinum 8480C\n"
                   "flags\t\t: fpu sse4_2 avx avx2 fma avx512f avx512_bf16 amx_tile amx_bf16\n"
                   "processor\t: 1\nmodel name\t: Intel(R) Xeon(R) Platinum 8480C\n")
  assert render.cpu_description(str(intel)) == dict(
      model="Intel(R) Xeon(R) Platinum 8480C",
      isa=["sse4_2", "avx", "avx2", "fma", "avx512f", "avx512_bf16", "amx_tile", "amx_bf16"],
      family="GenuineIntel AMX")
  amd = tmp_path / "amd"
  amd.write_text("vendor_id\t: AuthenticAMD\nmodel name\t: AMD EPYC\nflags\t: avx avx2 fma\n")
  assert render.cpu_description(str(amd))["family"] == "AuthenticAMD AVX2"
  arm = tmp_path / "arm"
  arm.write_text("processor\t: 0\nCPU implementer\t: 0x41\nFeatures\t: fp asimd sve\n"
                 "CPU part\t: 0xd40\n")
  assert render.cpu_description(str(arm))["isa"] == ["asimd", "sve"]
  assert render.cpu_description(str(arm))["family"] == "0x41 SVE"
  assert render.cpu_description(str(tmp_path / "missing"))["isa"] == []
  environment = render.collect_environment()
  assert environment["cpu"]["model"] and environment["device_kinds"]


def test_headline_names_the_negative_control_and_the_interval_methods():
  base = dict(groups=["GE", "Siemens"], group_attribute="vendor")
  cnn = dict(n=20, accuracy=0.95, accuracy_ci=[0.76, 0.99], auroc=0.97, auroc_ci=[0.88, 1.0],
             permutation_p=2e-4, accuracy_ci_method="Wilson score",
             auroc_ci_method="stratified bootstrap")
  def lines(strength, source="synthetic"):
    return summary.headline(dict(base, name_manufacturer={"mixed": {"controls": cnn}},
                                 provenance=dict(source=source, config=dict(
                                     synth=dict(signature_strength=strength)))))
  assert any(l.startswith("Negative control: the same command with "
                          "--config.synth.signature_strength=0") for l in lines(1.0))
  assert any(l.startswith("This run is the negative control") for l in lines(0.0))
  assert not any("negative control" in l.lower() for l in lines(1.0, source="dicom"))
  assert lines(1.0)[-1] == "Intervals: 95%; accuracy Wilson, AUROC stratified bootstrap."
  assert "95.0% [76.0, 99.0] of 20 test studies, AUROC 0.970 [0.880, 1.000]" in lines(1.0)[0]


def test_provenance_says_which_bits_a_rerun_shares(tmp_path):
  from scanbias_jax.report import render
  note = render.reproducibility_note(dict(cpu=dict(model="AMD EPYC",
                                                   family="AuthenticAMD AVX512_BF16")))
  assert note.startswith("Computed on AMD EPYC (family AuthenticAMD AVX512_BF16).")
  assert "same CPU family" in note and "another family" in note
  assert "unrecorded CPU" in render.reproducibility_note({})
