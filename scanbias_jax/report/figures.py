"""Figures: PNG files made with matplotlib's Agg backend (no display needed)."""
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from scanbias_jax import files


def vendor_slices(volumes: dict[str, np.ndarray], pixel_mm: float, path: Path,
                  window=(40, 80), zoom: int = 4) -> Path:
  """The same head on each vendor's scanner: the middle slice at a brain window, a
  zoomed centre patch, and each vendor's NPS measured in the white matter of the
  slices given (evaluate.ct_stats, which knows nothing of the simulator).

  `volumes` maps vendor name to HU slices [slices, rows, cols]; `window` is
  (level, width).
  """
  from scanbias_jax.evaluate import ct_stats  # pylint: disable=g-import-not-at-top
  level, width = window
  names = list(volumes)
  fig = plt.figure(figsize=(3.2 * len(names) + 4.8, 6.4))
  grid = fig.add_gridspec(2, len(names) + 2)
  for col, name in enumerate(names):
    volume = np.asarray(volumes[name])
    image = volume[len(volume) // 2]
    h, w = image.shape
    patch = image[h // 2 - h // (2 * zoom):h // 2 + h // (2 * zoom),
                  w // 2 - w // (2 * zoom):w // 2 + w // (2 * zoom)]
    for row, shown in enumerate((image, patch)):
      ax = fig.add_subplot(grid[row, col])
      ax.imshow(shown, cmap="gray", vmin=level - width / 2, vmax=level + width / 2,
                interpolation="nearest")
      ax.set_axis_off()
      if row == 0:
        ax.set_title(name)
  ax = fig.add_subplot(grid[:, len(names):])
  for name in names:
    try:
      freq, nps = ct_stats.brain_nps(volumes[name], pixel_mm)
    except ValueError:
      continue  # too small an image for white-matter ROIs (the smoke config)
    ax.plot(freq, nps, marker=".", label=name)
  ax.set_xlabel("spatial frequency (1/mm)")
  ax.set_ylabel("NPS (HU$^2$ mm$^2$)")
  ax.set_title("Noise power spectrum in white matter")
  ax.legend()
  fig.suptitle(f"Same head, each vendor's scanner (W {width} / L {level}; lower row: "
               f"centre x{zoom})")
  fig.tight_layout()
  path.parent.mkdir(parents=True, exist_ok=True)
  fig.savefig(path, dpi=100)
  plt.close(fig)
  return path


def roc_curves(curves: dict, path: Path, title: str = "ROC of member-averaged outputs"
               ) -> Path:
  """Fig. 4 style: one panel per task (columns) and training condition (rows).

  `curves[task][condition][test_set]` is {fpr, tpr, auroc} or {reason}; every
  test set of a panel is one curve. A panel with no drawable curve says why.
  """
  tasks = list(curves)
  conditions = list(dict.fromkeys(c for task in tasks for c in curves[task]))
  fig, axes = plt.subplots(len(conditions), len(tasks), squeeze=False,
                           figsize=(3.4 * len(tasks), 3.2 * len(conditions)))
  for row, condition in enumerate(conditions):
    for col, task in enumerate(tasks):
      ax = axes[row, col]
      ax.plot([0, 1], [0, 1], color="0.8", linewidth=0.8)
      missing = []
      for test_set, curve in curves[task].get(condition, {}).items():
        if "fpr" in curve:
          ax.plot(curve["fpr"], curve["tpr"], linewidth=1.4,
                  label=f"{test_set} (AUC {curve['auroc']:.3f})")
        else:
          missing.append(f"{test_set}: n/a ({curve.get('reason', 'undefined')})")
      if condition not in curves[task]:
        missing.append("n/a (not run)")
      if missing:
        ax.text(0.97, 0.03, "\n".join(missing), fontsize=6, ha="right", va="bottom",
                transform=ax.transAxes)
      if ax.get_legend_handles_labels()[0]:
        ax.legend(fontsize=7, loc="lower right" if not missing else "center right")
      ax.set_xlim(0, 1)
      ax.set_ylim(0, 1.01)
      ax.set_title(f"{task}, trained on {condition}", fontsize=9)
      ax.set_xlabel("1 - specificity", fontsize=8)
      ax.set_ylabel("sensitivity", fontsize=8)
      ax.tick_params(labelsize=7)
  fig.suptitle(title)
  fig.tight_layout()
  return save(fig, path)


SAMPLE_ROWS = (("without_sphere", "no sphere"), ("with_sphere", "with sphere"),
               ("with_small_sphere", "small sphere"), ("brain_mask", "brain mask"))


def sample_slices(samples: dict, path: Path, window=(50, 100)) -> Path:
  """Figs. 1-3 style: sample axial slices per group (columns).

  `samples[group]` maps any of "without_sphere", "with_sphere",
  "with_small_sphere" (2-D HU slices) and "brain_mask" (2-D 0/1, drawn over the
  "without_sphere" slice) to arrays; "sphere_mask"/"small_sphere_mask" (2-D 0/1)
  are outlined on the sphere rows. Rows no group has are left out.
  """
  level, width = window
  groups = list(samples)
  rows = [(key, label) for key, label in SAMPLE_ROWS
          if any(key in samples[g] for g in groups)]
  if not rows:
    raise ValueError("no sample slices given")
  fig, axes = plt.subplots(len(rows), len(groups), squeeze=False,
                           figsize=(2.8 * len(groups), 2.8 * len(rows)))
  outline = {"with_sphere": "sphere_mask", "with_small_sphere": "small_sphere_mask"}
  for col, group in enumerate(groups):
    for row, (key, label) in enumerate(rows):
      ax = axes[row, col]
      ax.set_axis_off()
      image = samples[group].get("without_sphere" if key == "brain_mask" else key)
      if key not in samples[group] or image is None:
        ax.text(0.5, 0.5, "n/a (not given)", ha="center", va="center", fontsize=8,
                transform=ax.transAxes)
        continue
      ax.imshow(np.asarray(image), cmap="gray", vmin=level - width / 2,
                vmax=level + width / 2, interpolation="nearest")
      if key == "brain_mask":
        mask = np.ma.masked_equal(np.asarray(samples[group][key]) > 0, False)
        ax.imshow(mask, cmap="autumn", alpha=0.35, interpolation="nearest")
      elif outline.get(key) in samples[group]:
        sphere = np.asarray(samples[group][outline[key]]) > 0
        if sphere.any():
          ax.contour(sphere, levels=[0.5], colors="r", linewidths=0.8)
      ax.set_title(f"{group}: {label}", fontsize=9)
  fig.suptitle(f"Sample slices per group (W {width} / L {level})")
  fig.tight_layout()
  return save(fig, path)


def save(fig, path: Path) -> Path:
  """Writes atomically (temp file + rename) so a killed run leaves no half PNG."""
  path = Path(path)
  with files.atomic_path(path) as temporary:
    fig.savefig(temporary, dpi=90, format="png")
  plt.close(fig)
  return path


def forest_plot(panels: dict, path: Path,
                title: str = "Cross-group differences (positive = worse on the other group)"
                ) -> Path:
  """One panel per metric: a row per comparison with its difference, 95% interval and
  minimum detectable difference.

  `panels[metric]` is {"unit": str, "rows": [{label, difference, ci, mdd}]} (mdd may
  be NaN). The band around zero is +-MDD: a difference inside it is one these test
  sets could not have told from none.
  """
  names = [m for m in panels if panels[m]["rows"]]
  if not names:
    fig, ax = plt.subplots(figsize=(6, 1.2))
    ax.text(0.5, 0.5, "n/a: no cross-group comparison was run", ha="center", va="center")
    ax.axis("off")
    return save(fig, path)
  heights = [max(len(panels[m]["rows"]), 1) * 0.32 + 0.9 for m in names]
  fig, axes = plt.subplots(len(names), 1, squeeze=False, figsize=(7.5, sum(heights)),
                           gridspec_kw=dict(height_ratios=heights))
  for ax, metric in zip(axes[:, 0], names):
    rows = panels[metric]["rows"]
    y = np.arange(len(rows))[::-1]
    for yi, row in zip(y, rows):
      low, high = row["ci"]
      mdd = row.get("mdd", float("nan"))
      if np.isfinite(mdd):
        ax.plot([-mdd, mdd], [yi, yi], color="0.85", linewidth=7, solid_capstyle="butt",
                zorder=1)
      excludes_zero = low > 0 or high < 0
      color = "#c0392b" if excludes_zero else "#2c3e50"
      ax.plot([low, high], [yi, yi], color=color, linewidth=1.6, zorder=2)
      ax.plot(row["difference"], yi, "o", color=color, markersize=5, zorder=3)
    ax.axvline(0.0, color="0.4", linewidth=0.8)
    ax.set_yticks(y)
    ax.set_yticklabels([r["label"] for r in rows], fontsize=7)
    ax.set_xlabel(f"{metric} difference ({panels[metric]['unit']}); grey band: +-MDD "
                  "(80% power)", fontsize=8)
    ax.tick_params(axis="x", labelsize=7)
    ax.set_ylim(-0.7, len(rows) - 0.3)
  fig.suptitle(title, fontsize=10)
  fig.tight_layout()
  return save(fig, path)
