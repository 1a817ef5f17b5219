"""The 3D ResNet of the sphere experiments (paper section 3.3.2, as DESIGN.md reads it).

Stem: conv 7x7x7 stride 2 + BatchNorm + ReLU + max-pool 2x2x2. Then four scales of
two basic residual blocks (32/64/128/256), stride 2 in the first block of scales
2-4, global average pool, Dense(1000) + ReLU, and one logit.
"""
from typing import Sequence

import flax.linen as nn
import jax.numpy as jnp

from scanbias_jax.models.layers import ConvNormRelu, max_pool_2x


class BasicBlock3D(nn.Module):
  """Two 3x3x3 convolutions with an identity (or 1x1x1 projection) shortcut."""
  features: int
  strides: int = 1
  bn_momentum: float = 0.9
  dtype: jnp.dtype = jnp.float32
  conv: str = "auto"

  @nn.compact
  def __call__(self, x, train: bool):
    unit = dict(bn_momentum=self.bn_momentum, dtype=self.dtype, conv=self.conv)
    y = ConvNormRelu(self.features, 3, self.strides, **unit)(x, train)
    y = ConvNormRelu(self.features, 3, relu=False, **unit)(y, train)
    if x.shape != y.shape:
      x = ConvNormRelu(self.features, 1, self.strides, relu=False, **unit)(x, train)
    return nn.relu(x + y)


class ResNet3D(nn.Module):
  """[B, H, W, D, C] volume -> [B] logits."""
  widths: Sequence[int] = (32, 64, 128, 256)
  blocks_per_scale: int = 2
  stem_width: int = 32
  hidden: int = 1000
  stem_kernel: int = 7     # the paper's 7 x 7 x 7, stride 2: for 256 x 256 x 35 inputs
  stem_strides: int = 2
  bn_momentum: float = 0.9
  dtype: jnp.dtype = jnp.float32
  conv: str = "auto"  # convolution implementation (models/conv.py)

  @nn.compact
  def __call__(self, x, train: bool = False):
    x = x.astype(self.dtype)
    x = ConvNormRelu(self.stem_width, self.stem_kernel, self.stem_strides,
                     bn_momentum=self.bn_momentum,
                     dtype=self.dtype, conv=self.conv)(x, train)
    x = max_pool_2x(x)
    for scale, width in enumerate(self.widths):
      for block in range(self.blocks_per_scale):
        strides = 2 if scale > 0 and block == 0 else 1
        x = BasicBlock3D(width, strides, self.bn_momentum, self.dtype, self.conv)(x, train)
    x = x.mean(axis=(1, 2, 3))
    x = nn.relu(nn.Dense(self.hidden, dtype=self.dtype)(x))
    return nn.Dense(1, dtype=self.dtype)(x)[:, 0]
