"""The noise-texture probe: a classical ceiling for "Name the X".

A study becomes a short vector of what a CT physicist measures in the brain of its
ingested HU volume (`texture_features`): the radially averaged noise power in
fixed frequency bands (detrended brain squares, as `ct_stats` measures NPS), the
SD of a high-pass image, and the brain's mean HU. A standardised logistic
regression (scikit-learn) fitted on the training split scores the test split
(`fit_and_score`). No deep learning, seconds of CPU: if the probe separates the
groups the images carry the signal, and a CNN below the probe has not found all of it.
"""
import numpy as np
from scipy import ndimage
from sklearn.impute import SimpleImputer
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from scanbias_jax.evaluate import bootstrap, ct_stats

FREQUENCIES_PER_MM = (0.05, 0.10, 0.15, 0.20, 0.25, 0.30, 0.40, 0.50, 0.60)
HIGH_PASS_MM = 1.5
MIN_BRAIN_FRACTION = 0.02     # slices whose mask covers less of the image are skipped


def feature_names() -> list[str]:
  return [f"log_nps_{f:.2f}" for f in FREQUENCIES_PER_MM] + ["log_highpass_sd", "brain_mean_hu"]


def brain_mask(volume: np.ndarray, pixel_mm: float) -> np.ndarray:
  """bool [i, j, k]: the intracranial soft tissue of each slice of a volume [i, j, k],
  found by thresholds alone (for exports without a prepared brain mask)."""
  return np.stack([ct_stats.brain_of_slice(volume[..., k], pixel_mm)
                   for k in range(volume.shape[-1])], axis=-1)


def texture_features(volume: np.ndarray, mask: np.ndarray, pixel_mm: float) -> np.ndarray:
  """float64 [len(feature_names())] of one HU volume [i, j, k] and its brain mask.

  The NPS is read (log, interpolated) at FREQUENCIES_PER_MM; frequencies beyond the
  grid's are NaN (`fit_and_score` imputes them).
  Raises ValueError when no brain square fits (the mask is empty or too thin).
  """
  volume = np.asarray(volume, np.float32)
  inner = ndimage.binary_erosion(np.asarray(mask, bool), iterations=1,
                                 structure=np.ones((3, 3, 1), bool))
  slices = [k for k in range(volume.shape[-1])
            if inner[..., k].mean() >= MIN_BRAIN_FRACTION]
  rois = []
  for k in slices:
    rois += ct_stats.detrended_rois(volume[..., k], inner[..., k], pixel_mm)
  if not rois:
    raise ValueError("no brain square fits inside the mask: no texture to measure")
  freq, nps = ct_stats.radial_nps(rois, pixel_mm)
  freq, nps = freq[1:], nps[1:]          # the first bin holds the detrended-away DC
  bands = list(np.interp(FREQUENCIES_PER_MM, freq, np.log(nps), left=np.nan, right=np.nan))
  sigma = (HIGH_PASS_MM / pixel_mm, HIGH_PASS_MM / pixel_mm, 0.0)
  high = volume - ndimage.gaussian_filter(volume, sigma)
  brain = inner[..., slices]
  high_sd = float(high[..., slices][brain].std())
  return np.array(bands + [np.log(high_sd), float(np.mean(volume[..., slices][brain]))])


def fit_and_score(train_x, train_y, test_x, regularization: float = 1.0) -> np.ndarray:
  """Test-split probabilities [n_test, n_classes] of a standardised logistic regression
  (L2, C = `regularization`) fitted on the training split; columns follow sorted labels."""
  # NaN (frequencies beyond a grid) take the training mean; all-NaN columns become 0.
  model = make_pipeline(SimpleImputer(strategy="mean", keep_empty_features=True),
                        StandardScaler(),
                        LogisticRegression(C=regularization, max_iter=5000))
  model.fit(np.asarray(train_x, np.float64), np.asarray(train_y))
  return model.predict_proba(np.asarray(test_x, np.float64))


def within_cluster_shuffles(rng: np.random.Generator, labels, clusters,
                            n_permutations: int) -> np.ndarray:
  """(n_permutations, N) copies of `labels`, each shuffled within every cluster."""
  _, cluster_of = np.unique(clusters, return_inverse=True)
  home = np.argsort(cluster_of, kind="stable")           # positions grouped by cluster
  moved = np.argsort(cluster_of[None] + rng.random((n_permutations, labels.size)), axis=1)
  shuffled = np.empty((n_permutations, labels.size), labels.dtype)
  shuffled[:, home] = labels[moved]                      # same cluster sizes, same order
  return shuffled


def permutation_p_value(rng: np.random.Generator, labels, scores,
                        n_permutations: int = 10000, clusters=None) -> float:
  """One-sided p-value of AUROC(labels, scores) against the labels shuffled over the
  same scores: (1 + #{shuffled AUROC >= observed}) / (1 + n_permutations).

  The scores stay fixed, so this tests the scored test set (the CNN's member-averaged
  output or the probe's) without retraining anything. With `clusters` the labels are
  shuffled within each cluster only (a traveling head's acquisitions swap vendors),
  the exchangeability the design gives under the null.
  """
  labels = np.asarray(labels).astype(int).ravel()
  scores = np.asarray(scores, np.float64).ravel()
  observed = bootstrap.resampled_auroc(labels[None], scores[None])[0]
  if clusters is None:
    shuffled = rng.permuted(np.tile(labels, (n_permutations, 1)), axis=1)
  else:
    shuffled = within_cluster_shuffles(rng, labels, np.asarray(clusters).ravel(),
                                       n_permutations)
  null = bootstrap.resampled_auroc(shuffled, np.broadcast_to(scores, shuffled.shape))
  return float((1 + np.sum(null >= observed - 1e-12)) / (1 + n_permutations))
