"""The vendor mix of a training set at a fixed size: composition changes, size does not.

Traveling heads are acquired on every vendor, so a mix is a choice of which
acquisition of each head enters the set: every head of the split gives exactly one
study. The heads are put in one order drawn from the sweep's key (the same at every
strength and every mix), and the first round(share x heads) of that order give their
first vendor's acquisition, the others the second's. So the mixes are nested (the
heads that carry the minority vendor at 90/10 carry it at 75/25 too), 50/50 is one
set whichever vendor is called the majority, and only the vendor labels move between
points, never the anatomy.
"""
import numpy as np

from scanbias_jax import keys


def first_vendor_share(vendors: tuple, majority: str, majority_share: float) -> float:
  """The share of vendors[0] when `majority` holds `majority_share` of the set."""
  if len(vendors) != 2 or majority not in vendors:
    raise ValueError(f"sweep.majority {majority!r} must be one of sweep.vendors {vendors} "
                     "(two vendors)")
  if not 0.0 <= majority_share <= 1.0:
    raise ValueError(f"sweep.majority_share must lie in [0, 1], got {majority_share}")
  return majority_share if majority == vendors[0] else 1.0 - majority_share


def head_order(key, heads) -> list[str]:
  """The heads (anatomy ids) in the order drawn from `key`: sorted, then permuted."""
  heads = sorted(heads)
  return [heads[i] for i in keys.numpy_rng(key).permutation(len(heads))]


def compose(rows: list[dict], group: str, vendors: tuple, share_first: float,
            key) -> tuple[list[str], dict]:
  """(study ids of the set, a summary) of one split's rows (each with "anatomy" and the
  `group` column): one acquisition a head, vendors[0]'s for round(share_first x heads)
  of them. A head without the acquisition it is asked for gives none (counted as
  `missing`): the size then falls short by those heads, never the mix's composition."""
  by_head = {}
  for r in rows:
    if r[group] in vendors:
      by_head.setdefault(r.get("anatomy") or r["study_id"], {})[r[group]] = r["study_id"]
  order = head_order(key, by_head)
  n_first = int(np.floor(share_first * len(order) + 0.5))
  chosen, counts, missing = [], {v: 0 for v in vendors}, []
  for rank, head in enumerate(order):
    vendor = vendors[0] if rank < n_first else vendors[1]
    study = by_head[head].get(vendor)
    if study is None:
      missing.append(head)
      continue
    chosen.append(study)
    counts[vendor] += 1
  return sorted(chosen), dict(heads=len(order), studies=counts, missing=len(missing))
