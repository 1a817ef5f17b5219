"""3D convolution written as a 2D one with the depth taps folded into channels.

XLA:CPU runs 3D convolutions with few channels far below the machine's speed, an
order of magnitude behind a 2D convolution of the same work (measured in
BUILD_NOTES.md, "Performance: where the time went"). The same
sum is a 2D convolution over (H, W) whose input channels are the kd depth-shifted
copies of the input: out[d] = sum_k conv2d(x[d * sd + k - pad], w[:, :, k]). Same
multiply-adds and the same parameters (the kernel keeps its [kh, kw, kd, C, O]
shape), so checkpoints and parameter counts do not depend on the choice; only the
rounding order differs (float32: ~1e-6 relative).

The folded 3D convolutions go through `folded_conv3d` and the ShallowCNN's 2D ones
through `conv2d`; stride-1 layers of up to 3 input channels compute their forward as a
sum over taps, and layers of at most 16 output voxels a sample are one matrix product
over patches (`patches_conv`). Both (1) write their gradients as convolutions in the layout
XLA:CPU's fast kernel takes, (2) under vmap over ensemble members run one convolution
per member instead of a grouped one, and (3) sum the kernel gradient over
cache-sized batch chunks. BUILD_NOTES, "Performance", has the measurements.
"""
import functools
import itertools
from typing import Callable

import jax
import jax.numpy as jnp
from jax import lax

IMPLEMENTATIONS = ("auto", "xla", "depth_folded", "patches")


def _channels_last(dimension_numbers, ndim: int) -> bool:
  if dimension_numbers is None:
    return False
  lhs, rhs, out = dimension_numbers
  spatial = tuple(range(1, ndim - 1))
  return (tuple(lhs) == (0, ndim - 1) + spatial and tuple(out) == tuple(lhs)
          and tuple(rhs) == (ndim - 1, ndim - 2) + tuple(range(ndim - 2)))


def depth_folded_conv(lhs, rhs, window_strides, padding, lhs_dilation=None, rhs_dilation=None,
                      dimension_numbers=None, feature_group_count=1, precision=None, **kwargs):
  """`lax.conv_general_dilated` for flax's channels-last 3D convolutions, computed as a
  2D convolution; anything else goes to `lax.conv_general_dilated` unchanged."""
  plain = (lhs.ndim in (4, 5) and feature_group_count == 1 and not kwargs
           and all(d == 1 for d in (lhs_dilation or (1,)))
           and all(d == 1 for d in (rhs_dilation or (1,)))
           and _channels_last(dimension_numbers, lhs.ndim))
  if not plain:
    return lax.conv_general_dilated(lhs, rhs, window_strides, padding, lhs_dilation,
                                    rhs_dilation, dimension_numbers, feature_group_count,
                                    precision=precision, **kwargs)
  spatial = lhs.ndim - 2
  if isinstance(padding, str):
    padding = lax.padtype_to_pads(lhs.shape[1:-1], rhs.shape[:spatial], window_strides, padding)
  out_voxels = _output_voxels(lhs.shape[1:-1], rhs.shape[:spatial], window_strides, padding)
  if out_voxels <= PATCHES_MAX_VOXELS:
    return patches_conv(lhs, rhs, window_strides, padding, dimension_numbers=dimension_numbers,
                        precision=precision)
  taps = lhs.shape[-1] <= TAPS_MAX_CHANNELS and all(s == 1 for s in window_strides)
  convolution = {(2, False): conv2d, (2, True): taps_conv2d,
                 (3, False): folded_conv3d, (3, True): taps_conv3d}[spatial, taps]
  return convolution(lhs, rhs, tuple(window_strides), tuple(map(tuple, padding)), precision)


# Output voxels a sample up to which a convolution is one matrix product over explicit
# patches (`patches_conv`): the deepest scales of the paper-width ResNet3D (4 x 4 x 1 and
# 2 x 2 x 1 outputs), where XLA:CPU swapped the folded convolution's operands (its kernel
# larger than its input) into a layout it runs through its generic loop: 113 ms for a
# forward the product does in 2.8 (BUILD_NOTES, "Performance"). The default networks' smallest
# outputs (4 x 4 x 2) stay folded.
PATCHES_MAX_VOXELS = 16


def _output_voxels(sizes, kernel, strides, padding) -> int:
  voxels = 1
  for n, k, s, (low, high) in zip(sizes, kernel, strides, padding):
    voxels *= (n + low + high - k) // s + 1
  return voxels


def _fold(x, kd, stride, pad):
  """[B, H, W, D, C] -> [B * Do, H, W, kd * C]: the depth taps of each output slice."""
  batch, height, width, depth, channels = x.shape
  low, high = pad
  x = jnp.pad(x, ((0, 0), (0, 0), (0, 0), (low, high), (0, 0)))
  out_depth = (depth + low + high - kd) // stride + 1
  taps = [x[:, :, :, k:k + stride * (out_depth - 1) + 1:stride, :] for k in range(kd)]
  x = jnp.concatenate(taps, axis=-1)                       # [B, H, W, Do, kd * C]
  return x.transpose(0, 3, 1, 2, 4).reshape(batch * out_depth, height, width, kd * channels)


def _slices_first(y):
  """[B, Ho, Wo, Do, O] -> [B * Do, Ho, Wo, O]."""
  return y.transpose(0, 3, 1, 2, 4).reshape(-1, *y.shape[1:3], y.shape[4])


def _slices_last(y, batch):
  """[B * Do, Ho, Wo, O] -> [B, Ho, Wo, Do, O]."""
  y = y.reshape(batch, -1, *y.shape[1:])
  return y.transpose(0, 2, 3, 1, 4)


def _folded_forward(x, w, strides, padding, precision):
  kh, kw, kd, channels, features = w.shape
  folded = _fold(x, kd, strides[2], padding[2])
  y = _forward(folded, w.reshape(kh, kw, kd * channels, features), strides[:2], padding[:2],
               precision)
  return _slices_last(y, x.shape[0])


def _folded_input_grad(dy, w, strides, padding, precision, shape):
  kh, kw, kd, channels, features = w.shape
  dfolded = _input_grad(_slices_first(dy), w.reshape(kh, kw, kd * channels, features),
                        strides[:2], padding[:2], precision, shape)
  unfold = jax.linear_transpose(lambda x: _fold(x, kd, strides[2], padding[2]),
                                jax.ShapeDtypeStruct(shape, dy.dtype))
  return unfold(dfolded)[0]


def _folded_kernel_grad(x, dy, strides, padding, precision, kernel):
  kh, kw, kd = kernel
  folded = _fold(x, kd, strides[2], padding[2])
  dw = _kernel_grad(folded, _slices_first(dy), strides[:2], padding[:2], precision,
                    (kh, kw))
  return dw.reshape(kh, kw, kd, x.shape[-1], dy.shape[-1])




NHWC = ("NHWC", "HWIO", "NHWC")


def _transposed_pads(size, kernel, stride, low, high):
  """(input-gradient pads, kernel-gradient pads) of one spatial axis."""
  out = (size + low + high - kernel) // stride + 1
  return ((kernel - 1 - low, size - (out - 1) * stride - 1 + low),
          (low, kernel + (out - 1) * stride - size - low))


def _forward(x, w, strides, padding, precision):
  return lax.conv_general_dilated(x, w, strides, padding, dimension_numbers=NHWC,
                                  precision=precision)


def _input_grad(dy, w, strides, padding, precision, shape):
  pads = [_transposed_pads(n, k, s, *p)[0]
          for n, k, s, p in zip(shape[1:3], w.shape, strides, padding)]
  flipped = jnp.flip(w, (0, 1)).swapaxes(2, 3)
  return lax.conv_general_dilated(dy, flipped, (1, 1), pads, lhs_dilation=strides,
                                  dimension_numbers=NHWC, precision=precision)


def _kernel_grad(x, dy, strides, padding, precision, kernel):
  # Channels act as the batch and the batch as the features, so the sum over the
  # batch is the convolution's own reduction; window dilation = the forward stride.
  pads = [_transposed_pads(n, k, s, *p)[1]
          for n, k, s, p in zip(x.shape[1:3], kernel, strides, padding)]

  rows = _chunk_rows(x, dy)
  # Partial sums of chunks are added in float32 (bfloat16 compute would round each).
  accumulate = None if rows == x.shape[0] else jnp.promote_types(x.dtype, jnp.float32)

  def one(x, dy):
    out = lax.conv_general_dilated(x.transpose(3, 1, 2, 0), dy.transpose(1, 2, 0, 3), (1, 1),
                                   pads, rhs_dilation=strides, dimension_numbers=NHWC,
                                   precision=precision, preferred_element_type=accumulate)
    return out.transpose(1, 2, 0, 3)

  # XLA:CPU computes this tiny-output, batch-deep product faster in chunks of the
  # batch whose operands fit in cache, summed (measured: BUILD_NOTES, "Performance").
  parts = [one(x[i:i + rows], dy[i:i + rows]) for i in range(0, x.shape[0], rows)]
  return functools.reduce(jnp.add, parts).astype(jnp.result_type(x, dy))


KERNEL_GRAD_CHUNK_BYTES = 1 << 20   # operands of one chunk: about a core's L2 cache
KERNEL_GRAD_MAX_CHUNKS = 16
KERNEL_GRAD_MIN_BYTES = 8 << 20     # below this, one convolution is as fast


def _chunk_rows(x, dy) -> int:
  """Batch rows per kernel-gradient chunk (all rows: no chunking)."""
  batch = x.shape[0]
  per_row = (x.size + dy.size) // batch * x.dtype.itemsize
  if per_row * batch < KERNEL_GRAD_MIN_BYTES:
    return batch
  rows = max(1, KERNEL_GRAD_CHUNK_BYTES // per_row, -(-batch // KERNEL_GRAD_MAX_CHUNKS))
  return min(rows, batch)


def _one_per_member(fn):
  """fn of arrays, whose vmap calls fn once per member instead of batching it."""
  @jax.custom_batching.custom_vmap
  def per_member(*args):
    return fn(*args)

  @per_member.def_vmap
  def rule(axis_size, in_batched, *args):
    # Unrolled: lax.map (a loop) compiles in half the time but made the vmapped
    # default models' steps 0.8-0.9x of sequential members (loop-carried copies).
    # `per_member`, not fn: a vmap around this one splits its members in turn.
    members = [per_member(*[a[m] if batched else a for a, batched in zip(args, in_batched)])
               for m in range(axis_size)]
    return jnp.stack(members), True

  return per_member


def _per_member_convolution(forward, input_grad, kernel_grad):
  """convolution(x, w, strides, padding, precision=None): a `custom_vjp` whose forward
  and two gradients each run once per member under vmap (`_one_per_member`)."""
  @functools.partial(jax.custom_vjp, nondiff_argnums=(2, 3, 4))
  def convolution(x, w, strides, padding, precision=None):
    return _one_per_member(functools.partial(forward, strides=strides, padding=padding,
                                             precision=precision))(x, w)

  def convolution_fwd(x, w, strides, padding, precision):
    return convolution(x, w, strides, padding, precision), (x, w)

  def convolution_bwd(strides, padding, precision, residuals, dy):
    x, w = residuals
    options = dict(strides=strides, padding=padding, precision=precision)
    dx = _one_per_member(functools.partial(input_grad, shape=x.shape, **options))(dy, w)
    dw = _one_per_member(functools.partial(kernel_grad, kernel=w.shape[:-2], **options))(x, dy)
    return dx, dw

  convolution.defvjp(convolution_fwd, convolution_bwd)
  return convolution


# Input channels up to which stride-1 convolutions compute their forward as a sum
# over taps (`taps_conv2d`, `taps_conv3d`): the networks' first layers (1 channel, the
# ShallowCNN's 3 slices).
TAPS_MAX_CHANNELS = 3


def _taps_forward(x, w, strides, padding, precision):
  """A stride-1 convolution of a few input channels as its sum over kernel taps and
  channels of shifted inputs times the tap's weights: one elementwise loop, where
  XLA:CPU's convolution of a single-channel input ran at ~11 GFLOP/s (3D stem, 16 x
  32 x 32 x 16 -> 8: 9.4 ms, this 1.3 ms; BUILD_NOTES, "Performance"). Sums in float32."""
  del strides, precision  # stride 1 only (see the callers); float32 products and sums
  x = jnp.pad(x, ((0, 0), *padding, (0, 0)))
  kernel = w.shape[:-2]
  out = [n - k + 1 for n, k in zip(x.shape[1:-1], kernel)]
  total = None
  for offset in itertools.product(*[range(k) for k in kernel]):
    tap = x[(slice(None), *[slice(o, o + m) for o, m in zip(offset, out)], slice(None))]
    for c in range(x.shape[-1]):
      term = tap[..., c:c + 1].astype(jnp.float32) * w[(*offset, c)].astype(jnp.float32)
      total = term if total is None else total + term
  return total.astype(jnp.result_type(x, w))


# A 2D NHWC/HWIO convolution (explicit padding pairs, no dilation or groups), equal to
# `lax.conv_general_dilated`, for XLA:CPU. Its gradients are written as NHWC/HWIO
# convolutions with explicit transposes: XLA brings JAX's own gradient convolutions
# into that layout in a program's entry computation, but not inside a loop, where
# they ran 7x slower. Under vmap over ensemble members each of the three runs as one
# convolution per member instead of one grouped convolution (6x slower forward,
# ~40x with gradients on XLA:CPU).
conv2d = _per_member_convolution(_forward, _input_grad, _kernel_grad)

# A 3D NHWDC/HWDIO convolution (explicit padding pairs) as one 2D convolution whose
# input channels are the kd depth taps of each output slice, built like conv2d. The
# fold (pad, the kd strided depth slices, transpose) runs inside each part's
# per-member function, so under vmap each member folds its own input: folding all
# members' inputs at once and then copying out each member's part doubled the
# memory traffic (vmapped U-Net step 0.92-0.96 -> 1.06-1.10 of sequential).
folded_conv3d = _per_member_convolution(_folded_forward, _folded_input_grad,
                                        _folded_kernel_grad)

# A stride-1 3D convolution of up to TAPS_MAX_CHANNELS input channels (the networks'
# first layers): the forward as a sum over taps (`_taps_forward`), the gradients as
# `folded_conv3d`'s. Its kernel gradient by autodiff of that sum (one reduction a tap)
# was 4x slower than the folded one.
taps_conv3d = _per_member_convolution(_taps_forward, _folded_input_grad, _folded_kernel_grad)
# The same for conv2d's stride-1 cases (the ShallowCNN's 3-slice input).
taps_conv2d = _per_member_convolution(_taps_forward, _input_grad, _kernel_grad)


def patches_conv(lhs, rhs, window_strides, padding, lhs_dilation=None, rhs_dilation=None,
                 dimension_numbers=None, feature_group_count=1, precision=None, **kwargs):
  """`lax.conv_general_dilated` for channels-last 2D/3D convolutions, computed as one
  matrix product over explicit patches (the kernel taps, strided slices of the padded
  input, concatenated as channels); anything else goes to `lax.conv_general_dilated`.

  Under vmap over ensemble members the product becomes a batched matrix product,
  where a vmapped `lax.conv_general_dilated` becomes a grouped convolution (slow on
  XLA:CPU; `conv2d` avoids both). Cost: the patches hold prod(kernel) copies of the
  input.
  """
  ndim = lhs.ndim
  plain = (ndim in (4, 5) and feature_group_count == 1 and not kwargs
           and all(d == 1 for d in (lhs_dilation or (1,)))
           and all(d == 1 for d in (rhs_dilation or (1,)))
           and _channels_last(dimension_numbers, ndim))
  if not plain:
    return lax.conv_general_dilated(lhs, rhs, window_strides, padding, lhs_dilation,
                                    rhs_dilation, dimension_numbers, feature_group_count,
                                    precision=precision, **kwargs)
  spatial, kernel = lhs.shape[1:-1], rhs.shape[:-2]
  if isinstance(padding, str):
    padding = lax.padtype_to_pads(spatial, kernel, window_strides, padding)
  x = jnp.pad(lhs, ((0, 0), *[tuple(p) for p in padding], (0, 0)))
  out = [(n + lo + hi - k) // st + 1
         for n, (lo, hi), k, st in zip(spatial, padding, kernel, window_strides)]
  taps = []
  for offset in itertools.product(*[range(k) for k in kernel]):
    index = tuple(slice(o, o + st * (m - 1) + 1, st)
                  for o, m, st in zip(offset, out, window_strides))
    taps.append(x[(slice(None), *index, slice(None))])
  patches = jnp.concatenate(taps, axis=-1)                  # [B, *out, taps * C]
  return jnp.einsum("...p,po->...o", patches, rhs.reshape(-1, rhs.shape[-1]),
                    precision=precision)


# XLA:CPU hands a 2D convolution with more than 16 channels to YNNPACK and the rest to
# Eigen; YNNPACK also takes the dots and reductions. For the programs that run the
# networks we send every convolution to Eigen and leave YNNPACK the dots and reductions.
# Train steps on the 2-core EPYC (ms, same run, alternating): ShallowCNN 9.2 -> 6.9,
# default ResNet3D 79 -> 74, default U-Net 72 -> 73, paper-width ResNet3D 670 -> 478
# (its 7^3 stride-2 stem forward 263 -> 96), paper-width U-Net 656 -> 616 (BUILD_NOTES,
# BUILD_NOTES, "Performance"). Rounding differs from YNNPACK's, so CPU results move bit-wise once.
CPU_COMPILER_OPTIONS = {"xla_cpu_experimental_ynn_fusion_type":
                        "LIBRARY_FUSION_TYPE_INDIVIDUAL_DOT,LIBRARY_FUSION_TYPE_REDUCE"}


def compiler_options() -> dict:
  """XLA compiler options of a program that runs the networks (`jax.jit(...,
  compiler_options=...)`): CPU_COMPILER_OPTIONS on CPU, none elsewhere."""
  return dict(CPU_COMPILER_OPTIONS) if jax.default_backend() == "cpu" else {}


def conv_function(implementation: str) -> Callable:
  """The convolution primitive flax's nn.Conv should call ("auto": folded on CPU)."""
  if implementation not in IMPLEMENTATIONS:
    raise ValueError(f"unknown conv implementation {implementation!r}; known: {IMPLEMENTATIONS}")
  if implementation == "auto":
    implementation = "depth_folded" if jax.default_backend() == "cpu" else "xla"
  return {"depth_folded": depth_folded_conv, "patches": patches_conv,
          "xla": lax.conv_general_dilated}[implementation]
