"""Member selection: the paper's "best k of n by validation accuracy and AUROC".

Section 3.3.2: "we trained 10 models and then selected the best six models based
on accuracy and the area under the curve (AUC) ... for the validation set". The
paper does not say how the two metrics were combined (and Section 4.2 adds a
qualitative look at loss curves and convergence, which cannot be reproduced).
We rank by the mean of the chosen validation metrics ("mean", default) or
lexicographically ("lexicographic": first metric, then the next). Ties go to the
better value of each metric in the order given, then to the lower member index,
so the result never depends on the input order beyond that index. A member with
a non-finite metric (diverged, or undefined on its validation set) ranks after
every finite one.
"""
import dataclasses
from typing import Sequence

import numpy as np

CRITERIA = ("mean", "lexicographic")


@dataclasses.dataclass(frozen=True)
class Selection:
  """Chosen member indices (best first) and a sentence saying how and why."""
  indices: tuple[int, ...]
  k: int
  n_members: int
  metrics: tuple[str, ...]
  criterion: str
  reason: str

  def to_dict(self) -> dict:
    return dict(selected=list(self.indices), k=self.k, n_members=self.n_members,
                metrics=list(self.metrics), criterion=self.criterion,
                reason=self.reason)


def select_members(validation: Sequence[dict], k: int | None,
                   metrics: Sequence[str] = ("accuracy", "auroc"),
                   criterion: str = "mean") -> Selection:
  """The best `k` members by their validation metrics (higher is better).

  `validation[i]` holds member i's metrics (e.g. from `metrics.classification`).
  `k=None` or `k >= len(validation)` keeps every member.
  """
  if criterion not in CRITERIA:
    raise ValueError(f"criterion must be one of {CRITERIA}, got {criterion!r}")
  metrics = tuple(metrics)
  n = len(validation)
  if n == 0:
    raise ValueError("no members to select from")
  table = np.array([[float(m[name]) for name in metrics] for m in validation])
  finite = np.isfinite(table).all(axis=1)
  if k is None or k >= n:
    return Selection(tuple(range(n)), n, n, metrics, criterion,
                     f"all {n} members kept (k={k} >= n)")
  if k < 1:
    raise ValueError(f"k must be >= 1, got {k}")
  filled = np.where(np.isfinite(table), table, -np.inf)
  primary = filled.mean(axis=1) if criterion == "mean" else filled[:, 0]
  # np.lexsort sorts by the last key first; negate for descending order.
  order = np.lexsort((np.arange(n), *(-filled[:, j] for j in reversed(range(len(metrics)))),
                      -primary))
  chosen = tuple(int(i) for i in order[:k])
  how = (f"mean of validation {' and '.join(metrics)}" if criterion == "mean"
         else f"validation {', then '.join(metrics)}")
  reason = f"best {k} of {n} members by {how}; ties to the lower member index"
  excluded = [int(i) for i in np.flatnonzero(~finite)]
  if excluded:
    reason += f"; members {excluded} had non-finite metrics and ranked last"
  if not finite[list(chosen)].all():
    reason += " (fewer than k members had finite metrics)"
  return Selection(chosen, k, n, metrics, criterion, reason)
