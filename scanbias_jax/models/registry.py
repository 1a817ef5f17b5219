"""Models by name, so configs can say `model = "resnet3d"`."""
from typing import Any

import flax.linen as nn
import jax.numpy as jnp

from scanbias_jax.models.resnet3d import ResNet3D
from scanbias_jax.models.shallow_cnn import ShallowCNN
from scanbias_jax.models.unet3d import UNet3D

MODELS = {"shallow_cnn": ShallowCNN, "resnet3d": ResNet3D, "unet3d": UNet3D}
DTYPES = {"float32": jnp.float32, "bfloat16": jnp.bfloat16}


def build(name: str, compute_dtype: str = "float32", **kwargs: Any) -> nn.Module:
  """The model `name` with its fields from kwargs; parameters always float32."""
  if name not in MODELS:
    raise ValueError(f"unknown model {name!r}; known: {sorted(MODELS)}")
  if compute_dtype not in DTYPES:
    raise ValueError(f"unknown compute_dtype {compute_dtype!r}; known: {sorted(DTYPES)}")
  return MODELS[name](dtype=DTYPES[compute_dtype], **kwargs)
