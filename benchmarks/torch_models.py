"""PyTorch twins of the three Flax networks, for benchmarks only (extra `bench`).

Same layers, shapes and parameter counts as scanbias_jax/models, float32:
  conv without bias + BatchNorm (Flax momentum 0.9 = torch 0.1, eps 1e-5) + ReLU;
  max-pool 2 whose odd sizes see -inf padding at the end (ceil_mode);
  'SAME' convolutions as XLA pads them: strided ones pad asymmetrically.
Inputs are in the Flax layout [B, H, W, (D,) C]; the models permute them to torch's
logical [B, C, H, W, (D)] order. In channels-last memory (`set_memory_format`) that
is a free view and every activation stays channels-last; in torch's default
(contiguous) memory the input is copied once. Which is faster depends on the model
and machine (bench_vs_torch.py tries both). Outputs are shaped as the Flax ones.

Initialisers differ, and torch keeps an unbiased running variance where Flax keeps
the biased one; with `load_flax_params` the outputs agree with Flax's to float
rounding. Not a runtime dependency of scanbias_jax.
"""
import math
from typing import Sequence

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

BN_MOMENTUM = 0.1  # torch's momentum weighs the new batch: 1 - Flax's 0.9
BN_EPS = 1e-5      # Flax BatchNorm's default epsilon


def param_count_torch(model: nn.Module) -> int:
  """Trainable parameters only (BatchNorm running statistics are buffers)."""
  return sum(p.numel() for p in model.parameters())


def set_memory_format(model: nn.Module, channels_last: bool) -> nn.Module:
  """Weights and activations of `model` in channels-last or contiguous memory."""
  ndim = next(m for m in model.modules() if isinstance(m, ConvNormRelu)).ndim
  fmt = torch.contiguous_format
  if channels_last:
    fmt = torch.channels_last_3d if ndim == 3 else torch.channels_last
  model.channels_last = channels_last
  return model.to(memory_format=fmt)


def same_pads(sizes: Sequence[int], kernel: int, stride: int) -> list[int]:
  """F.pad's list (last axis first) for XLA's 'SAME': total = max((ceil(n/s)-1)*s + k - n, 0),
  low = total // 2, the rest high."""
  pads = []
  for n in reversed(sizes):
    total = max((math.ceil(n / stride) - 1) * stride + kernel - n, 0)
    pads += [total // 2, total - total // 2]
  return pads


def to_torch_layout(x: torch.Tensor, channels_last: bool) -> torch.Tensor:
  """[B, ..., C] -> [B, C, ...]: a view (channels-last strides) or a contiguous copy."""
  x = x.permute(0, x.ndim - 1, *range(1, x.ndim - 1))
  return x if channels_last else x.contiguous()


def max_pool_2x(x: torch.Tensor) -> torch.Tensor:
  """Window 2, stride 2; ceil_mode = -inf padding of odd sizes at the end."""
  pool = F.max_pool3d if x.ndim == 5 else F.max_pool2d
  return pool(x, 2, 2, ceil_mode=True)


class ConvNormRelu(nn.Module):
  """Convolution ('SAME', no bias), BatchNorm, optional ReLU."""

  def __init__(self, in_features: int, features: int, kernel_size: int = 3, strides: int = 1,
               relu: bool = True, ndim: int = 3):
    super().__init__()
    conv = nn.Conv3d if ndim == 3 else nn.Conv2d
    norm = nn.BatchNorm3d if ndim == 3 else nn.BatchNorm2d
    self.kernel_size, self.strides, self.relu, self.ndim = kernel_size, strides, relu, ndim
    # Stride 1, odd kernel: 'SAME' is symmetric and the conv pads itself.
    padding = kernel_size // 2 if strides == 1 else 0
    self.conv = conv(in_features, features, kernel_size, strides, padding, bias=False)
    self.norm = norm(features, eps=BN_EPS, momentum=BN_MOMENTUM)

  def forward(self, x):
    if self.strides != 1:
      pads = same_pads(x.shape[2:], self.kernel_size, self.strides)
      if any(pads):
        x = F.pad(x, pads)
    x = self.norm(self.conv(x))
    return F.relu(x) if self.relu else x


class ShallowCNN(nn.Module):
  """[B, H, W, 3] -> [B] logits. `in_size` (H, W) sizes the flatten head."""

  def __init__(self, widths: Sequence[int] = (32, 64, 128), head: str = "flatten",
               in_size: Sequence[int] = (256, 256), in_channels: int = 3):
    super().__init__()
    self.channels_last = False
    if head not in ("flatten", "mean"):
      raise ValueError(f"unknown head {head!r}; expected 'flatten' or 'mean'")
    self.head = head
    chans = [in_channels] + list(widths)
    self.blocks = nn.ModuleList(ConvNormRelu(a, b, 3, ndim=2) for a, b in zip(chans, widths))
    h, w = in_size
    for _ in widths:
      h, w = math.ceil(h / 2), math.ceil(w / 2)
    self.dense = nn.Linear(widths[-1] * (h * w if head == "flatten" else 1), 1)

  def forward(self, x):
    x = to_torch_layout(x, self.channels_last)
    for block in self.blocks:
      x = max_pool_2x(block(x))
    if self.head == "flatten":
      x = x.permute(0, 2, 3, 1).flatten(1)  # Flax's [H, W, C] order
    else:
      x = x.mean(dim=(2, 3))
    return self.dense(x)[:, 0]


class BasicBlock3D(nn.Module):
  """Two 3x3x3 convolutions with an identity (or 1x1x1 projection) shortcut.

  Flax projects when the shapes differ; here: when stride or width changes (the
  same except for a stride-2 block on a 1-voxel-wide volume, which no config has).
  """

  def __init__(self, in_features: int, features: int, strides: int = 1):
    super().__init__()
    self.conv1 = ConvNormRelu(in_features, features, 3, strides)
    self.conv2 = ConvNormRelu(features, features, 3, relu=False)
    self.project = None
    if strides != 1 or in_features != features:
      self.project = ConvNormRelu(in_features, features, 1, strides, relu=False)

  def forward(self, x):
    y = self.conv2(self.conv1(x))
    if self.project is not None:
      x = self.project(x)
    return F.relu(x + y)


class ResNet3D(nn.Module):
  """[B, H, W, D, C] -> [B] logits."""

  def __init__(self, widths: Sequence[int] = (32, 64, 128, 256), blocks_per_scale: int = 2,
               stem_width: int = 32, hidden: int = 1000, in_channels: int = 1,
               stem_kernel: int = 7, stem_strides: int = 2):
    super().__init__()
    self.channels_last = False
    self.stem = ConvNormRelu(in_channels, stem_width, stem_kernel, stem_strides)
    blocks, features = [], stem_width
    for scale, width in enumerate(widths):
      for block in range(blocks_per_scale):
        blocks.append(BasicBlock3D(features, width, 2 if scale > 0 and block == 0 else 1))
        features = width
    self.blocks = nn.Sequential(*blocks)
    self.hidden = nn.Linear(features, hidden)
    self.out = nn.Linear(hidden, 1)

  def forward(self, x):
    x = max_pool_2x(self.stem(to_torch_layout(x, self.channels_last)))
    x = self.blocks(x).mean(dim=(2, 3, 4))
    return self.out(F.relu(self.hidden(x)))[:, 0]


class DoubleConv(nn.Sequential):

  def __init__(self, in_features: int, features: int):
    super().__init__(ConvNormRelu(in_features, features), ConvNormRelu(features, features))


class UNet3D(nn.Module):
  """[B, H, W, D, C] -> [B, H, W, D] mask logits."""

  def __init__(self, widths: Sequence[int] = (8, 16, 32, 64, 128), in_channels: int = 1):
    super().__init__()
    self.channels_last = False
    self.factor = 2 ** (len(widths) - 1)
    chans = [in_channels] + list(widths[:-1])
    self.down = nn.ModuleList(DoubleConv(a, b) for a, b in zip(chans, widths[:-1]))
    self.bottom = DoubleConv(widths[-2] if len(widths) > 1 else in_channels, widths[-1])
    self.up, self.decode = nn.ModuleList(), nn.ModuleList()
    features = widths[-1]
    for width in reversed(widths[:-1]):
      self.up.append(nn.ConvTranspose3d(features, width, 2, 2))
      self.decode.append(DoubleConv(2 * width, width))
      features = width
    self.final = nn.Conv3d(features, 1, 1)

  def forward(self, x):
    if any(size % self.factor for size in x.shape[1:-1]):
      raise ValueError(f"UNet3D needs spatial sizes divisible by {self.factor}; "
                       f"got {tuple(x.shape[1:-1])}")
    x = to_torch_layout(x, self.channels_last)
    skips = []
    for block in self.down:
      x = block(x)
      skips.append(x)
      x = max_pool_2x(x)
    x = self.bottom(x)
    for up, block, skip in zip(self.up, self.decode, reversed(skips)):
      x = block(torch.cat([up(x), skip], dim=1))
    return self.final(x)[:, 0]


def flax_call_order(flax_model, sample_shape: Sequence[int]) -> list[tuple[str, ...]]:
  """Paths of the Conv/ConvTranspose/BatchNorm/Dense layers of `flax_model` in call order."""
  import flax.linen as flax_nn  # pylint: disable=g-import-not-at-top
  import jax  # pylint: disable=g-import-not-at-top
  from scanbias_jax.models.unet3d import UpConv2x  # pylint: disable=g-import-not-at-top
  leaves = (flax_nn.Conv, flax_nn.ConvTranspose, UpConv2x, flax_nn.BatchNorm, flax_nn.Dense)
  paths = []

  def record(call, args, kwargs, context):
    if context.method_name == "__call__" and isinstance(context.module, leaves):
      paths.append(context.module.path)
    return call(*args, **kwargs)

  with flax_nn.intercept_methods(record):
    jax.eval_shape(lambda k: flax_model.init(k, jax.numpy.zeros(sample_shape), train=False),
                   jax.random.key(0))
  return paths


def load_flax_params(model: nn.Module, flax_model, variables, sample: torch.Tensor) -> nn.Module:
  """Copies the Flax `variables` of `flax_model` ("params", and "batch_stats" if
  present) into `model` (in place).

  Layers pair up in call order: Flax's from its method interceptor, torch's from
  forward hooks on one eval-mode pass over `sample`. Kernels move to torch's
  layout; ConvTranspose kernels are also flipped (Flax's transpose_kernel=False
  is a plain convolution of the dilated input).
  """
  leaves = (nn.Conv2d, nn.Conv3d, nn.ConvTranspose3d, nn.BatchNorm2d, nn.BatchNorm3d, nn.Linear)
  order = []
  hooks = [m.register_forward_hook(lambda m, *_: order.append(m))
           for m in model.modules() if isinstance(m, leaves)]
  was_training = model.training
  with torch.no_grad():
    model.eval()
    model(sample)
  model.train(was_training)
  for hook in hooks:
    hook.remove()
  paths = flax_call_order(flax_model, tuple(sample.shape))
  if len(paths) != len(order):
    raise ValueError(f"{len(paths)} Flax layers vs {len(order)} torch layers")
  with torch.no_grad():
    for path, layer in zip(paths, order):
      p = {}
      for collection in ("params", "batch_stats"):
        tree = variables.get(collection, {})
        for name in path:
          tree = tree.get(name, {})
        p.update({k: torch.from_numpy(np.array(v, np.float32)) for k, v in tree.items()})
      if isinstance(layer, (nn.BatchNorm2d, nn.BatchNorm3d)):
        weight = p["scale"]
        if "mean" in p:
          layer.running_mean.copy_(p["mean"])
          layer.running_var.copy_(p["var"])
      elif isinstance(layer, nn.Linear):
        weight = p["kernel"].T
      else:
        nd = p["kernel"].ndim - 2
        weight = p["kernel"].permute(nd + 1, nd, *range(nd))  # (out, in, k...)
        if isinstance(layer, nn.ConvTranspose3d):
          weight = weight.transpose(0, 1).flip(list(range(2, 2 + nd)))  # (in, out, k...)
      if weight.shape != layer.weight.shape:
        raise ValueError(f"{'/'.join(path)}: Flax {tuple(weight.shape)} vs torch "
                         f"{tuple(layer.weight.shape)}")
      layer.weight.copy_(weight)
      if layer.bias is not None:
        layer.bias.copy_(p["bias"])
  return model


MODELS = {"shallow_cnn": ShallowCNN, "resnet3d": ResNet3D, "unet3d": UNet3D}


def build(name: str, in_shape: Sequence[int], channels_last: bool = True,
          **kwargs) -> nn.Module:
  """The torch twin of `scanbias_jax.models.build(name, **kwargs)` for one sample's
  Flax-layout shape `in_shape` ([H, W, (D,) C]), in the memory format asked for."""
  if name not in MODELS:
    raise ValueError(f"unknown model {name!r}; known: {sorted(MODELS)}")
  if name == "shallow_cnn":
    kwargs = dict(kwargs, in_size=tuple(in_shape[:2]))
  model = MODELS[name](in_channels=in_shape[-1], **kwargs)
  return set_memory_format(model, channels_last)
