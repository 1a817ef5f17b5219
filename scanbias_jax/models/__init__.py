"""The paper's three networks (Flax Linen) and a registry by name."""
from scanbias_jax.models.registry import MODELS, build
from scanbias_jax.models.resnet3d import ResNet3D
from scanbias_jax.models.shallow_cnn import ShallowCNN
from scanbias_jax.models.unet3d import UNet3D
