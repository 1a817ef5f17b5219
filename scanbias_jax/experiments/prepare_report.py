"""The prepare stage's tables (splits, spheres, Dice, summary) and overlay figures."""
import os

import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from scanbias_jax import files
from scanbias_jax.cohort import balance, manifest
from scanbias_jax.experiments import datasets
from scanbias_jax.lesions import spheres
from scanbias_jax.preprocess import window

_EXTRA = ("patient_id", "vendor", "model", "kernel", "age_years", "sex", "series_number",
          "anatomy", "mtf50_per_mm", "ssp_fwhm_mm", "offset_large_hu", "offset_small_hu")
_DRAW = ("centre_i", "centre_j", "centre_k", "centre_x_ras", "centre_y_ras", "centre_z_ras",
         "inscribed_mm", "fits", "large_radius_mm", "large_mean_hu", "large_std_hu",
         "small_radius_mm", "small_mean_hu", "small_std_hu")


def _stats(values) -> dict:
  values = np.asarray(values, float)
  if values.size == 0:
    return dict(n=0, mean=float("nan"), sd=float("nan"), min=float("nan"), max=float("nan"))
  return dict(n=int(values.size), mean=float(values.mean()),
              sd=float(values.std(ddof=1)) if values.size > 1 else 0.0,
              min=float(values.min()), max=float(values.max()))


def write_tables(out_dir, rows, records, group, config) -> dict:
  """Writes splits.csv, spheres.csv, dice.csv and summary.md; returns the summary dict."""
  split_rows, sphere_rows = [], []
  for r in sorted(rows, key=lambda r: r["study_id"]):
    sid = r["study_id"]
    split_rows.append(dict(r, mask=os.path.join("masks", f"{sid}.nii.gz")))
    if int(r["label"]):
      record = records[sid]
      measured = {f"measured_{kind}_{name}": value
                  for kind, m in record["measured"].items() for name, value in m.items()}
      sphere_rows.append(dict(study_id=sid, **{group: r[group]}, split=r["split"],
                              **{f"small_{d}": r[f"small_{d}"] for d in spheres.DIFFICULTIES},
                              **{k: record["sphere"][k] for k in _DRAW}, **measured))
  smalls = tuple(f"small_{d}" for d in spheres.DIFFICULTIES)
  extra = tuple(c for c in _EXTRA if c != group and rows and c in rows[0])
  files.write_text(os.path.join(out_dir, datasets.SPLITS_FILE), manifest.to_csv(
      split_rows, ("study_id", group, "label", "split", *smalls, "path", "mask", *extra)))
  measured_columns = tuple(f"measured_{k}_{n}" for k in ("large", "small")
                           for n in ("voxels", "mean_hu", "std_hu"))
  files.write_text(os.path.join(out_dir, datasets.SPHERES_FILE), manifest.to_csv(
      sphere_rows, ("study_id", group, "split", *smalls, *_DRAW, *measured_columns)))
  dice_rows = [dict(study_id=r["study_id"], **{group: r[group]},
                    dice=records[r["study_id"]]["dice"],
                    brain_ml=records[r["study_id"]]["brain_ml"]) for r in split_rows]
  files.write_text(os.path.join(out_dir, "dice.csv"),
                   manifest.to_csv(dice_rows, ("study_id", group, "dice", "brain_ml")))
  summary = dict(group=group, counts=counts(split_rows, group),
                 spheres=sphere_stats(sphere_rows),
                 skullstrip=dice_stats(dice_rows, group))
  files.write_text(os.path.join(out_dir, "summary.md"), markdown(summary))
  return summary


def counts(rows, group) -> list[dict]:
  """Studies per split x group value x label."""
  table = []
  for split in (*balance.SPLITS, "total"):
    for value in sorted({r[group] for r in rows}):
      inside = [r for r in rows if r[group] == value and split in ("total", r["split"])]
      positives = sum(int(r["label"]) for r in inside)
      table.append(dict(split=split, group=value, n=len(inside), positives=positives,
                        negatives=len(inside) - positives))
  return table


def sphere_stats(sphere_rows) -> list[dict]:
  """Per difficulty: radius (mm), specified and measured voxel HU of the spheres used."""
  table = []
  for difficulty in spheres.DIFFICULTIES:
    used = [("small" if int(r[f"small_{difficulty}"]) and difficulty != "easy" else "large", r)
            for r in sphere_rows]
    table.append(dict(
        difficulty=difficulty, positives=len(used),
        small=sum(kind == "small" for kind, _ in used),
        radius_mm=_stats([r[f"{k}_radius_mm"] for k, r in used]),
        spec_mean_hu=_stats([r[f"{k}_mean_hu"] for k, r in used]),
        measured_mean_hu=_stats([r[f"measured_{k}_mean_hu"] for k, r in used]),
        measured_std_hu=_stats([r[f"measured_{k}_std_hu"] for k, r in used]),
        voxels=_stats([r[f"measured_{k}_voxels"] for k, r in used])))
  return table


def dice_stats(dice_rows, group) -> list[dict]:
  table = []
  for value in sorted({r[group] for r in dice_rows}):
    inside = [r for r in dice_rows if r[group] == value]
    table.append(dict(group=value, dice=_stats([r["dice"] for r in inside
                                                if r["dice"] is not None]),
                      brain_ml=_stats([r["brain_ml"] for r in inside])))
  return table


def markdown(summary) -> str:
  lines = ["# Prepared data sets", "", f"## Studies per split x {summary['group']} x label",
           "", "| split | group | n | positives | negatives |", "|---|---|---|---|---|"]
  lines += [f"| {c['split']} | {c['group']} | {c['n']} | {c['positives']} | {c['negatives']} |"
            for c in summary["counts"]]
  lines += ["", "## Spheres per difficulty (positives)", "",
            "| difficulty | spheres | small | radius mm mean (min-max) | spec HU | "
            "measured HU mean | measured HU std |", "|---|---|---|---|---|---|---|"]
  for s in summary["spheres"]:
    r = s["radius_mm"]
    lines.append(f"| {s['difficulty']} | {s['positives']} | {s['small']} | {r['mean']:.1f} "
                 f"({r['min']:.1f}-{r['max']:.1f}) | {s['spec_mean_hu']['mean']:.1f} | "
                 f"{s['measured_mean_hu']['mean']:.2f} | {s['measured_std_hu']['mean']:.2f} |")
  lines += ["", "## Skull stripping vs ground truth", "",
            "| group | studies with truth | Dice mean | Dice min | brain mL mean |",
            "|---|---|---|---|---|"]
  for d in summary["skullstrip"]:
    lines.append(f"| {d['group']} | {d['dice']['n']} | {d['dice']['mean']:.4f} | "
                 f"{d['dice']['min']:.4f} | {d['brain_ml']['mean']:.0f} |")
  return "\n".join(lines) + "\n"


def overlay(path, hu, mask, true_mask, draw, spacing, key, study_id, reach_voxels):
  """Three slices with the mask (red) and truth (green) outlines, and the Easy sphere."""
  occupied = np.flatnonzero(mask.any(axis=(0, 1)))
  lo, hi = (occupied[0], occupied[-1]) if occupied.size else (0, hu.shape[2] - 1)
  slices = [int(round(lo + f * (hi - lo))) for f in (0.2, 0.5, 0.8)]
  figure = Figure(figsize=(12, 3.4))
  FigureCanvasAgg(figure)
  axes = figure.subplots(1, 4)
  shown = np.asarray(window.spheres_window(hu))
  for ax, k in zip(axes[:3], slices):
    ax.imshow(shown[..., k].T, cmap="gray", vmin=0, vmax=1)
    ax.contour(mask[..., k].T, levels=[0.5], colors="red", linewidths=0.7)
    if true_mask is not None:
      ax.contour(true_mask[..., k].T, levels=[0.5], colors="lime", linewidths=0.7)
    ax.set_title(f"slice {k}", fontsize=9)
  spec = spheres.spec_from_row(draw, "easy", False, spacing)
  with_sphere, _ = spheres.inserted_and_mask(
      hu, spec, spheres.voxel_key(key, study_id, "large"),
      reach_voxels)
  k = draw["centre_k"]
  axes[3].imshow(np.asarray(window.spheres_window(with_sphere))[..., k].T, cmap="gray",
                 vmin=0, vmax=1)
  axes[3].set_title(f"Easy sphere r={draw['large_radius_mm']:.1f} mm, slice {k}", fontsize=9)
  for ax in axes:
    ax.axis("off")
  figure.suptitle(f"{study_id}: skull strip (red), truth (green)", fontsize=10)
  with files.atomic_path(path) as temporary:
    figure.savefig(temporary, dpi=80, format="png")
