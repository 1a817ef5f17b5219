"""Does this jaxlib compile the project's reductions right? jax-ml/jax#39103 (jaxlib
0.10.2 on CPU) miscompiles a vmapped matrix-vector product followed by a reduction.

  python -m benchmarks.jit_numerics

Prints the issue's reproducer, then, for the project's vmapped-over-members programs at
the default shapes (the losses and validation metrics of train/losses.py, and BatchNorm
-style moments after a dense layer), the largest difference between the jitted program
and a float64 NumPy reference. A ratio column compares each with float32 rounding.
"""
import jax
import jax.numpy as jnp
import jaxlib
import numpy as np

from scanbias_jax.train import losses


def reproducer(dtype, n: int) -> tuple[float, float]:
  """(eager, jit) of the issue's program: the last row's sum of squares."""
  i = jnp.arange(n, dtype=dtype)
  x = jnp.stack((i, jnp.zeros_like(i), jnp.zeros_like(i)), axis=1)
  matrix = jnp.eye(3, dtype=dtype)

  def f(x):
    return jax.vmap(lambda row: jnp.sum((matrix @ row) ** 2))(x)
  return float(f(x)[-1]), float(jax.jit(f)(x)[-1])


def _sigmoid(x):
  return 1 / (1 + np.exp(-x))


def programs(rng) -> dict:
  """name -> (jitted value, float64 reference) over 2 members."""
  members, batch, shape = 2, 4, (32, 32, 16)
  logits = rng.normal(0, 2, (members, batch, *shape)).astype(np.float32)
  masks = (rng.random((members, batch, *shape)) < 0.3).astype(np.float32)
  p, m = _sigmoid(logits.astype(np.float64)), masks.astype(np.float64)
  soft = 1 - (2 * (p * m).sum((2, 3, 4)) + 1) / (p.sum((2, 3, 4)) + m.sum((2, 3, 4)) + 1)
  hard = (logits > 0) & (masks > 0.5)
  dice = 2 * hard.sum((2, 3, 4)) / ((logits > 0).sum((2, 3, 4)) + (masks > 0.5).sum((2, 3, 4)))
  scores = rng.normal(0, 2, (members, 256)).astype(np.float32)
  labels = (rng.random((members, 256)) < 0.5).astype(np.float32)
  bce = np.mean(np.logaddexp(0, scores) - labels * scores, axis=1)
  weights = rng.normal(0, 0.1, (64, 32)).astype(np.float32)
  features = rng.normal(0, 1, (members, 16 * 2048, 64)).astype(np.float32)
  hidden = features.astype(np.float64) @ weights
  moments = np.stack([hidden.mean(1), (hidden ** 2).mean(1)], 1)
  vm = lambda f: jax.jit(jax.vmap(f))  # pylint: disable=unnecessary-lambda-assignment
  return {
      "soft_dice_loss": (vm(losses.soft_dice_loss)(logits, masks), soft),
      "hard_dice": (vm(losses.hard_dice)(logits, masks), dice),
      "sigmoid_cross_entropy mean": (
          vm(lambda s, y: losses.sigmoid_cross_entropy(s, y).mean())(scores, labels), bce),
      "dense then moments": (vm(lambda x: jnp.stack([(x @ weights).mean(0),
                                                     ((x @ weights) ** 2).mean(0)]))(features),
                             moments)}


def main():
  print(f"jax {jax.__version__}, jaxlib {jaxlib.__version__}")
  for dtype, n in ((jnp.float32, 32_769),):
    eager, jitted = reproducer(dtype, n)
    print(f"reproducer {dtype.__name__} n={n}: eager {eager:.0f} jit {jitted:.0f} "
          f"({'WRONG' if eager != jitted else 'same'})")
  rng = np.random.default_rng(0)
  for name, (value, reference) in programs(rng).items():
    value = np.asarray(value, np.float64)
    error = np.max(np.abs(value - reference) / np.maximum(np.abs(reference), 1e-6))
    print(f"{name:28s} max relative error vs float64 {error:.2e} "
          f"({error / np.finfo(np.float32).eps:.1f} x float32 eps)")


if __name__ == "__main__":
  main()
