"""Train-step throughput of the three networks: JAX (this project) vs a PyTorch twin.

  .venv/bin/pip install '.[bench]'                          # torch: benchmarks only
  .venv/bin/python -m benchmarks.bench_vs_torch             # default + paper-width rows
  .venv/bin/python -m benchmarks.bench_vs_torch --quick     # default rows, ~1 minute
  .venv/bin/python -m benchmarks.bench_vs_torch --models unet3d --threads 2

One step = forward in train mode (batch statistics), loss, backward, Adam update, on
the same batch for both. Inference = the forward in evaluation mode (running
statistics) on the same batch: flax's `apply(..., train=False)` jitted, torch's
`eval()` under `inference_mode`. The JAX step is member.py's `step`, jitted with its
carry donated, on the state `member.make_member(...).init` builds; the torch step is
the usual eager loop over benchmarks/torch_models.py (channels-last, float32).
Steps are timed one by one in alternating blocks (JAX, torch, JAX, ...) so machine
noise hits both; the table gives the median step after warm-up (JAX: compilation).
XLA:CPU sizes its thread pool to the visible cores; torch gets os.cpu_count()
threads unless --threads says otherwise. torch runs in the faster of channels-last
and contiguous memory (tried during warm-up) unless --torch-memory names one.
"""
import argparse
import os
import statistics

import jax
import jax.numpy as jnp
import torch
from torch.nn import functional as F

from benchmarks import common, torch_models
from benchmarks.common import batch_for, loss_name, param_count_flax, timed
from scanbias_jax import models
from scanbias_jax.models import conv

def default_rows() -> list:
  """(model, Flax-layout sample shape, batch, model_kwargs, learning rate) of each
  network as configs/default.py trains it (read from it: one place declares them)."""
  from configs import default  # pylint: disable=import-outside-toplevel
  config = default.get_config()
  exp = config.experiments
  shapes = dict(name_manufacturer=(exp.crop_size, exp.crop_size, config.prepare.stack_slices),
                spheres=tuple(exp.spheres_shape) + (1,),
                segmentation=tuple(exp.segmentation_shape) + (1,))
  rows = []
  for task, shape in shapes.items():
    settings = config.models[task]
    rows.append((settings.model, shape, settings.get("batch_size", config.train.batch_size),
                 settings.model_kwargs.to_dict(), settings.learning_rate))
  return rows


DEFAULT_ROWS = default_rows()
# Paper widths at inputs the CPU can step through in seconds.
PAPER_ROWS = [
    ("resnet3d", (64, 64, 16, 1), 32, dict(), 5e-5),
    ("unet3d", (64, 64, 32, 1), 2, dict(widths=(8, 16, 32, 64, 128)), 1e-4),
]


def check_param_counts(model, shape, kwargs) -> int:
  """The Flax and torch parameter counts of `model` on one sample of `shape`; they must agree."""
  flax_model = models.build(model, **kwargs)
  variables = jax.eval_shape(lambda k: flax_model.init(k, jnp.zeros((1,) + shape), train=False),
                             jax.random.key(0))
  n_flax = param_count_flax(variables["params"])
  n_torch = torch_models.param_count_torch(torch_models.build(model, shape, **kwargs))
  assert n_flax == n_torch, f"{model} {shape} {kwargs}: Flax {n_flax} vs torch {n_torch} params"
  return n_flax


def jax_step(model, kwargs, lr, x, y):
  """(jitted step(carry, x, y) -> (carry, loss), initial carry, parameter count)."""
  return common.member_step(common.train_config(model, kwargs, lr, x.shape[0]), x, y)


def torch_soft_dice(logits, masks, eps=1.0):
  probs = torch.sigmoid(logits).flatten(1)
  masks = masks.flatten(1)
  overlap = (probs * masks).sum(1)
  return 1.0 - (2.0 * overlap + eps) / (probs.sum(1) + masks.sum(1) + eps)


def torch_step(model, shape, kwargs, lr, channels_last=True):
  """(step(x, y) -> loss, parameter count) of the torch twin."""
  net = torch_models.build(model, shape, channels_last, **kwargs)
  net.train()
  optimizer = torch.optim.Adam(net.parameters(), lr=lr)  # betas, eps: optax's defaults
  if loss_name(model) == "soft_dice":
    loss_fn = torch_soft_dice
  else:
    loss_fn = lambda logits, y: F.binary_cross_entropy_with_logits(logits, y, reduction="none")

  def step(x, y):
    net.train()
    optimizer.zero_grad(set_to_none=True)
    loss = loss_fn(net(x), y).mean()
    loss.backward()
    optimizer.step()
    return loss

  def infer(x):
    net.eval()
    with torch.inference_mode():
      return net(x)

  return step, torch_models.param_count_torch(net), infer


def fastest_torch_step(model, shape, kwargs, lr, memory, x, y):
  """(step, parameter count, "CL" or "NC", inference) in the memory format asked for,
  or ("best") in the faster of the two steps after warm-up (oneDNN primitive creation,
  allocator)."""
  formats = {"channels_last": [True], "contiguous": [False], "best": [True, False]}[memory]
  candidates = []
  for channels_last in formats:
    step, count, infer = torch_step(model, shape, kwargs, lr, channels_last)
    for _ in range(2):
      step(x, y)
    seconds = timed(step, x, y) if len(formats) > 1 else 0.0
    candidates.append((seconds, step, count, "CL" if channels_last else "NC", infer))
  return min(candidates, key=lambda c: c[0])[1:]


def measure(model, shape, batch, kwargs, lr, reps, steps, memory="best"):
  """One table row: ((JAX, torch) parameters, torch memory format, median s/step of JAX,
  of torch, JAX compile s, median s/inference of JAX, of torch)."""
  x, y = batch_for(model, shape, batch)
  jstep, carry, n_jax = jax_step(model, kwargs, lr, x, y)
  jx, jy = jnp.asarray(x), jnp.asarray(y)
  tx, ty = torch.from_numpy(x), torch.from_numpy(y)
  tstep, n_torch, layout, tinfer = fastest_torch_step(model, shape, kwargs, lr, memory, tx, ty)
  assert n_jax == n_torch, f"{model}: JAX {n_jax} vs torch {n_torch} parameters"
  state = {"carry": carry}

  def run_jax():
    state["carry"], loss = jstep(state["carry"], jx, jy)
    jax.block_until_ready((state["carry"], loss))

  def run_torch():
    tstep(tx, ty)

  compile_s = timed(run_jax)  # compiles
  run_jax()
  times = {run_jax: [], run_torch: []}
  for _ in range(reps):
    for fn in (run_jax, run_torch):
      times[fn] += [timed(fn) for _ in range(steps)]
  median = statistics.median
  jax_infer, torch_infer = measure_inference(model, kwargs, state["carry"], jx, tinfer, tx,
                                             reps, steps)
  return ((n_jax, n_torch), layout, median(times[run_jax]), median(times[run_torch]), compile_s,
          jax_infer, torch_infer)


def measure_inference(model, kwargs, carry, jx, tinfer, tx, reps, steps):
  """Median s of one evaluation-mode forward of the batch: (JAX, torch), alternating."""
  params, batch_stats = carry[0], carry[1]
  flax_model = models.build(model, **kwargs)
  apply = jax.jit(lambda variables, x: flax_model.apply(variables, x, train=False),
                  compiler_options=conv.compiler_options())   # as the ensemble's _eval
  variables = {"params": params, "batch_stats": batch_stats}

  def run_jax():
    jax.block_until_ready(apply(variables, jx))

  def run_torch():
    tinfer(tx)

  for fn in (run_jax, run_torch):   # compilation, oneDNN primitives for eval mode
    fn()
    fn()
  times = {run_jax: [], run_torch: []}
  for _ in range(reps):
    for fn in (run_jax, run_torch):
      times[fn] += [timed(fn) for _ in range(steps)]
  return statistics.median(times[run_jax]), statistics.median(times[run_torch])


def load_average() -> str:
  return " ".join(f"{v:.1f}" for v in os.getloadavg())


def main():
  parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
  parser.add_argument("--quick", action="store_true", help="default rows only, fewer steps")
  parser.add_argument("--models", nargs="+", choices=sorted(torch_models.MODELS),
                      default=sorted(torch_models.MODELS))
  parser.add_argument("--threads", type=int, default=os.cpu_count(), help="torch threads")
  parser.add_argument("--reps", type=int, default=None, help="alternating blocks per framework")
  parser.add_argument("--steps", type=int, default=None, help="timed steps per block")
  parser.add_argument("--torch-memory", choices=["best", "channels_last", "contiguous"],
                      default="best", help="torch memory format; best: the faster of the two")
  args = parser.parse_args()
  reps = args.reps or (2 if args.quick else 5)
  steps = args.steps or (2 if args.quick else 4)
  torch.set_num_threads(args.threads)
  print(f"jax {jax.__version__} on {jax.devices()[0].platform} ({os.cpu_count()} cores), "
        f"torch {torch.__version__} with {torch.get_num_threads()} threads; "
        f"median of {reps} x {steps} steps per framework; load average {load_average()}")
  rows = [("default", r) for r in DEFAULT_ROWS]
  if not args.quick:
    rows += [("paper widths", r) for r in PAPER_ROWS]
  print(f"\n{'sizes':12} {'model':12} {'input':>16} {'batch':>5} {'JAX params':>10} "
        f"{'torch params':>12} {'JAX vol/s':>9} {'torch vol/s':>11} {'memory':>6} "
        f"{'JAX/torch':>9} {'JAX compile s':>13} {'infer JAX/torch':>15}")
  for sizes, (model, shape, batch, kwargs, lr) in rows:
    if model not in args.models:
      continue
    (n_jax, n_torch), memory, jax_s, torch_s, compile_s, jax_i, torch_i = measure(
        model, shape, batch, kwargs, lr, reps, steps, args.torch_memory)
    print(f"{sizes:12} {model:12} {str(shape):>16} {batch:5d} {n_jax:10,d} {n_torch:12,d} "
          f"{batch / jax_s:9.1f} {batch / torch_s:11.1f} {memory:>6} {torch_s / jax_s:9.2f} "
          f"{compile_s:13.1f} {torch_i / jax_i:15.2f}", flush=True)
  print("\nJAX/torch > 1: JAX is faster (train step; infer: evaluation-mode forward, same "
        "batch). Parameter counts are asserted equal (params only, not BatchNorm "
        "statistics). memory: torch's, CL channels-last, NC contiguous.")
  print(f"load average at the end: {load_average()} (other processes on these cores skew "
        "torch's OpenMP steps far more than XLA's)")


if __name__ == "__main__":
  main()
