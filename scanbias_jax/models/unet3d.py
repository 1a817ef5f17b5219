"""The 3D U-Net of the skull segmentation experiment (paper section 3.3.3).

Five levels (8/16/32/64/128), two 3x3x3 conv + BatchNorm + ReLU per level, max-pool
2 down, transposed conv 2 up, skip connections by concatenation, and a 1x1x1 conv
to one channel whose sigmoid is the mask probability.
"""
from typing import Sequence

import flax.linen as nn
import jax.numpy as jnp

from scanbias_jax.models.layers import ConvNormRelu, max_pool_2x


class DoubleConv(nn.Module):
  features: int
  bn_momentum: float = 0.9
  dtype: jnp.dtype = jnp.float32

  @nn.compact
  def __call__(self, x, train: bool):
    for _ in range(2):
      x = ConvNormRelu(self.features, 3, bn_momentum=self.bn_momentum, dtype=self.dtype)(x, train)
    return x


class UNet3D(nn.Module):
  """[B, H, W, D, C] volume -> [B, H, W, D] mask logits."""
  widths: Sequence[int] = (8, 16, 32, 64, 128)
  bn_momentum: float = 0.9
  dtype: jnp.dtype = jnp.float32

  @nn.compact
  def __call__(self, x, train: bool = False):
    factor = 2 ** (len(self.widths) - 1)
    if any(size % factor for size in x.shape[1:-1]):
      raise ValueError(f"UNet3D with {len(self.widths)} levels needs spatial sizes divisible "
                       f"by {factor}; got {x.shape[1:-1]}")
    x = x.astype(self.dtype)
    skips = []
    for width in self.widths[:-1]:
      x = DoubleConv(width, self.bn_momentum, self.dtype)(x, train)
      skips.append(x)
      x = max_pool_2x(x)
    x = DoubleConv(self.widths[-1], self.bn_momentum, self.dtype)(x, train)
    for width, skip in zip(reversed(self.widths[:-1]), reversed(skips)):
      x = nn.ConvTranspose(width, (2, 2, 2), strides=(2, 2, 2), dtype=self.dtype)(x)
      x = jnp.concatenate([x, skip], axis=-1)
      x = DoubleConv(width, self.bn_momentum, self.dtype)(x, train)
    return nn.Conv(1, (1, 1, 1), dtype=self.dtype)(x)[..., 0]
