"""What the training benchmarks share: synthetic batches, the engine's step, timing."""
import time

import jax
import ml_collections
import numpy as np

from scanbias_jax.models import conv
from scanbias_jax.train import member

MIB = 2 ** 20


def loss_name(model: str) -> str:
  return "soft_dice" if model == "unet3d" else "sigmoid_cross_entropy"


def batch_for(model, shape, batch, seed=0):
  """Host arrays (x [batch, *shape], y): noise, with masks or 0/1 labels."""
  rng = np.random.default_rng(seed)
  x = rng.standard_normal((batch,) + tuple(shape), dtype=np.float32)
  if model == "unet3d":
    y = (x[..., 0] > 1.0).astype(np.float32)
  else:
    y = (np.arange(batch) % 2).astype(np.float32)
  return x, y


def param_count_flax(params) -> int:
  """Parameters only (BatchNorm statistics live in `batch_stats`)."""
  return sum(int(np.prod(p.shape)) for p in jax.tree.leaves(params))


def train_config(model, model_kwargs, lr, batch):
  """The train-style ConfigDict of one member of `model` (float32, BatchNorm by moving
  averages) that `member_step` takes."""
  return ml_collections.ConfigDict(dict(
      model=model, model_kwargs=model_kwargs, compute_dtype="float32", loss=loss_name(model),
      learning_rate=lr, batch_size=batch, eval_batch_size=batch, num_epochs=1,
      select_metric="val_loss", bn_stats="ema", bn_stats_batches=0, scan_unroll="never"))


def member_step(config, x, y):
  """(jitted step(carry, x, y) -> (carry, loss), initial carry, parameter count).

  member.py's `step` for the train-style ConfigDict `config` on a batch it already
  gathered, its carry donated, on the state `member.make_member(config).init` builds.
  """
  data = {"train": {"x": x, "y": y}, "val": {"x": x[:1], "y": y[:1]}}
  # As ensemble.py compiles it: XLA's optimiser makes init's random kernels compile slowly.
  program = member.make_member(config)
  init = jax.jit(program.init, compiler_options={"xla_backend_optimization_level": 0})
  state = init(jax.random.key(0), data)
  epoch_key = jax.random.key(1)
  indices = jax.numpy.arange(x.shape[0])

  def step(carry, x, y):
    return program.step(carry, epoch_key, indices, x, y)

  carry = (state["params"], state["batch_stats"], state["opt_state"])
  # Compiled as the ensemble compiles its step (convolutions to XLA:CPU's Eigen).
  return (jax.jit(step, donate_argnums=0, compiler_options=conv.compiler_options()), carry,
          param_count_flax(state["params"]))


def first_step_args(ens, placed, states):
  """(carry, epoch_keys, indices, x, y): the arguments of `ens._step` for the first
  batch of chunk 0, as `Ensemble.epoch` builds them."""
  state = states[0]
  carry = (state["params"], state["batch_stats"], state["opt_state"])
  train = placed[0]["train"]
  epoch_keys, order = ens._plan(state, train["y"])
  x, y = ens._gather(order[:, 0], train["x"], train["y"])
  return carry, epoch_keys, order[:, 0], x, y


def compiled_mib(compiled) -> float:
  """XLA's accounting of a compiled program: arguments + outputs + temporaries - aliased."""
  m = compiled.memory_analysis()
  if m is None:  # a backend without it
    return float("nan")
  return (m.argument_size_in_bytes + m.output_size_in_bytes + m.temp_size_in_bytes
          - m.alias_size_in_bytes) / MIB


def compiled_flops(compiled) -> float:
  """XLA's count of floating-point operations of one run of `compiled` (nan if none)."""
  try:
    cost = compiled.cost_analysis()
  except Exception:  # pylint: disable=broad-except  (not every backend implements it)
    return float("nan")
  if isinstance(cost, (list, tuple)):
    cost = cost[0] if cost else {}
  return float((cost or {}).get("flops", float("nan")))


def timed(fn, *args) -> float:
  started = time.perf_counter()
  fn(*args)
  return time.perf_counter() - started


def median_seconds(fn, reps: int, max_seconds: float = float("inf"), min_reps: int = 3) -> list:
  """Times `fn()` (which must block) up to `reps` times, stopping after `max_seconds`
  once `min_reps` are done; returns the times. Use statistics.median on them."""
  times = []
  started = time.perf_counter()
  while len(times) < reps:
    times.append(timed(fn))
    if len(times) >= min_reps and time.perf_counter() - started > max_seconds:
      break
  return times

