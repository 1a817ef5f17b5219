"""Training losses and the validation metrics computed on device each epoch.

Everything here takes float32 logits (the engine casts bfloat16 outputs up first).
Losses return per-sample values; metrics return scalars over a whole split.
"""
import jax
import jax.numpy as jnp
import optax
import scipy.special


def sigmoid_cross_entropy(logits: jnp.ndarray, labels: jnp.ndarray) -> jnp.ndarray:
  """[B] logits, [B] labels in {0, 1} -> [B] losses."""
  return optax.sigmoid_binary_cross_entropy(logits, labels.astype(logits.dtype))


def soft_dice_loss(logits: jnp.ndarray, masks: jnp.ndarray, eps: float = 1.0) -> jnp.ndarray:
  """[B, ...] logits, [B, ...] masks -> [B] soft Dice losses (Milletari et al.).

  `eps` (1 voxel) keeps an empty mask with an empty prediction at loss 0.
  """
  probs = jnp.reshape(jax.nn.sigmoid(logits), (logits.shape[0], -1))
  masks = jnp.reshape(masks, (masks.shape[0], -1)).astype(probs.dtype)
  overlap = jnp.sum(probs * masks, axis=1)
  total = jnp.sum(probs, axis=1) + jnp.sum(masks, axis=1)
  return 1.0 - (2.0 * overlap + eps) / (total + eps)


def softmax_cross_entropy(logits: jnp.ndarray, labels: jnp.ndarray) -> jnp.ndarray:
  """[B, C] logits, [B] class indices (as floats, like every label here) -> [B] losses."""
  return optax.softmax_cross_entropy_with_integer_labels(logits, labels.astype(jnp.int32))


LOSSES = {"sigmoid_cross_entropy": sigmoid_cross_entropy, "soft_dice": soft_dice_loss,
          "softmax_cross_entropy": softmax_cross_entropy}
# Logits -> probabilities of each loss: one probability per sample (or voxel) for the
# sigmoid losses, a distribution over the classes (last axis) for the softmax.
ACTIVATIONS = {"sigmoid_cross_entropy": "sigmoid", "soft_dice": "sigmoid",
               "softmax_cross_entropy": "softmax"}
ON_DEVICE = {"sigmoid": jax.nn.sigmoid, "softmax": jax.nn.softmax}
ON_HOST = {"sigmoid": scipy.special.expit,   # numpy in, numpy out: no program to compile
           "softmax": lambda logits: scipy.special.softmax(logits, axis=-1)}


def hard_dice(logits: jnp.ndarray, masks: jnp.ndarray) -> jnp.ndarray:
  """[B] Dice of the mask thresholded at probability 0.5; two empty masks score 1."""
  predicted = jnp.reshape(logits > 0, (logits.shape[0], -1))
  truth = jnp.reshape(masks > 0.5, (masks.shape[0], -1))
  overlap = jnp.sum(predicted & truth, axis=1)
  total = jnp.sum(predicted, axis=1) + jnp.sum(truth, axis=1)
  return jnp.where(total > 0, 2.0 * overlap / jnp.maximum(total, 1), 1.0)


def auroc(scores: jnp.ndarray, labels: jnp.ndarray) -> jnp.ndarray:
  """Area under the ROC curve as the Mann-Whitney statistic over all pairs.

  O(N^2) in memory, which is fine for validation sets of a few thousand; ties
  count one half, as in scikit-learn. NaN when a class is absent.
  """
  positive = labels > 0.5
  negative = ~positive
  above = (scores[:, None] > scores[None, :]).astype(jnp.float32)
  tied = (scores[:, None] == scores[None, :]).astype(jnp.float32)
  pairs = positive[:, None] & negative[None, :]
  wins = jnp.sum(jnp.where(pairs, above + 0.5 * tied, 0.0))
  count = jnp.sum(pairs)
  return jnp.where(count > 0, wins / jnp.maximum(count, 1), jnp.nan)


def classification_metrics(logits, labels) -> dict:
  """Validation loss, accuracy (threshold 0.5) and AUROC of [N] logits."""
  correct = (logits > 0) == (labels > 0.5)
  return {"val_loss": sigmoid_cross_entropy(logits, labels).mean(),
          "val_accuracy": correct.astype(jnp.float32).mean(),
          "val_auroc": auroc(logits, labels)}


def multiclass_metrics(logits, labels) -> dict:
  """Validation loss, accuracy, balanced accuracy (mean recall over the classes present)
  and macro one-vs-rest AUROC of [N, C] logits and [N] class indices."""
  labels = labels.astype(jnp.int32)
  classes = logits.shape[-1]
  predicted = logits.argmax(-1)
  onehot = jax.nn.one_hot(labels, classes)
  counts = onehot.sum(0)
  recall = jnp.sum(onehot * (predicted == labels)[:, None], axis=0) / jnp.maximum(counts, 1)
  present = counts > 0
  probs = jax.nn.softmax(logits)
  per_class = jnp.stack([auroc(probs[:, c], onehot[:, c]) for c in range(classes)])
  return {"val_loss": softmax_cross_entropy(logits, labels).mean(),
          "val_accuracy": (predicted == labels).astype(jnp.float32).mean(),
          "val_balanced_accuracy": jnp.sum(jnp.where(present, recall, 0.0)) / present.sum(),
          "val_auroc": jnp.nanmean(per_class)}


def segmentation_metrics(logits, masks) -> dict:
  """Validation soft Dice loss and mean hard Dice of [N, ...] logits."""
  return {"val_loss": soft_dice_loss(logits, masks).mean(),
          "val_dice": hard_dice(logits, masks).mean()}


METRICS = {"sigmoid_cross_entropy": classification_metrics, "soft_dice": segmentation_metrics,
           "softmax_cross_entropy": multiclass_metrics}
