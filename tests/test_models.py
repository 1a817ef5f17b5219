"""The three networks: parameter counts at paper sizes, shapes, dtypes, pooling."""
import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from scanbias_jax import models
from scanbias_jax.models.layers import max_pool_2x

# (input shape at the paper's sizes, parameters, BatchNorm statistics, output shape)
PAPER = {
    "shallow_cnn": ((2, 256, 256, 3), 224_545, 448, (2,)),
    "resnet3d": ((2, 256, 256, 35, 1), 8_555_889, 4_800, (2,)),
    "unet3d": ((2, 256, 256, 32, 1), 1_412_505, 1_472, (2, 256, 256, 32)),
}
SMALL = {
    "shallow_cnn": ((3, 32, 32, 3), dict(widths=(4, 8, 8))),
    "resnet3d": ((3, 16, 16, 9, 1), dict(widths=(4, 4, 8, 8), stem_width=4, hidden=16)),
    "resnet3d_fine_stem": ((3, 16, 16, 8, 1), dict(widths=(4, 8), stem_width=4, hidden=16,
                                                   stem_kernel=3, stem_strides=1)),
    "unet3d": ((3, 16, 16, 8, 1), dict(widths=(2, 4, 8))),
}


def count(tree) -> int:
  return sum(int(np.prod(x.shape)) for x in jax.tree.leaves(tree))


@pytest.mark.parametrize("name", sorted(PAPER))
def test_parameter_counts_at_paper_sizes(name):
  shape, n_params, n_stats, out_shape = PAPER[name]
  model = models.build(name)
  variables = jax.eval_shape(lambda k: model.init(k, jnp.zeros(shape), train=False),
                             jax.random.key(0))
  assert count(variables["params"]) == n_params
  assert count(variables["batch_stats"]) == n_stats
  out = jax.eval_shape(lambda v: model.apply(v, jnp.zeros(shape), train=False), variables)
  assert out.shape == out_shape


@pytest.mark.parametrize("name", sorted(SMALL))
@pytest.mark.parametrize("compute_dtype", ["float32", "bfloat16"])
def test_small_models_run_in_both_modes_and_dtypes(name, compute_dtype):
  shape, kwargs = SMALL[name]
  model = models.build(name.removesuffix("_fine_stem"), compute_dtype, **kwargs)
  x = jax.random.normal(jax.random.key(1), shape)
  def run(key, x):
    variables = model.init(key, x, train=False)
    out, updates = model.apply(variables, x, train=True, mutable=["batch_stats"])
    evaluate = lambda x: model.apply(variables, x, train=False).astype(jnp.float32)
    return variables, out, updates, evaluate(x), evaluate(x[:1])

  variables, out, updates, batch, alone = jax.jit(run)(jax.random.key(0), x)
  assert all(p.dtype == jnp.float32 for p in jax.tree.leaves(variables["params"]))
  assert out.dtype == jnp.dtype(compute_dtype)
  assert out.shape[0] == shape[0] and bool(jnp.isfinite(out.astype(jnp.float32)).all())
  assert all(s.dtype == jnp.float32 for s in jax.tree.leaves(updates["batch_stats"]))
  # Eval mode reads the running statistics: a sample's output ignores its batch.
  tolerance = 1e-2 if compute_dtype == "bfloat16" else 1e-5
  np.testing.assert_allclose(alone[0], batch[0], rtol=tolerance, atol=tolerance)


@pytest.mark.parametrize("shape", [(2, 8, 6, 3), (2, 7, 9, 5, 2)])
def test_max_pool_2x_matches_flax_same_padding_and_gradient(shape):
  x = jax.random.normal(jax.random.key(0), shape)
  window = (2,) * (len(shape) - 2)
  expected = nn.max_pool(x, window, strides=window, padding="SAME")
  np.testing.assert_array_equal(jax.jit(max_pool_2x)(x), expected)
  grad = jax.jit(jax.grad(lambda x: max_pool_2x(x).sum()))(x)
  grad_flax = jax.jit(jax.grad(
      lambda x: nn.max_pool(x, window, strides=window, padding="SAME").sum()))(x)
  np.testing.assert_array_equal(grad, grad_flax)


@pytest.mark.parametrize("shape", [(2, 8, 6, 3), (2, 6, 4, 8, 2)])
def test_max_pool_2x_gradient_equals_jax_max_gradient_with_ties(shape):
  """Its custom gradient is JAX's gradient of `max` over the window (ties share it
  equally), bit for bit: rounded and rectified inputs make many ties."""
  x = jnp.maximum(jnp.round(2 * jax.random.normal(jax.random.key(0), shape)), 0)

  def reference(x):
    windows = x.reshape([x.shape[0]] + [n for s in x.shape[1:-1] for n in (s // 2, 2)]
                        + [x.shape[-1]])
    return windows.max(axis=tuple(range(2, x.ndim * 2 - 2, 2)))

  weights = jax.random.normal(jax.random.key(1), reference(x).shape)
  for fn in (jax.jit, lambda f: jax.jit(jax.vmap(f))):
    xs = x if fn is jax.jit else jnp.stack([x, -x])
    ws = weights if fn is jax.jit else jnp.stack([weights, weights])
    ours = fn(jax.grad(lambda x, w: (max_pool_2x(x) * w).sum()))(xs, ws)
    theirs = fn(jax.grad(lambda x, w: (reference(x) * w).sum()))(xs, ws)
    np.testing.assert_array_equal(ours, theirs)
  assert float((x == 0).mean()) > 0.3   # the ties are there


def test_unet_names_the_sizes_it_cannot_pool():
  model = models.build("unet3d", widths=(2, 4, 8))
  with pytest.raises(ValueError, match="divisible by 4"):
    model.init(jax.random.key(0), jnp.zeros((1, 16, 16, 6, 1)))


def test_registry_rejects_unknown_names():
  with pytest.raises(ValueError, match="unknown model"):
    models.build("vgg")
  with pytest.raises(ValueError, match="compute_dtype"):
    models.build("unet3d", "float16")


def test_fine_stem_keeps_twice_the_resolution_into_the_blocks():
  x = jnp.zeros((1, 32, 32, 16, 1))
  def stem_out(**kwargs):
    model = models.build("resnet3d", widths=(4,), stem_width=4, hidden=8, **kwargs)
    variables = model.init(jax.random.key(0), x)
    _, state = model.apply(variables, x, capture_intermediates=True, mutable=["intermediates"])
    return state["intermediates"]["BasicBlock3D_0"]["__call__"][0].shape
  assert stem_out() == (1, 8, 8, 4, 4)                       # the paper's stem: 4x down
  assert stem_out(stem_kernel=3, stem_strides=1) == (1, 16, 16, 8, 4)
