"""The 2D CNN of "Name the Manufacturer" (paper section 3.3.1).

Three blocks of conv 3x3 + BatchNorm + max-pool 2x2 (32/64/128 filters), then one
dense unit whose sigmoid is the probability of the positive vendor (or, with
`classes` > 1, one logit a class for a softmax: the audit's "Name the X"). The paper does
not name the activation; ReLU after BatchNorm is our reading.
"""
from typing import Sequence

import flax.linen as nn
import jax.numpy as jnp

from scanbias_jax.models.layers import ConvNormRelu, max_pool_2x


class ShallowCNN(nn.Module):
  """[B, H, W, 3] stacked slices -> [B] logits, or [B, classes] when classes > 1."""
  widths: Sequence[int] = (32, 64, 128)
  head: str = "flatten"  # "flatten" (the paper's dense layer) or "mean" (global average)
  bn_momentum: float = 0.9
  dtype: jnp.dtype = jnp.float32
  conv: str = "auto"  # convolution implementation (models/conv.py)
  classes: int = 1

  @nn.compact
  def __call__(self, x, train: bool = False):
    x = x.astype(self.dtype)
    for width in self.widths:
      # Conv bias is dropped: BatchNorm's offset makes it redundant.
      x = ConvNormRelu(width, 3, bn_momentum=self.bn_momentum, dtype=self.dtype,
                       conv=self.conv)(x, train)
      x = max_pool_2x(x)
    if self.head == "flatten":
      x = x.reshape((x.shape[0], -1))
    elif self.head == "mean":
      x = x.mean(axis=(1, 2))
    else:
      raise ValueError(f"unknown head {self.head!r}; expected 'flatten' or 'mean'")
    logits = nn.Dense(self.classes, dtype=self.dtype)(x)
    return logits[:, 0] if self.classes == 1 else logits
