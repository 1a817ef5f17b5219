"""Figures: PNG files made with matplotlib's Agg backend (no display needed)."""
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402


def vendor_slices(images: dict[str, np.ndarray], path: Path, window=(40, 80),
                  zoom: int = 4) -> Path:
  """One axial slice per vendor at a brain window, with a zoomed centre patch.

  `images` maps vendor name to a 2-D HU slice; `window` is (level, width).
  """
  level, width = window
  names = list(images)
  fig, axes = plt.subplots(2, len(names), figsize=(3.2 * len(names), 6.4),
                           squeeze=False)
  for col, name in enumerate(names):
    image = images[name]
    h, w = image.shape
    patch = image[h // 2 - h // (2 * zoom):h // 2 + h // (2 * zoom),
                  w // 2 - w // (2 * zoom):w // 2 + w // (2 * zoom)]
    for row, shown in enumerate((image, patch)):
      ax = axes[row, col]
      ax.imshow(shown, cmap="gray", vmin=level - width / 2, vmax=level + width / 2,
                interpolation="nearest")
      ax.set_axis_off()
    axes[0, col].set_title(name)
  axes[1, 0].text(0, -2, f"centre x{zoom}", fontsize=8)
  fig.suptitle(f"Same head, each vendor's scanner (W {width} / L {level})")
  fig.tight_layout()
  path.parent.mkdir(parents=True, exist_ok=True)
  fig.savefig(path, dpi=100)
  plt.close(fig)
  return path
