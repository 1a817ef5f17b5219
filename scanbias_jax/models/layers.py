"""Building blocks shared by the three networks."""
import functools
import itertools

import flax.linen as nn
import jax
import jax.numpy as jnp

from scanbias_jax.models.conv import conv_function


def max_pool_2x(x: jnp.ndarray) -> jnp.ndarray:
  """Max pooling with window 2 and stride 2 over every spatial axis of [B, ..., C].

  An odd spatial size is padded with -inf at the end (as padding="SAME" would).
  Written as reshape + max instead of `nn.max_pool` because the gradient of
  `reduce_window` is a select-and-scatter, which XLA has no deterministic GPU
  kernel for (compilation fails under --xla_gpu_deterministic_ops); the gradient
  of `max` over an axis is an ordinary elementwise mask.
  """
  spatial = x.shape[1:-1]
  pads = [(0, 0)] + [(0, size % 2) for size in spatial] + [(0, 0)]
  if any(high for _, high in pads):
    x = jnp.pad(x, pads, constant_values=-jnp.inf)
  return _max_pool_even(x)


def _windows(x):
  """x [B, 2h, 2w, ..., C] -> ([B, h, 2, w, 2, ..., C], the window axes)."""
  shape = [x.shape[0]]
  for size in x.shape[1:-1]:
    shape += [size // 2, 2]
  return x.reshape(shape + [x.shape[-1]]), tuple(2 + 2 * i for i in range(x.ndim - 2))


@jax.custom_vjp
def _max_pool_even(x):
  # Not differentiated (evaluation): the maximum of the window's 2^n strided slices, one
  # elementwise loop, the same values as the windowed `max`, which XLA:CPU ran as a
  # reduction 2-8x slower (16 x 32 x 32 x 8 x 32: 13.7 -> 1.6 ms; BUILD_NOTES, "Performance").
  spatial = x.ndim - 2
  parts = [x[(slice(None), *[slice(o, None, 2) for o in offsets], slice(None))]
           for offsets in itertools.product((0, 1), repeat=spatial)]
  return functools.reduce(jnp.maximum, parts)


def _max_pool_even_fwd(x):
  # Differentiated: the windowed `max`. The backward finds each window's maximum by
  # equality with y; with the slices form XLA fused the producer (a convolution) into
  # the eight slices and recomputed it with other rounding, so some windows matched
  # nothing and lost their gradient (tests/test_ensemble.py caught it).
  windows, axes = _windows(x)
  y = windows.max(axis=axes)
  return y, (x, y)


def _max_pool_even_bwd(residuals, dy):
  """JAX's own gradient of `max` (ties share the gradient equally), bit for bit,
  with the tie count summed from the window's static slices: XLA:CPU ran the
  reduction over the interleaved window axes 3-7x slower (BUILD_NOTES.md)."""
  x, y = residuals
  windows, axes = _windows(x)
  at_max = windows == jnp.expand_dims(y, axes)
  count = 0
  for offsets in itertools.product((0, 1), repeat=len(axes)):
    index = [slice(None)] * at_max.ndim
    for axis, offset in zip(axes, offsets):
      index[axis] = slice(offset, offset + 1)
    count = count + at_max[tuple(index)].astype(dy.dtype)
  dx = jnp.where(at_max, jnp.expand_dims(dy, axes) / count, 0)
  return (dx.reshape(x.shape).astype(x.dtype),)


_max_pool_even.defvjp(_max_pool_even_fwd, _max_pool_even_bwd)


class ConvNormRelu(nn.Module):
  """Convolution, BatchNorm, ReLU: the unit every network here is built from."""
  features: int
  kernel_size: int = 3
  strides: int = 1
  relu: bool = True
  bn_momentum: float = 0.9
  dtype: jnp.dtype = jnp.float32
  conv: str = "auto"  # models/conv.py: "xla", "depth_folded" or "auto"

  @nn.compact
  def __call__(self, x, train: bool):
    ndim = x.ndim - 2
    x = nn.Conv(self.features, (self.kernel_size,) * ndim, strides=(self.strides,) * ndim,
                use_bias=False, dtype=self.dtype,
                conv_general_dilated=conv_function(self.conv))(x)
    x = nn.BatchNorm(use_running_average=not train, momentum=self.bn_momentum,
                     dtype=self.dtype)(x)
    return nn.relu(x) if self.relu else x
