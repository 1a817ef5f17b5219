"""Tiny synthetic tasks and configs shared by the training tests (fast on 2 CPU cores)."""
import jax
import jax.numpy as jnp
import ml_collections

SMALL_MODELS = {
    "shallow_cnn": dict(widths=(4, 8, 8), head="mean"),
    "resnet3d": dict(widths=(4, 4, 8, 8), stem_width=4, hidden=16),
    "unet3d": dict(widths=(4, 8, 16)),
}


def config(model="shallow_cnn", **overrides) -> ml_collections.ConfigDict:
  loss = "soft_dice" if model == "unet3d" else "sigmoid_cross_entropy"
  c = ml_collections.ConfigDict(dict(
      model=model, model_kwargs=SMALL_MODELS[model], compute_dtype="float32", loss=loss,
      learning_rate=5e-3, batch_size=8, eval_batch_size=8, num_epochs=2,
      select_metric="val_dice" if loss == "soft_dice" else "val_accuracy",
      num_members=2, first_member=0, members_per_device=0, num_devices=1, keep_checkpoints=2,
      checkpoint_every_epochs=1, scan_unroll="never", bn_stats="ema", bn_stats_batches=0,
      parallel="dispatch",
      exact_reproducibility=False))
  c.update(overrides)
  return c


def split(x, y, n_train):
  return {"train": {"x": x[:n_train], "y": y[:n_train]}, "val": {"x": x[n_train:], "y": y[n_train:]}}


def bright_square_images(key, n=48, size=16, channels=3, n_train=32):
  """Label 1: a bright square somewhere in the noise; label 0: noise only."""
  k_noise, k_label, k_pos = jax.random.split(key, 3)
  x = jax.random.normal(k_noise, (n, size, size, channels))
  y = jax.random.bernoulli(k_label, 0.5, (n,)).astype(jnp.float32)
  corner = jax.random.randint(k_pos, (n, 2), 0, size - 6)
  grid = jnp.arange(size)
  inside = ((grid[None, :, None] >= corner[:, 0, None, None]) & (grid[None, :, None] < corner[:, 0, None, None] + 6)
            & (grid[None, None, :] >= corner[:, 1, None, None]) & (grid[None, None, :] < corner[:, 1, None, None] + 6))
  x = x + 2.0 * (inside * y[:, None, None])[..., None]
  return split(x, y, n_train)


def square_corner_images(key, n=96, size=16, channels=3, n_train=64, classes=3):
  """Label c: a bright square in corner c of the noise (a class per corner)."""
  k_noise, k_label = jax.random.split(key)
  y = jax.random.randint(k_label, (n,), 0, classes)
  corners = jnp.array([(0, 0), (0, size - 6), (size - 6, 0), (size - 6, size - 6)])[y]
  grid = jnp.arange(size)
  inside = ((grid[None, :, None] >= corners[:, 0, None, None])
            & (grid[None, :, None] < corners[:, 0, None, None] + 6)
            & (grid[None, None, :] >= corners[:, 1, None, None])
            & (grid[None, None, :] < corners[:, 1, None, None] + 6))
  x = jax.random.normal(k_noise, (n, size, size, channels)) + 2.0 * inside[..., None]
  return split(x, y.astype(jnp.float32), n_train)


def sphere_volumes(key, n=40, size=16, depth=16, n_train=32, with_masks=False):
  """Noise volumes [n, size, size, depth, 1] with a bright ball: in half of them
  (label 1) for classification, in all of them (its mask) for segmentation."""
  k_noise, k_label, k_centre = jax.random.split(key, 3)
  y = jax.random.bernoulli(k_label, 0.5, (n,)).astype(jnp.float32)
  if with_masks:
    y = jnp.ones_like(y)
  centre = jax.random.uniform(k_centre, (n, 3), minval=5.0, maxval=size - 5.0)
  grids = jnp.meshgrid(jnp.arange(size), jnp.arange(size), jnp.arange(depth), indexing="ij")
  d2 = sum((g[None] - centre[:, i, None, None, None]) ** 2 for i, g in enumerate(grids))
  ball = (d2 < 4.0 ** 2) & (y[:, None, None, None] > 0)
  x = 0.5 * jax.random.normal(k_noise, (n, size, size, depth)) + 2.0 * ball
  target = ball.astype(jnp.float32) if with_masks else y
  return split(x[..., None], target, n_train)


def bitwise_equal(a, b) -> bool:
  def raw(x):
    x = jax.random.key_data(x) if jax.dtypes.issubdtype(x.dtype, jax.dtypes.prng_key) else x
    return jax.device_get(x)
  same = jax.tree.map(lambda u, v: bool((raw(u) == raw(v)).all()), a, b)
  return jax.tree.structure(a) == jax.tree.structure(b) and all(jax.tree.leaves(same))


def max_abs_difference(a, b) -> float:
  return max(jax.tree.leaves(jax.tree.map(
      lambda u, v: float(jnp.max(jnp.abs(jnp.asarray(u, jnp.float32) - jnp.asarray(v, jnp.float32)))), a, b)))
