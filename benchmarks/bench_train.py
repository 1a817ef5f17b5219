"""Training throughput of the three networks and of vmapped vs sequential ensembles.

  .venv/bin/python -m benchmarks.bench_train            # everything (~10 min on 2 cores)
  .venv/bin/python -m benchmarks.bench_train --quick    # small sizes only

Throughput is volumes (samples) per second of whole training epochs (the engine's
compiled steps plus a one-batch validation), measured after a warm-up epoch that
compiles. Peak memory is XLA's own accounting of the compiled step (arguments +
outputs + temporaries - aliased) and the process's peak RSS. Ratios are against
baselines measured in the same run.
"""
import argparse
import resource
import time

import jax
import jax.numpy as jnp
import ml_collections

from benchmarks import common
from scanbias_jax.train import ensemble


def config(model, members=1, per_device=0, batch=8, lr=1e-4):
  loss = common.loss_name(model)
  return ml_collections.ConfigDict(dict(
      model=model, model_kwargs={}, compute_dtype="float32", loss=loss, learning_rate=lr,
      batch_size=batch, eval_batch_size=batch, num_epochs=1, num_members=members,
      members_per_device=per_device, num_devices=1, first_member=0, parallel="dispatch",
      bn_stats="ema", bn_stats_batches=0, scan_unroll="never",
      select_metric="val_dice" if loss == "soft_dice" else "val_accuracy"))


def data_for(model, shape, n):
  x = jax.random.normal(jax.random.key(0), (n,) + shape)
  if model == "unet3d":
    y = (x[..., 0] > 1.0).astype(jnp.float32)
  else:
    y = (jnp.arange(n) % 2).astype(jnp.float32)
  return {"train": {"x": x, "y": y}, "val": {"x": x[:1], "y": y[:1]}}


def measure(cfg, shape, steps, epochs=1):
  """(volumes per second per member, seconds per epoch, compiled MiB, compile+first s)."""
  data = data_for(cfg.model, shape, steps * cfg.batch_size)
  ens = ensemble.make_ensemble(cfg)
  placed = ens.place_data(data)
  states = ens.init(jax.random.key(0), placed)
  compiled_mib = common.compiled_mib(
      ens._step.lower(*common.first_step_args(ens, placed, states)).compile())
  started = time.perf_counter()
  states, metrics = ens.epoch(states, placed)  # compiles
  first = time.perf_counter() - started
  started = time.perf_counter()
  for _ in range(epochs):
    states, metrics = ens.epoch(states, placed)
  jax.block_until_ready(states)
  seconds = (time.perf_counter() - started) / epochs
  return steps * cfg.batch_size * cfg.num_members / seconds, seconds, compiled_mib, first


def peak_rss_mib():
  return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def main():
  parser = argparse.ArgumentParser()
  parser.add_argument("--quick", action="store_true", help="skip the paper input sizes")
  args = parser.parse_args()
  print(f"jax {jax.__version__} on {jax.devices()[0].platform}, {jax.device_count()} device(s)")

  print("\n## Train-step throughput, one member, paper widths")
  print(f"{'model':12} {'input':>16} {'batch':>5} {'steps':>5} {'vol/s':>8} {'s/epoch':>8} "
        f"{'compile+1st s':>13} {'XLA MiB':>8} {'vs small':>8}")
  small = {"shallow_cnn": ((64, 64, 3), 8, 4), "resnet3d": ((64, 64, 16, 1), 8, 2),
           "unet3d": ((64, 64, 16, 1), 4, 2)}
  # Paper inputs; batch 32 of the 3D networks needs tens of GB of activations on
  # the CPU (and minutes per step), so those run with the batch shown, one step.
  paper = {"shallow_cnn": ((256, 256, 3), 32, 1), "resnet3d": ((256, 256, 35, 1), 2, 1),
           "unet3d": ((256, 256, 32, 1), 1, 1)}
  for name in ("shallow_cnn", "resnet3d", "unet3d"):
    shape, batch, steps = small[name]
    base, seconds, mib, first = measure(config(name, batch=batch), shape, steps)
    print(f"{name:12} {str(shape):>16} {batch:5d} {steps:5d} {base:8.2f} {seconds:8.2f} "
          f"{first:13.1f} {mib:8.0f} {1.0:8.2f}")
    if args.quick:
      continue
    shape, batch, steps = paper[name]
    rate, seconds, mib, first = measure(config(name, batch=batch), shape, steps)
    print(f"{name:12} {str(shape):>16} {batch:5d} {steps:5d} {rate:8.2f} {seconds:8.2f} "
          f"{first:13.1f} {mib:8.0f} {rate / base:8.3f}")
  print("skipped: batch 32 of resnet3d / unet3d at paper inputs (memory and minutes per "
        "step on this CPU; paper batch runs on the GPU config)")

  print("\n## Ensemble of 10: one vmap of 10 vs 10 members one after another (1 device)")
  print(f"{'model':12} {'input':>16} {'mode':>10} {'vol/s':>8} {'s/epoch':>8} {'XLA MiB':>8} "
        f"{'speedup':>8}")
  for name, shape, batch, steps in (("shallow_cnn", (32, 32, 3), 8, 4),
                                    ("resnet3d", (32, 32, 16, 1), 4, 2)):
    sequential = measure(config(name, members=10, per_device=1, batch=batch), shape, steps)
    vmapped = measure(config(name, members=10, per_device=0, batch=batch), shape, steps)
    for mode, (rate, seconds, mib, _) in (("sequential", sequential), ("vmap", vmapped)):
      print(f"{name:12} {str(shape):>16} {mode:>10} {rate:8.2f} {seconds:8.2f} {mib:8.0f} "
            f"{rate / sequential[0]:8.2f}")
  print(f"\npeak RSS of this process: {peak_rss_mib():.0f} MiB")


if __name__ == "__main__":
  main()
