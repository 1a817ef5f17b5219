"""Vmapped ensembles vs members one after another on XLA:CPU, and why.

  .venv/bin/python -m benchmarks.bench_member_axis            # 10 members (~5 min on 2 cores)
  .venv/bin/python -m benchmarks.bench_member_axis --quick    # 4 members, 1 round (~2 min)

Two measurements, each a ratio against a baseline timed in the same run:

1. One 3x3 2D convolution, 8 -> 8 channels per member, 64x64, batch 16, for M members:
   M separate convolutions in one program (the baseline), one grouped convolution,
   `jax.vmap` of the one-member convolution over members (forward: that same grouped
   convolution; gradients: vmap's own rules), a `fori_loop` over members, and the
   same two with `models.conv.conv2d` (gradients as plain NHWC convolutions, one
   convolution per vmapped member). Forward only, then forward + both gradients.
2. One training step of each default-config network (Name the Manufacturer's
   ShallowCNN on 128x128x3 stacks, the spheres ResNet3D and the segmentation U-Net
   on 32x32x16 volumes, at the config's batch size), for M members: M calls of the
   one-member program (sequential, the baseline) and one vmap of M. Compile time
   (plus the first step) is reported apart.

Ratios are baseline time / time: above 1 is faster than the baseline.
"""
import argparse
import statistics
import time

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax

from benchmarks import common
from configs import default
from scanbias_jax.models import conv as conv_lib
from scanbias_jax.train import member

CONV = ("NHWC", "HWIO", "NHWC")


def _conv(x, w):
  return lax.conv_general_dilated(x, w, (1, 1), "SAME", dimension_numbers=CONV)


def _with_grads(conv):
  def loss(x, w):
    return (conv(x, w) ** 2).sum()
  return jax.grad(loss, argnums=(0, 1))


def conv_variants(members: int, channels: int):
  """name -> fn(x [B, H, W, M*C], w [3, 3, C, M*C]); every variant computes the same."""
  def part(a, m):
    return lax.dynamic_slice_in_dim(a, m * channels, channels, -1)

  def separate(x, w):
    return jnp.concatenate([_conv(part(x, m), part(w, m)) for m in range(members)], -1)

  def grouped(x, w):
    return lax.conv_general_dilated(x, w, (1, 1), "SAME", dimension_numbers=CONV,
                                    feature_group_count=members)

  def loop(x, w):
    def body(m, out):
      return lax.dynamic_update_slice_in_dim(out, _conv(part(x, m), part(w, m)), m * channels, -1)
    return lax.fori_loop(0, members, body, jnp.zeros_like(x))

  def vmap_of(conv):
    def vmapped(x, w):
      def members_first(a):
        return jnp.moveaxis(a.reshape(a.shape[:-1] + (members, channels)), -2, 0)
      out = jax.vmap(conv)(members_first(x), members_first(w))
      return jnp.moveaxis(out, 0, -2).reshape(x.shape)
    return vmapped

  def conv2d(x, w):
    return conv_lib.conv2d(x, w, (1, 1), ((1, 1), (1, 1)))

  def conv2d_loop(x, w):
    def body(m, out):
      return lax.dynamic_update_slice_in_dim(out, conv2d(part(x, m), part(w, m)), m * channels, -1)
    return lax.fori_loop(0, members, body, jnp.zeros_like(x))

  return {"separate (baseline)": separate, "grouped": grouped, "vmap": vmap_of(_conv),
          "fori_loop": loop, "vmap of models.conv.conv2d": vmap_of(conv2d),
          "fori_loop of conv2d": conv2d_loop}


def time_fn(fn, args, reps):
  jax.block_until_ready(fn(*args))
  return statistics.median(common.median_seconds(
      lambda: jax.block_until_ready(fn(*args)), reps))


def bench_conv(members: int, reps: int) -> None:
  channels, batch, size = 8, 16, 64
  rng = np.random.default_rng(0)
  x = jnp.asarray(rng.standard_normal((batch, size, size, members * channels), np.float32))
  w = jnp.asarray(rng.standard_normal((3, 3, channels, members * channels), np.float32) * 0.1)
  print(f"\n## One conv layer, {members} members ({channels} -> {channels} channels each, "
        f"{size}x{size}, batch {batch}), ms")
  print("| variant | forward | ratio | forward + gradients | ratio |")
  print("| --- | --- | --- | --- | --- |")
  variants = conv_variants(members, channels)
  reference = jax.jit(variants["separate (baseline)"])(x, w)
  base = {}
  for name, fn in variants.items():
    forward, backward = jax.jit(fn), jax.jit(_with_grads(fn))
    np.testing.assert_allclose(forward(x, w), reference, rtol=1e-4, atol=1e-3)
    times = (time_fn(forward, (x, w), reps), time_fn(backward, (x, w), reps))
    base = base or dict(zip(("f", "b"), times))
    print(f"| {name} | {times[0] * 1e3:.1f} | {base['f'] / times[0]:.2f} | "
          f"{times[1] * 1e3:.1f} | {base['b'] / times[1]:.2f} |", flush=True)


TASKS = {"name_manufacturer": (128, 128, 3), "spheres": (32, 32, 16, 1),
         "segmentation": (32, 32, 16, 1)}


def bench_step(task: str, members: int, reps: int, rounds: int) -> None:
  cfg = member.task_config(default.get_config(), task)
  shape, batch = TASKS[task], cfg.batch_size
  program = member.make_member(cfg)
  x, y = common.batch_for(cfg.model, shape, batch)
  data = {"train": {"x": x, "y": y}, "val": {"x": x[:1], "y": y[:1]}}
  init = jax.jit(jax.vmap(program.init, (0, None)),
                 compiler_options={"xla_backend_optimization_level": 0})
  state = init(jax.random.split(jax.random.key(0), members), data)
  carry = (state["params"], state["batch_stats"], state["opt_state"])
  args = (jax.random.split(jax.random.key(1), members),
          jnp.tile(jnp.arange(batch), (members, 1)),
          jnp.broadcast_to(x, (members,) + x.shape) + 0,
          jnp.broadcast_to(y, (members,) + y.shape) + 0)

  def member_slice(tree, m):
    return jax.tree.map(lambda a: a[m:m + 1], tree)

  # As the engine runs them: a vmap of one member per call, or of all members.
  one = jax.jit(jax.vmap(program.step), donate_argnums=0)
  everyone = jax.jit(jax.vmap(program.step), donate_argnums=0)

  def sequential():
    carries = [jax.tree.map(jnp.copy, member_slice(carry, m)) for m in range(members)]
    parts = [member_slice(args, m) for m in range(members)]
    def run():
      for m in range(members):
        carries[m], _ = one(carries[m], *parts[m])
      jax.block_until_ready(carries)
    return run

  def vmapped():
    state = [jax.tree.map(jnp.copy, carry)]
    def run():
      state[0], _ = everyone(state[0], *args)
      jax.block_until_ready(state)
    return run

  print(f"\n## Train step, {task} {cfg.model} (default widths), {shape}, batch {batch}, "
        f"{members} members")
  print("| round | variant | compile + first s | vol/s of all members | per member vs sequential |")
  print("| --- | --- | --- | --- | --- |")
  runs = {}
  for name, make in (("sequential (baseline)", sequential), ("one vmap", vmapped)):
    run = make()
    started = time.perf_counter()
    run()
    runs[name] = (time.perf_counter() - started, run)
  for r in range(rounds):
    base = None
    for name, (compile_s, run) in runs.items():
      seconds = statistics.median(common.median_seconds(run, reps))
      base = base or seconds
      print(f"| {r} | {name} | {compile_s:.1f} | {members * batch / seconds:.1f} | "
            f"{base / seconds:.2f} |", flush=True)


def main():
  parser = argparse.ArgumentParser(description=__doc__)
  parser.add_argument("--quick", action="store_true")
  args = parser.parse_args()
  members, rounds = (4, 1) if args.quick else (10, 2)
  print(f"jax {jax.__version__} on {jax.devices()[0].device_kind}")
  bench_conv(members, reps=5)
  for task in TASKS:
    bench_step(task, members, reps=5, rounds=rounds)


if __name__ == "__main__":
  main()
