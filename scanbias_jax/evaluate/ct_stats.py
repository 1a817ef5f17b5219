"""Statistics of a head-CT series as a physicist measures them, and their real ranges.

Works on any HU volume [slices, rows, cols] (from DICOM through its rescale), knows
nothing of the synthesizer: the head, skull and brain are found by thresholds and
morphology; noise and NPS come from ROI-detrended squares inside the brain; grey
and white matter are the two components of a Gaussian mixture of brain voxels.
`REAL_RANGES` are published ranges for routine non-contrast adult head CT
(sources in BUILD_NOTES.md, "Realism"); `out_of_range` compares.
"""
import numpy as np
from scipy import ndimage
from sklearn.mixture import GaussianMixture

REAL_RANGES = {
    "air_mean_hu": (-1010.0, -990.0),
    "air_sd_hu": (1.0, 4.0),
    "outside_field_hu": (-3100.0, -1000.0),
    "head_width_mm": (125.0, 175.0),
    "head_length_mm": (160.0, 215.0),
    "bone_hu": (1000.0, 2300.0),
    "skull_mm": (3.0, 12.0),
    "brain_hu": (20.0, 45.0),
    "grey_hu": (32.0, 48.0),
    "white_hu": (20.0, 36.0),
    "grey_white_hu": (4.0, 14.0),
    "noise_sd_hu": (1.8, 7.0),
    "nps_peak_per_mm": (0.10, 0.45),
    "nps_mean_per_mm": (0.10, 0.50),
    "nps_f50_per_mm": (0.15, 0.55),
    "nps_high_share": (0.0, 0.12),
}
ROI_MM = 16.0
HIGH_BAND = (0.6, 0.9)


def _head_and_brain(image, pixel_mm):
  head = ndimage.binary_fill_holes(ndimage.binary_opening(image > -300, iterations=2))
  bone = image > 300
  cavity = ndimage.binary_fill_holes(bone) & ~bone
  labels, count = ndimage.label(cavity)
  if count:
    sizes = ndimage.sum(cavity, labels, range(1, count + 1))
    cavity = labels == 1 + int(np.argmax(sizes))
  erode = max(1, int(round(3.0 / pixel_mm)))
  brain = ndimage.binary_erosion(cavity & (image > 0) & (image < 80), iterations=erode)
  return head, bone, cavity, brain


def brain_of_slice(image, pixel_mm):
  """bool mask of the intracranial soft tissue of one axial HU slice (eroded 3 mm)."""
  return _head_and_brain(image, pixel_mm)[3]


def detrended_rois(image, brain, pixel_mm):
  """Squares of ROI_MM wholly inside the brain (half-overlapping), each minus its
  least-squares quadratic surface."""
  return _square_rois(image, brain, max(8, int(round(ROI_MM / pixel_mm))))


def radial_nps(rois, pixel_mm):
  """(frequencies, radially averaged NPS) of detrended ROIs [k, n, n]."""
  rois = np.asarray(rois)
  n = rois.shape[-1]
  power = (np.abs(np.fft.fft2(rois)) ** 2).mean(0) * pixel_mm ** 2 / (n * n)
  f = np.hypot(*np.meshgrid(np.fft.fftfreq(n, pixel_mm), np.fft.fftfreq(n, pixel_mm)))
  step = 1.0 / (n * pixel_mm)
  bins = np.arange(0, f.max() + step, step)
  index = np.digitize(f.ravel(), bins) - 1
  total = np.bincount(index, power.ravel(), len(bins))
  count = np.bincount(index, minlength=len(bins))
  keep = count > 0
  return (bins[keep] + step / 2), total[keep] / count[keep]


def nps_summary(freq, nps):
  peak = int(np.argmax(nps))
  above = np.flatnonzero((freq > freq[peak]) & (nps < 0.5 * nps[peak]))
  f50 = float(freq[above[0]]) if len(above) else float(freq[-1])
  band = (freq >= HIGH_BAND[0]) & (freq <= HIGH_BAND[1])
  # NPS mean frequency: power-weighted over the 2D plane (annulus area ~ f).
  weights = nps * freq
  out = {"nps_peak_per_mm": float(freq[peak]),
         "nps_mean_per_mm": float((freq * weights).sum() / weights.sum()),
         "nps_f50_per_mm": f50}
  if freq[-1] >= HIGH_BAND[1]:
    out["nps_high_share"] = float(nps[band].mean() / nps[peak])
  return out


def measure(volume: np.ndarray, pixel_mm: float) -> dict:
  """Every statistic of REAL_RANGES that the series allows (a 5 mm axial series)."""
  volume = np.asarray(volume, np.float32)
  parts = [_head_and_brain(s, pixel_mm) for s in volume]
  areas = np.array([p[0].sum() for p in parts])
  biggest = int(np.argmax(areas))
  # Supratentorial slices: those whose cavity is at least 60 % of the largest.
  cavities = np.array([p[2].sum() for p in parts])
  upper = [i for i in range(len(volume)) if cavities[i] >= 0.6 * cavities.max()]
  head, bone, _, _ = parts[biggest]
  rows, cols = np.nonzero(head)
  out = {"head_width_mm": float((cols.max() - cols.min() + 1) * pixel_mm),
         "head_length_mm": float((rows.max() - rows.min() + 1) * pixel_mm)}
  out["outside_field_hu"] = float(volume.min())
  far = ~ndimage.binary_dilation(head, iterations=max(1, int(round(10 / pixel_mm))))
  n = volume.shape[-1]
  r, c = np.mgrid[:n, :n] - (n - 1) / 2
  in_field = np.hypot(r, c) < 0.45 * n        # well inside any reconstruction circle
  air = volume[biggest][far & in_field & (volume[biggest] > -1100) & (volume[biggest] < -900)]
  out["air_mean_hu"], out["air_sd_hu"] = float(air.mean()), float(air.std())
  skull = np.concatenate([volume[i][parts[i][1]] for i in upper])
  out["bone_hu"] = float(np.percentile(skull, 95))
  out["skull_mm"] = _skull_thickness(bone, pixel_mm)
  brain = np.concatenate([volume[i][parts[i][3]] for i in upper])
  out["brain_hu"] = float(np.median(brain))
  tissue = brain[(brain > 12) & (brain < 60)].reshape(-1, 1)
  mixture = GaussianMixture(2, random_state=0, means_init=[[28.0], [40.0]]).fit(tissue)
  white, grey = sorted(float(m) for m in mixture.means_.ravel())
  out.update(grey_hu=grey, white_hu=white, grey_white_hu=grey - white)
  rois = white_matter_rois(volume[upper], [parts[i][3] for i in upper], pixel_mm,
                           0.5 * (grey + white))
  out["noise_sd_hu"] = float(np.median([r.std() for r in rois]))
  out.update(nps_summary(*radial_nps(rois, pixel_mm)))
  return out


def white_matter_rois(volume, brains, pixel_mm, middle_hu):
  """Detrended ROIs wholly inside white matter (the brain where a 2 mm-smoothed image
  is below the grey-white midpoint, eroded 2 mm): homogeneous tissue, so that the
  anatomy's own texture does not enter the noise and its spectrum."""
  rois = []
  for image, brain in zip(volume, brains):
    smooth = ndimage.gaussian_filter(image, 2.0 / pixel_mm)
    white_matter = ndimage.binary_erosion(brain & (smooth < middle_hu),
                                          iterations=max(1, int(round(2.0 / pixel_mm))))
    rois += detrended_rois(image, white_matter, pixel_mm)
  if not rois:
    raise ValueError("no white-matter ROI of the brain fits: cannot measure noise")
  return rois


def brain_nps(volume: np.ndarray, pixel_mm: float, middle_hu: float = 33.0):
  """(frequencies, NPS) measured in the white matter of a few axial slices."""
  volume = np.asarray(volume, np.float32)
  brains = [_head_and_brain(s, pixel_mm)[3] for s in volume]
  return radial_nps(white_matter_rois(volume, brains, pixel_mm, middle_hu), pixel_mm)


LINE_ROI_MM = 32.0
LINE_BAND_PER_MM = (0.45, 0.9)  # around a ~1 mm grid's Nyquist; above the falx's axis line


def nps_line_ratio(volume: np.ndarray, pixel_mm: float, band=LINE_BAND_PER_MM):
  """(ratio, (fy, fx)): the strongest single bin of the brain's 2-D NPS over the median
  of its annulus, within `band` (/mm). Hann-windowed, quadratic-detrended LINE_ROI_MM
  squares of the brain, so that no ROI edge puts its own cross on the axes. Noise
  and anatomy spread over the annulus read ~2; a periodic pattern (a sampling grid's
  Nyquist line) reads far above."""
  volume = np.asarray(volume, np.float32)
  n = max(8, int(round(LINE_ROI_MM / pixel_mm)))
  window = np.outer(np.hanning(n), np.hanning(n))
  rois = [roi * window for image in volume
          for roi in _square_rois(image, brain_of_slice(image, pixel_mm), n)]
  if not rois:
    raise ValueError("no brain ROI fits: cannot measure the 2-D NPS")
  power = (np.abs(np.fft.fft2(np.asarray(rois))) ** 2).mean(0)
  f = np.fft.fftfreq(n, pixel_mm)
  radius = np.hypot(*np.meshgrid(f, f, indexing="ij"))
  annulus = np.floor(radius * n * pixel_mm).astype(int)
  median = np.array([np.median(power[annulus == k]) for k in range(annulus.max() + 1)])
  ratio = np.where((radius >= band[0]) & (radius <= band[1]), power / median[annulus], 0.0)
  at = np.unravel_index(np.argmax(ratio), ratio.shape)
  return float(ratio[at]), (float(f[at[0]]), float(f[at[1]]))


def _square_rois(image, brain, n):
  """Half-overlapping n x n squares wholly inside `brain`, each minus its quadratic."""
  yy, xx = np.mgrid[:n, :n] / n - 0.5
  design = np.stack([np.ones_like(xx), xx, yy, xx * xx, yy * yy, xx * yy], -1).reshape(-1, 6)
  corners = [(r, c) for r in range(0, image.shape[0] - n, n // 2)
             for c in range(0, image.shape[1] - n, n // 2) if brain[r:r + n, c:c + n].all()]
  if not corners:
    return []
  patches = np.stack([image[r:r + n, c:c + n].astype(np.float64).ravel() for r, c in corners])
  residual = patches - patches @ (design @ np.linalg.pinv(design)).T
  return list(residual.reshape(-1, n, n))


def _skull_thickness(bone, pixel_mm):
  """Median run of bone along 36 rays from the cavity centre (perpendicular walls)."""
  rows, cols = np.nonzero(ndimage.binary_fill_holes(bone))
  centre = np.array([rows.mean(), cols.mean()])
  runs = []
  for angle in np.linspace(0, 2 * np.pi, 36, endpoint=False):
    step = np.array([np.sin(angle), np.cos(angle)]) * 0.25
    points = centre + np.arange(0, 2 * max(bone.shape))[:, None] * step
    points = points[(points >= 0).all(1) & (points[:, 0] < bone.shape[0] - 1)
                    & (points[:, 1] < bone.shape[1] - 1)]
    hits = bone[np.round(points[:, 0]).astype(int), np.round(points[:, 1]).astype(int)]
    if hits.any():
      first = int(np.argmax(hits))
      after = np.flatnonzero(~hits[first:])
      runs.append((after[0] if len(after) else len(hits) - first) * 0.25 * pixel_mm)
  return float(np.median(runs))


def out_of_range(stats: dict, ranges=REAL_RANGES) -> dict:
  """{name: (value, (lo, hi))} for each measured statistic outside its range."""
  return {k: (v, ranges[k]) for k, v in stats.items()
          if k in ranges and not ranges[k][0] <= v <= ranges[k][1]}
