"""One sweep point: its tasks trained on its mix, tested on every vendor's test heads.

Each task's ensemble trains on the point's training studies (one acquisition a head,
`mix.compose`) and is selected on its validation studies (the same mix). The test set
is the whole test split, both vendors, the same heads at every point; per vendor the
task's metric with its interval, and the minority-minus-majority difference of the
member-averaged selected output from evaluate/harm.py's one procedure (paired over
heads: interval, p-value and MDD agree). Negative = the minority vendor loses.
"""
import os

import numpy as np

from scanbias_jax import keys
from scanbias_jax.evaluate import harm, metrics, results
from scanbias_jax.experiments import common, segmentation, spheres
from scanbias_jax.sweep.sets import Arrays

NAME = "point"  # the train group of a point's conditions: no cross-group transfer block


def _scored_sets(test: Arrays, group_values, scores: np.ndarray) -> dict:
  """{"mixed"|vendor: (labels, member scores [M, n], units)} of the test set."""
  sets = {results.MIXED: (test.y, scores, test.units)}
  for index, vendor in enumerate(group_values):
    keep = test.groups == index
    sets[vendor] = (test.y[keep], scores[:, keep], test.units[keep])
  return sets


def spheres_point(config, difficulty: str, key, workdir: str, data: dict,
                  train_ids, val_ids, group_values, sides: tuple) -> tuple[dict, dict]:
  """(Condition, minority-minus-majority gap) of one difficulty at one point; `sides` =
  (minority, majority)."""
  train, val, test = data["train"].rows_of(train_ids), data["val"].rows_of(val_ids), data["test"]
  ens, variables, _ = common.fit(config, spheres.TASK, keys.stream(key, "train"),
                                 dict(x=train.x, y=train.y), dict(x=val.x, y=val.y),
                                 os.path.join(workdir, spheres.TASK, difficulty),
                                 augment=spheres.augment(config))
  settings = config.experiments
  scored = _scored_sets(test, group_values, common.predict(ens, variables, test.x))
  condition = results.classification_condition(
      keys.stream(key, "evaluate"), NAME,
      (val.y, common.predict(ens, variables, val.x), val.units), scored,
      settings.select_k, positive_class="sphere", n_resamples=settings.bootstrap_resamples)
  condition["training_set"] = dict(samples=int(len(train.y)), studies=len(set(train.study_ids)))
  chosen = condition["selection"]["selected"]
  minority, majority = ((scored[v][0], metrics.average_scores(scored[v][1], chosen))
                        for v in sides)
  gap = harm.classification_difference(minority, majority,
                                       clusters=(scored[sides[0]][2], scored[sides[1]][2]))
  return condition, gap


def segmentation_point(config, key, workdir: str, data: dict, train_ids, val_ids,
                       group_values, sides: tuple) -> tuple[dict, dict]:
  """(Condition, minority-minus-majority Dice gap) at one point."""
  train, val, test = data["train"].rows_of(train_ids), data["val"].rows_of(val_ids), data["test"]
  ens, variables, _ = common.fit(config, segmentation.TASK, keys.stream(key, "train"),
                                 dict(x=train.x, y=train.y), dict(x=val.x, y=val.y),
                                 os.path.join(workdir, segmentation.TASK))
  chosen = results.select_by_dice(
      segmentation.dice_of(ens, variables, val.x, val.y, None)["member_dice"],
      config.experiments.select_k)

  def scored(arrays: Arrays) -> dict:
    return dict(segmentation.dice_of(ens, variables, arrays.x, arrays.y, chosen.indices),
                clusters=arrays.units)
  tests = {results.MIXED: scored(test)}
  # Each vendor's set is the mixed set's rows: its per-volume Dice sliced, not predicted again.
  tests.update({vendor: _rows(tests[results.MIXED], test.groups == index)
                for index, vendor in enumerate(group_values)})
  condition = results.segmentation_condition(
      keys.stream(key, "evaluate"), NAME, chosen, scored(val), tests,
      n_resamples=config.experiments.bootstrap_resamples)
  condition["training_set"] = dict(samples=int(len(train.y)), studies=len(set(train.study_ids)))
  gap = harm.mean_difference(*(tests[v]["averaged_dice"]["selected"] for v in sides),
                             clusters=tuple(tests[v]["clusters"] for v in sides))
  return condition, gap


def _rows(scored: dict, keep: np.ndarray) -> dict:
  """A `dice_of` result (+ clusters) restricted to the volumes `keep`."""
  return dict(member_dice=scored["member_dice"][:, keep], clusters=scored["clusters"][keep],
              averaged_dice={k: v[keep] for k, v in scored["averaged_dice"].items()})


def summary(condition: dict, metric: str, gap: dict, vendors: tuple) -> dict:
  """The point's line for one task: each vendor's metric [CI] and the gap."""
  by_vendor = {}
  for vendor in vendors:
    averaged = condition["test"][vendor]["averaged"]["selected"]
    by_vendor[vendor] = dict(value=averaged["metrics"][metric],
                             ci=averaged["ci"].get(metric))
  return dict(metric=metric, by_vendor=by_vendor,
              minority_minus_majority=gap.get(metric), reasons=gap.get("reasons", {}))
