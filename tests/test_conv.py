"""The depth-folded and patch convolutions and the matmul up-convolution against XLA's own ops."""
import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax import lax

from scanbias_jax import models
from scanbias_jax.models import conv
from scanbias_jax.models.unet3d import UpConv2x

CHANNELS_LAST = lax.conv_dimension_numbers((1, 5, 6, 7, 2), (3, 3, 3, 2, 4), ("NHWDC", "HWDIO", "NHWDC"))


@pytest.mark.parametrize("shape, kernel, strides, padding", [
    ((2, 9, 8, 7, 3), (3, 3, 3), (1, 1, 1), "SAME"),
    ((2, 9, 8, 7, 1), (7, 7, 7), (2, 2, 2), "SAME"),     # the ResNet stem, odd sizes
    ((2, 9, 8, 7, 1), (3, 3, 3), (1, 1, 1), "SAME"),     # the default stems: taps
    ((1, 6, 7, 5, 1), (3, 2, 3), (1, 1, 1), ((1, 0), (0, 2), (2, 1))),
    ((2, 8, 8, 6, 2), (1, 1, 1), (2, 2, 2), "SAME"),     # the 1x1x1 projection shortcut
    ((1, 8, 9, 10, 2), (3, 2, 3), (1, 2, 3), "VALID"),
    ((1, 6, 6, 6, 2), (3, 3, 3), (1, 1, 1), ((1, 0), (0, 2), (2, 1))),
    ((2, 9, 8, 3), (3, 3), (1, 1), "SAME"),                # 2D (ShallowCNN)
    ((2, 9, 8, 2), (3, 2), (2, 1), ((0, 1), (2, 0))),
    ((2, 2, 2, 1, 6), (3, 3, 3), (1, 1, 1), "SAME"),     # <= 16 output voxels: patches
    ((2, 4, 4, 1, 5), (3, 3, 3), (2, 2, 2), "SAME"),
    ((2, 3, 3, 4), (3, 3), (1, 1), "SAME"),
])
@pytest.mark.parametrize("implementation", ["depth_folded", "patches"])
def test_conv_implementations_equal_lax_conv_with_gradients(shape, kernel, strides, padding,
                                                            implementation):
  fn = conv.conv_function(implementation)
  x = jax.random.normal(jax.random.key(0), shape)
  w = jax.random.normal(jax.random.key(1), kernel + (shape[-1], 4))
  layout = ("NHWDC", "HWDIO", "NHWDC") if len(shape) == 5 else ("NHWC", "HWIO", "NHWC")
  dn = lax.conv_dimension_numbers(shape, w.shape, layout)

  def loss(fn):
    return lambda x, w: jnp.sum(jnp.sin(fn(x, w, strides, padding, dimension_numbers=dn)))

  ref = lax.conv_general_dilated(x, w, strides, padding, dimension_numbers=dn)
  out = fn(x, w, strides, padding, dimension_numbers=dn)
  assert out.shape == ref.shape
  np.testing.assert_allclose(out, ref, rtol=1e-5, atol=1e-4)
  ref_grads = jax.grad(loss(lax.conv_general_dilated), argnums=(0, 1))(x, w)
  grads = jax.grad(loss(fn), argnums=(0, 1))(x, w)
  for g, r in zip(grads, ref_grads):
    np.testing.assert_allclose(g, r, rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("shape, strides, product", [
    ((2, 2, 2, 1, 8), (1, 1, 1), True),     # the paper ResNet3D's last scale
    ((2, 4, 4, 1, 8), (1, 1, 1), True),     # its third: 16 voxels
    ((2, 8, 8, 2, 8), (2, 2, 2), True),     # the stride-2 step into it
    ((2, 4, 4, 2, 8), (1, 1, 1), False),    # the default networks' smallest scale
    ((2, 8, 8, 4, 8), (2, 2, 2), False),
])
def test_small_outputs_are_one_matrix_product(shape, strides, product):
  x = jnp.ones(shape)
  w = jnp.ones((3, 3, 3, shape[-1], 4))
  dn = lax.conv_dimension_numbers(shape, w.shape, ("NHWDC", "HWDIO", "NHWDC"))
  jaxpr = str(jax.make_jaxpr(lambda x, w: conv.depth_folded_conv(
      x, w, strides, "SAME", dimension_numbers=dn))(x, w))
  assert ("conv_general_dilated" not in jaxpr) == product
  assert ("dot_general" in jaxpr) == product


def test_other_convolutions_pass_through_unchanged():
  x = jax.random.normal(jax.random.key(0), (2, 8, 8, 4))
  w = jax.random.normal(jax.random.key(1), (3, 3, 4, 5))
  dn = lax.conv_dimension_numbers(x.shape, w.shape, ("NHWC", "HWIO", "NHWC"))
  np.testing.assert_array_equal(conv.depth_folded_conv(x, w, (1, 1), "SAME", dimension_numbers=dn),
                                lax.conv_general_dilated(x, w, (1, 1), "SAME", dimension_numbers=dn))
  x, w = x.transpose(0, 3, 1, 2), w.transpose(3, 2, 0, 1)
  nchw = lax.conv_dimension_numbers(x.shape, w.shape, ("NCHW", "OIHW", "NCHW"))
  np.testing.assert_array_equal(
      conv.patches_conv(x, w, (1, 1), "SAME", dimension_numbers=nchw),
      lax.conv_general_dilated(x, w, (1, 1), "SAME", dimension_numbers=nchw))
  with pytest.raises(ValueError, match="unknown conv"):
    conv.conv_function("fft")


def test_up_convolution_equals_flax_conv_transpose():
  x = jax.random.normal(jax.random.key(0), (2, 3, 4, 2, 5))
  reference = nn.ConvTranspose(6, (2, 2, 2), strides=(2, 2, 2))
  variables = reference.init(jax.random.key(1), x)
  ours = UpConv2x(6)
  # Same parameter shapes and initialisation from the same key.
  assert jax.tree.map(jnp.shape, ours.init(jax.random.key(1), x)) == jax.tree.map(jnp.shape, variables)
  np.testing.assert_array_equal(ours.init(jax.random.key(1), x)["params"]["kernel"],
                                variables["params"]["kernel"])
  variables = jax.tree.map(lambda v: v + 0.1, variables)  # a nonzero bias
  np.testing.assert_allclose(ours.apply(variables, x), reference.apply(variables, x),
                             rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("name, kwargs, shape", [
    ("resnet3d", dict(widths=(4, 4, 8, 8), stem_width=4, hidden=8), (2, 16, 16, 8, 1)),
    ("unet3d", dict(widths=(4, 8, 16)), (2, 16, 16, 8, 1)),
    ("shallow_cnn", dict(widths=(4, 8, 8)), (2, 16, 16, 3)),
])
@pytest.mark.parametrize("implementation", ["depth_folded", "patches"])
def test_models_give_the_same_outputs_with_any_convolution(name, kwargs, shape, implementation):
  x = jax.random.normal(jax.random.key(0), shape)
  folded = models.build(name, conv=implementation, **kwargs)
  plain = models.build(name, conv="xla", **kwargs)
  variables = folded.init(jax.random.key(1), x)
  assert jax.tree.structure(variables) == jax.tree.structure(plain.init(jax.random.key(1), x))
  for train in (False, True):
    out = folded.apply(variables, x, train=train, mutable=["batch_stats"] if train else False)
    ref = plain.apply(variables, x, train=train, mutable=["batch_stats"] if train else False)
    for a, b in zip(jax.tree.leaves(out), jax.tree.leaves(ref)):
      np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-4)


def _per_member_reference(x, w, strides, padding):
  return jnp.stack([lax.conv_general_dilated(x[m], w[m], strides, padding,
                                             dimension_numbers=conv.NHWC)
                    for m in range(w.shape[0])])


@pytest.mark.parametrize("strides, padding, kernel", [
    ((1, 1), ((1, 1), (1, 1)), 3),
    ((2, 2), ((3, 3), (3, 3)), 7),
    ((2, 1), ((0, 1), (2, 0)), 3),
    ((1, 2), ((0, 0), (0, 0)), 1),
])
def test_conv2d_vmapped_over_members_equals_each_members_convolution(strides, padding, kernel):
  members = 3
  x = jax.random.normal(jax.random.key(0), (members, 2, 11, 10, 4))
  w = jax.random.normal(jax.random.key(1), (members, kernel, kernel, 4, 5))

  def loss(conv_fn):
    return lambda x, w: jnp.sum(jnp.sin(conv_fn(x, w)))

  ours = jax.vmap(lambda x, w: conv.conv2d(x, w, strides, padding))
  reference = lambda x, w: _per_member_reference(x, w, strides, padding)
  out = jax.jit(ours)(x, w)
  np.testing.assert_allclose(out, reference(x, w), rtol=1e-5, atol=1e-4)
  grads = jax.jit(jax.grad(loss(ours), argnums=(0, 1)))(x, w)
  ref_grads = jax.grad(loss(reference), argnums=(0, 1))(x, w)
  for g, r in zip(grads, ref_grads):
    np.testing.assert_allclose(g, r, rtol=1e-4, atol=1e-4)
  # A member's forward result does not depend on the others: the same bits as alone.
  alone = jax.jit(lambda x, w: conv.conv2d(x, w, strides, padding))(x[1], w[1])
  np.testing.assert_array_equal(out[1], alone)


def test_conv2d_with_shared_input_and_nested_vmaps():
  x = jax.random.normal(jax.random.key(0), (2, 9, 8, 3))
  w = jax.random.normal(jax.random.key(1), (4, 2, 3, 3, 3, 5))   # 4 x 2 members
  pads = ((1, 1), (1, 1))
  shared = jax.vmap(jax.vmap(lambda w: conv.conv2d(x, w, (1, 1), pads)))(w)
  for i in range(4):
    for j in range(2):
      np.testing.assert_allclose(shared[i, j], lax.conv_general_dilated(
          x, w[i, j], (1, 1), pads, dimension_numbers=conv.NHWC), rtol=1e-5, atol=1e-4)
  grads = jax.grad(lambda w: jnp.sum(jax.vmap(jax.vmap(
      lambda w: conv.conv2d(x, w, (1, 1), pads)))(w) ** 2))(w)
  ref = jax.grad(lambda w: jnp.sum(jnp.stack([jnp.stack([lax.conv_general_dilated(
      x, w[i, j], (1, 1), pads, dimension_numbers=conv.NHWC) for j in range(2)])
      for i in range(4)]) ** 2))(w)
  np.testing.assert_allclose(grads, ref, rtol=1e-4, atol=1e-3)


def _convolutions(compiled_text):
  return [line for line in compiled_text.splitlines() if " convolution(" in line]


def test_conv2d_programs_hold_only_plain_nhwc_convolutions_under_vmap_and_in_loops():
  """The two things conv2d is for, read off XLA's compiled program: no grouped
  convolution under vmap over members (XLA:CPU runs those ~40x slower with
  gradients), and gradient convolutions in the b01f_01io->b01f form XLA:CPU's fast
  kernel takes even inside a loop (where XLA leaves JAX's own gradients as they are)."""
  x = jax.random.normal(jax.random.key(0), (3, 2, 12, 12, 4))
  w = jax.random.normal(jax.random.key(1), (3, 3, 3, 4, 4))
  pads = ((1, 1), (1, 1))

  def loss(conv_fn):
    return lambda x, w: jnp.sum(conv_fn(x, w) ** 2)

  def in_loop(conv_fn):
    return lambda x, w: lax.map(lambda xw: jax.grad(loss(conv_fn), argnums=(0, 1))(*xw), (x, w))

  plain = lambda x, w: lax.conv_general_dilated(x, w, (1, 1), pads, dimension_numbers=conv.NHWC)
  ours = lambda x, w: conv.conv2d(x, w, (1, 1), pads)
  vmapped = jax.grad(loss(jax.vmap(ours)), argnums=(0, 1))
  for program, expected in ((vmapped, 9), (in_loop(ours), 3)):
    convs = _convolutions(jax.jit(program).lower(x, w).compile().as_text())
    assert len(convs) == expected
    assert all("dim_labels=b01f_01io->b01f" in c and "group_count" not in c for c in convs), convs
  # The failures it guards against, as XLA compiles them today (if XLA fixes them,
  # conv2d may be dropped: BUILD_NOTES.md, "Vmapped ensembles").
  grouped = _convolutions(jax.jit(jax.grad(loss(jax.vmap(plain)), argnums=(0, 1)))
                          .lower(x, w).compile().as_text())
  looped = _convolutions(jax.jit(in_loop(plain)).lower(x, w).compile().as_text())
  why = "XLA now compiles this well: re-measure benchmarks/bench_member_axis.py; conv2d may go"
  assert any("group_count" in c for c in grouped), why
  assert not all("dim_labels=b01f_01io->b01f" in c for c in looped), why


@pytest.mark.parametrize("chunk_bytes", [1, 3000])
def test_kernel_gradient_in_batch_chunks_equals_lax(monkeypatch, chunk_bytes):
  # Thresholds lowered so these small operands are chunked: 1 byte = one row a
  # chunk; 3000 bytes = 2 rows, the last chunk shorter (5 rows).
  monkeypatch.setattr(conv, "KERNEL_GRAD_MIN_BYTES", 0)
  monkeypatch.setattr(conv, "KERNEL_GRAD_CHUNK_BYTES", chunk_bytes)
  x = jax.random.normal(jax.random.key(0), (5, 9, 8, 3))
  w = jax.random.normal(jax.random.key(1), (3, 3, 3, 4))
  assert conv._chunk_rows(x, jnp.zeros((5, 5, 4, 4))) == (1 if chunk_bytes == 1 else 2)
  pads = ((1, 1), (0, 1))
  loss = lambda fn: lambda w: jnp.sum(jnp.sin(fn(x, w)))
  ours = jax.grad(loss(lambda x, w: conv.conv2d(x, w, (2, 2), pads)))(w)
  ref = jax.grad(loss(lambda x, w: lax.conv_general_dilated(
      x, w, (2, 2), pads, dimension_numbers=conv.NHWC)))(w)
  np.testing.assert_allclose(ours, ref, rtol=1e-5, atol=1e-5)


def test_kernel_gradient_chunks_only_large_operands():
  small = jnp.zeros((16, 8, 8, 4))
  assert conv._chunk_rows(small, small) == 16
  x, dy = jnp.zeros((16, 64, 64, 32)), jnp.zeros((16, 64, 64, 64))  # 24 MiB
  rows = conv._chunk_rows(x, dy)
  assert rows == 1            # 1.5 MiB a row, over the 1 MiB chunk budget
  many = jnp.zeros((2048, 16, 16, 8))   # 16 KiB a row: 64 rows a chunk would be 32 chunks
  assert conv._chunk_rows(many, many) == 128


@pytest.mark.parametrize("shape, kernel, strides, padding", [
    ((2, 9, 8, 7, 3), (3, 3, 3), (1, 1, 1), ((1, 1), (1, 1), (1, 1))),
    ((2, 9, 8, 7, 1), (7, 7, 7), (2, 2, 2), ((3, 3), (2, 3), (3, 3))),
    ((1, 6, 6, 6, 2), (3, 3, 3), (1, 1, 1), ((1, 0), (0, 2), (2, 1))),
])
def test_folded_conv3d_vmapped_over_members_equals_each_members_convolution(
    shape, kernel, strides, padding):
  members = 3
  x = jax.random.normal(jax.random.key(0), (members,) + shape)
  w = jax.random.normal(jax.random.key(1), (members,) + kernel + (shape[-1], 4))
  dn = lax.conv_dimension_numbers(shape, w.shape[1:], ("NHWDC", "HWDIO", "NHWDC"))

  def loss(conv_fn):
    return lambda x, w: jnp.sum(jnp.sin(conv_fn(x, w)))

  ours = jax.vmap(lambda x, w: conv.folded_conv3d(x, w, strides, padding))
  reference = jax.vmap(lambda x, w: lax.conv_general_dilated(x, w, strides, padding,
                                                             dimension_numbers=dn))
  out = jax.jit(ours)(x, w)
  np.testing.assert_allclose(out, reference(x, w), rtol=1e-5, atol=1e-4)
  grads = jax.jit(jax.grad(loss(ours), argnums=(0, 1)))(x, w)
  for g, r in zip(grads, jax.grad(loss(reference), argnums=(0, 1))(x, w)):
    np.testing.assert_allclose(g, r, rtol=1e-4, atol=1e-4)
  alone = jax.jit(lambda x, w: conv.folded_conv3d(x, w, strides, padding))(x[1], w[1])
  np.testing.assert_array_equal(out[1], alone)
  compiled = jax.jit(jax.grad(loss(ours), argnums=(0, 1))).lower(x, w).compile().as_text()
  assert not any("group_count" in c for c in _convolutions(compiled))


@pytest.mark.parametrize("shape, kernel, padding", [
    ((2, 9, 8, 7, 1), (3, 3, 3), ((1, 1), (1, 1), (1, 1))),
    ((1, 6, 7, 5, 1), (3, 2, 3), ((1, 0), (0, 2), (2, 1))),
    ((2, 9, 8, 3), (3, 3), ((1, 1), (1, 1))),
])
@pytest.mark.parametrize("shared_input", [False, True])
def test_taps_convolutions_vmapped_over_members_equal_lax(shape, kernel, padding, shared_input):
  """The first layers' sum over taps: each member's output and both gradients equal
  lax's, and a member's forward bits do not depend on the others."""
  members, ndim = 3, len(shape) - 2
  fn = conv.taps_conv3d if ndim == 3 else conv.taps_conv2d
  layout = ("NHWDC", "HWDIO", "NHWDC") if ndim == 3 else ("NHWC", "HWIO", "NHWC")
  x = jax.random.normal(jax.random.key(0), shape if shared_input else (members,) + shape)
  w = jax.random.normal(jax.random.key(1), (members,) + kernel + (shape[-1], 4))
  dn = lax.conv_dimension_numbers(shape, w.shape[1:], layout)
  strides = (1,) * ndim
  axes = (None if shared_input else 0, 0)

  def loss(conv_fn):
    return lambda x, w: jnp.sum(jnp.sin(conv_fn(x, w)))

  ours = jax.vmap(lambda x, w: fn(x, w, strides, padding), in_axes=axes)
  reference = jax.vmap(lambda x, w: lax.conv_general_dilated(x, w, strides, padding,
                                                             dimension_numbers=dn), in_axes=axes)
  out = jax.jit(ours)(x, w)
  np.testing.assert_allclose(out, reference(x, w), rtol=1e-5, atol=1e-4)
  grads = jax.jit(jax.grad(loss(ours), argnums=(0, 1)))(x, w)
  for g, r in zip(grads, jax.grad(loss(reference), argnums=(0, 1))(x, w)):
    np.testing.assert_allclose(g, r, rtol=1e-4, atol=1e-4)
  alone = jax.jit(lambda x, w: fn(x, w, strides, padding))(x if shared_input else x[1], w[1])
  np.testing.assert_array_equal(out[1], alone)


def test_network_programs_send_convolutions_to_eigen():
  # A 2D convolution of 32 channels: XLA:CPU gives it to YNNPACK unless told otherwise.
  x = jnp.ones((2, 8, 8, 32))
  w = jnp.ones((3, 3, 32, 32))

  def program(x, w):
    return lax.conv_general_dilated(x, w, (1, 1), "SAME",
                                    dimension_numbers=("NHWC", "HWIO", "NHWC"))

  plain = jax.jit(program).lower(x, w).compile()
  ours = jax.jit(program, compiler_options=conv.compiler_options()).lower(x, w).compile()
  assert "__ynn_fusion" in plain.as_text()   # if not, this jaxlib changed its routing: re-measure
  assert "__ynn_fusion" not in ours.as_text() and "convolution(" in ours.as_text()
  np.testing.assert_allclose(ours(x, w), plain(x, w), rtol=1e-6)
