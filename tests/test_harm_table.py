"""The cross-group answer (report/harm_table.py): a verdict only where the interval
excludes zero, and the planted harm beside every comparison."""
from scanbias_jax.report import harm_table, summary


def _hand_made(*drops):
  """Results with GE -> Siemens accuracy drops (difference, low, high) for easy, medium, hard."""
  spheres = {d: {"GE": {"transfer": {"Siemens": {
      "accuracy": {"difference": value, "ci": [low, high]}, "reasons": {}}}}}
      for d, (value, low, high) in zip(summary.DIFFICULTIES, drops)}
  return dict(groups=["GE", "Siemens"], spheres=spheres)


def _with_tests(results, planted=None):
  for d, p in zip(summary.DIFFICULTIES, (0.01, 0.2, 0.03)):
    condition = results["spheres"][d]["GE"]
    condition["transfer"]["Siemens"]["accuracy"].update(p_value=p, mdd=0.12)
    if planted:
      condition["planted"] = {"Siemens": {"accuracy": dict(
          difference=planted[0], ci=list(planted[1:]), p_value=0.001, mdd=0.1)}}
  return results


def test_cross_group_table_calls_a_harm_only_when_its_interval_excludes_zero():
  results = _with_tests(_hand_made((0.10, 0.02, 0.18), (0.10, -0.01, 0.21),
                                   (-0.10, -0.18, -0.02)))
  rows = harm_table.table(results).rows
  assert rows[0][2:] == ["+10.0 [+2.0, +18.0]", "0.01", "12.0", "not planted",
                         "harm: worse on Siemens"]
  assert rows[1][-1] == "no harm shown; a fall above 21.0 points is ruled out"
  assert rows[2][-1] == "better on Siemens"
  sentence = harm_table.answer(results)
  assert sentence.startswith("This cohort shows cross-group harm in 1 of 3 comparisons, the "
                             "largest spheres easy GE -> Siemens: +10.0 [+2.0, +18.0] points")
  assert "median MDD" in sentence


def test_cross_group_answer_states_the_planted_harm_it_detected():
  results = _with_tests(_hand_made((0.01, -0.03, 0.05), (0.0, -0.04, 0.04), (0.02, -0.01, 0.05)),
                        planted=(0.15, 0.08, 0.22))
  results["provenance"] = {"config": {"experiments": {"planted_harm_hu": 10.0}}}
  rows = harm_table.table(results).rows
  assert rows[0][5] == "+10 HU: +15.0 [+8.0, +22.0], detected"
  sentence = harm_table.answer(results)
  assert sentence.startswith("This cohort shows no cross-group harm: none of 3 comparisons")
  assert ("a planted +10 HU tissue calibration shift on the other vendor was detected in 3 of "
          "3 sphere comparisons") in sentence


def test_the_report_says_how_the_spheres_got_in_and_what_ran_beside():
  from scanbias_jax.report import summary
  condition = lambda insertion: {"mixed": {"test_set": {"insertion": insertion}}}
  results = {"spheres": {"easy": condition("acquired"), "medium": condition("acquired"),
                         "medium_painted": condition("painted")}}
  text = summary.sphere_insertion(results)
  assert text.startswith("Spheres: acquired through each study's scanner")
  assert "beside" in text and "medium painted after reconstruction" in text
  assert summary.sphere_insertion({"spheres": {"easy": condition("painted")}}).startswith(
      "Spheres: painted after reconstruction")
  assert summary.sphere_insertion({}) == ""
