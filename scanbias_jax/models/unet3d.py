"""The 3D U-Net of the skull segmentation experiment (paper section 3.3.3).

Five levels (8/16/32/64/128), two 3x3x3 conv + BatchNorm + ReLU per level, max-pool
2 down, transposed conv 2 up, skip connections by concatenation, and a 1x1x1 conv
to one channel whose sigmoid is the mask probability.
"""
from typing import Sequence

import flax.linen as nn
import jax.numpy as jnp

from scanbias_jax.models.conv import conv_function
from scanbias_jax.models.layers import ConvNormRelu, max_pool_2x


class DoubleConv(nn.Module):
  features: int
  bn_momentum: float = 0.9
  dtype: jnp.dtype = jnp.float32
  conv: str = "auto"

  @nn.compact
  def __call__(self, x, train: bool):
    for _ in range(2):
      x = ConvNormRelu(self.features, 3, bn_momentum=self.bn_momentum, dtype=self.dtype,
                       conv=self.conv)(x, train)
    return x


class UpConv2x(nn.Module):
  """nn.ConvTranspose(features, (2, 2, 2), strides=2) with the same parameters, as one
  matrix product and a reshape: with stride = kernel the output voxels do not
  overlap, and XLA:CPU runs the product ~10x faster than the transposed convolution."""
  features: int
  dtype: jnp.dtype = jnp.float32

  @nn.compact
  def __call__(self, x):
    kernel = self.param("kernel", nn.initializers.lecun_normal(),
                        (2, 2, 2, x.shape[-1], self.features))
    bias = self.param("bias", nn.initializers.zeros_init(), (self.features,))
    x, kernel, bias = nn.dtypes.promote_dtype(x, kernel, bias, dtype=self.dtype)
    # lax.conv_transpose (transpose_kernel=False) applies the kernel flipped.
    y = jnp.einsum("bhwdc,ijkco->bhiwjdko", x, kernel[::-1, ::-1, ::-1])
    batch, height, width, depth = x.shape[:4]
    return y.reshape(batch, 2 * height, 2 * width, 2 * depth, self.features) + bias


class UNet3D(nn.Module):
  """[B, H, W, D, C] volume -> [B, H, W, D] mask logits."""
  widths: Sequence[int] = (8, 16, 32, 64, 128)
  bn_momentum: float = 0.9
  dtype: jnp.dtype = jnp.float32
  conv: str = "auto"  # convolution implementation (models/conv.py)

  @nn.compact
  def __call__(self, x, train: bool = False):
    factor = 2 ** (len(self.widths) - 1)
    if any(size % factor for size in x.shape[1:-1]):
      raise ValueError(f"UNet3D with {len(self.widths)} levels needs spatial sizes divisible "
                       f"by {factor}; got {x.shape[1:-1]}")
    x = x.astype(self.dtype)
    skips = []
    for width in self.widths[:-1]:
      x = DoubleConv(width, self.bn_momentum, self.dtype, self.conv)(x, train)
      skips.append(x)
      x = max_pool_2x(x)
    x = DoubleConv(self.widths[-1], self.bn_momentum, self.dtype, self.conv)(x, train)
    for level, (width, skip) in enumerate(zip(reversed(self.widths[:-1]), reversed(skips))):
      x = UpConv2x(width, self.dtype, name=f"ConvTranspose_{level}")(x)
      x = jnp.concatenate([x, skip], axis=-1)
      x = DoubleConv(width, self.bn_momentum, self.dtype, self.conv)(x, train)
    return nn.Conv(1, (1, 1, 1), dtype=self.dtype,
                   conv_general_dilated=conv_function(self.conv))(x)[..., 0]
