"""One ensemble member's training program, as pure functions of (key, data).

`data` is a dict of device arrays:
  {"train": {"x": [N, ...], "y": [N] or [N, ...]}, "val": {"x": [M, ...], "y": ...}}
with float labels (0/1) for classification or float masks for segmentation. Each
sample goes through `augment(key, x) -> x` (training, a fresh key per sample per
epoch) or `eval_transform(x) -> x` (validation and prediction) before the model;
both default to the identity.

The member state is a plain dict (it is what the checkpoints hold):
  {"key", "epoch", "params", "batch_stats", "opt_state",
   "best": {"params", "batch_stats", "epoch", "metric"}}
"""
import dataclasses
import functools
from typing import Any, Callable, NamedTuple, Optional

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax

from scanbias_jax import keys, models
from scanbias_jax.train import losses

Augment = Callable[[jax.Array, jax.Array], jax.Array]
Transform = Callable[[jax.Array], jax.Array]


class MemberProgram(NamedTuple):
  init: Callable     # (member_key, data) -> state
  epoch: Callable    # (state, data) -> (state, metrics of that epoch)
  train: Callable    # (member_key, data) -> (state, metrics stacked over epochs)
  predict: Callable  # ({"params", "batch_stats"}, x [N, ...]) -> probabilities [N, ...]
  # The pieces `epoch` is composed of, for engines that run an epoch step by step:
  epoch_plan: Callable    # (state, train_y) -> (epoch_key, indices [steps, batch_size])
  step: Callable          # ((params, batch_stats, opt_state), epoch_key, indices, x, y)
                          #   -> (carry, loss); x, y: the batch train_x[indices], ...
  eval_logits: Callable   # (variables, x [eval_batch_size, ...]) -> logits
  finish_epoch: Callable  # (state, carry, step losses, val logits, val y) -> (state, metrics)
  # bn_stats="precise" only (else None): BatchNorm statistics recomputed after the steps.
  batch_moments: Optional[Callable] = None  # (params, batch_stats, epoch_key, indices, x)
                                            #   -> one batch's per-layer {"mean", "var"}
  pool_moments: Optional[Callable] = None   # those, stacked over batches -> batch_stats
  moment_batches: int = 0   # the epoch's first batches they come from (0 = every batch)
  activation: str = "sigmoid"  # what turns eval logits into probabilities (losses.ON_HOST)


def eval_chunks(n: int, eval_batch_size: int) -> np.ndarray:
  """Indices [chunks, eval_batch_size] covering 0..n-1, the last chunk padded by repeating n-1."""
  chunks = -(-n // eval_batch_size)
  return np.minimum(np.arange(chunks * eval_batch_size), n - 1).reshape(chunks, eval_batch_size)


def task_config(config: ml_collections.ConfigDict, task: str) -> ml_collections.ConfigDict:
  """The flat training config of one task: `config.train` updated with `config.models[task]`."""
  merged = ml_collections.ConfigDict(config.train.to_dict())
  merged.update(config.models[task].to_dict())
  return merged


def unrolled_loops(scan_unroll: str) -> bool:
  """Whether the step and evaluation loops are unrolled at trace time: "never" (lax.scan)
  or "always" (a Python loop; for the XLA convolutions, `conv="xla"`, whose gradients
  XLA:CPU runs slowly inside loops; BUILD_NOTES, "Performance")."""
  if scan_unroll not in ("always", "never"):
    raise ValueError(f"scan_unroll must be 'always' or 'never'; got {scan_unroll!r}")
  return scan_unroll == "always"


def scan(fn, carry, xs, unrolled: bool):
  """`lax.scan(fn, carry, xs)`, or the same computation unrolled at trace time."""
  if not unrolled:
    return jax.lax.scan(fn, carry, xs)
  outputs = []
  for i in range(jax.tree.leaves(xs)[0].shape[0]):
    carry, out = fn(carry, jax.tree.map(lambda x: x[i], xs))
    outputs.append(out)
  return carry, jax.tree.map(lambda *o: jnp.stack(o), *outputs)


def pool_moments(stacked):
  """BatchNorm statistics of the union of equal-sized batches, from each batch's own.

  `stacked` is a batch_stats tree whose {"mean", "var"} leaves lead with the batch
  axis; the pooled variance is E[var + mean^2] - (E[mean])^2 (the law of total
  variance), as BatchNorm would compute it over all the batches at once.
  """
  if isinstance(stacked, dict) and set(stacked) == {"mean", "var"}:
    mean = stacked["mean"].mean(axis=0)
    second = (stacked["var"] + stacked["mean"] ** 2).mean(axis=0)
    return {"mean": mean, "var": jnp.maximum(second - mean ** 2, 0.0)}
  return {name: pool_moments(child) for name, child in stacked.items()}


def maximises(metric: str) -> bool:
  """Losses are minimised; every other validation metric is maximised."""
  return not metric.endswith("loss")


@dataclasses.dataclass(frozen=True)
class MemberSpec:
  """What a member's pure functions close over, built once from the config."""
  model: Any                 # flax module (train=True updates BatchNorm's running stats)
  stats_model: Any           # the same with BatchNorm momentum 0: a batch's own statistics
  loss_fn: Callable
  metrics_fn: Callable
  activation: str            # logits -> probabilities: "sigmoid" or "softmax"
  optimizer: optax.GradientTransformation
  batch_size: int
  eval_batch_size: int
  select_metric: str
  maximise: bool
  precise: bool              # bn_stats == "precise": statistics recomputed after the steps
  moment_batches: int        # ... from the epoch's first this many batches (0 = all)
  unrolled: bool
  num_epochs: int
  augment: Optional[Augment]
  eval_transform: Transform


def member_spec(config: ml_collections.ConfigDict, augment: Optional[Augment] = None,
                eval_transform: Optional[Transform] = None) -> MemberSpec:
  model_kwargs = dict(config.model_kwargs)
  if config.bn_stats not in ("ema", "precise"):
    raise ValueError(f"bn_stats must be 'ema' or 'precise'; got {config.bn_stats!r}")
  return MemberSpec(
      model=models.build(config.model, config.compute_dtype, **model_kwargs),
      stats_model=models.build(config.model, config.compute_dtype,
                               **{**model_kwargs, "bn_momentum": 0.0}),
      loss_fn=losses.LOSSES[config.loss], metrics_fn=losses.METRICS[config.loss],
      activation=losses.ACTIVATIONS[config.loss],
      optimizer=optax.adam(config.learning_rate), batch_size=config.batch_size,
      eval_batch_size=config.eval_batch_size, select_metric=config.select_metric,
      maximise=maximises(config.select_metric), precise=config.bn_stats == "precise",
      moment_batches=int(config.bn_stats_batches),
      unrolled=unrolled_loops(config.scan_unroll), num_epochs=config.num_epochs,
      augment=augment, eval_transform=eval_transform or (lambda x: x))


def train_inputs(spec: MemberSpec, epoch_key, indices, x):
  """The training batch as the model sees it: each sample augmented with its own key."""
  if spec.augment is None:
    return x
  augment_key = keys.stream(epoch_key, "augment")
  sample_keys = jax.vmap(lambda i: keys.item(augment_key, i))(indices)
  return jax.vmap(spec.augment)(sample_keys, x)


def init(spec: MemberSpec, member_key, data):
  n_train = data["train"]["x"].shape[0]
  if n_train < spec.batch_size:
    raise ValueError(f"batch_size {spec.batch_size} exceeds the {n_train} training samples")
  sample = train_inputs(spec, keys.stream(member_key, "init_shape"), jnp.arange(1),
                        data["train"]["x"][:1])
  variables = spec.model.init(keys.stream(member_key, "init"), sample, train=False)
  params, batch_stats = variables["params"], variables.get("batch_stats", {})
  worst = -jnp.inf if spec.maximise else jnp.inf
  return {
      "key": member_key,
      "epoch": jnp.zeros((), jnp.int32),
      "params": params,
      "batch_stats": batch_stats,
      "opt_state": spec.optimizer.init(params),
      "best": {"params": params, "batch_stats": batch_stats,
               "epoch": jnp.full((), -1, jnp.int32), "metric": jnp.full((), worst, jnp.float32),
               "loss": jnp.full((), jnp.inf, jnp.float32)},
  }


def epoch_plan(spec: MemberSpec, state, train_y):
  """This epoch's key and shuffled batches [steps, batch_size] of sample indices."""
  n = train_y.shape[0]
  steps = n // spec.batch_size  # the remainder waits for another epoch's shuffle
  epoch_key = keys.item(keys.stream(state["key"], "epoch"), state["epoch"])
  order = jax.random.permutation(keys.stream(epoch_key, "shuffle"), n)
  return epoch_key, order[:steps * spec.batch_size].reshape(steps, spec.batch_size)


def step(spec: MemberSpec, carry, epoch_key, indices, x, y):
  """One Adam step on the batch x = train_x[indices], y = train_y[indices]."""
  params, batch_stats, opt_state = carry
  x = train_inputs(spec, epoch_key, indices, x)

  def batch_loss(params):
    logits, updates = spec.model.apply({"params": params, "batch_stats": batch_stats}, x,
                                       train=True, mutable=["batch_stats"])
    loss = spec.loss_fn(logits.astype(jnp.float32), y).mean()
    return loss, updates.get("batch_stats", {})

  (loss, batch_stats), grads = jax.value_and_grad(batch_loss, has_aux=True)(params)
  updates, opt_state = spec.optimizer.update(grads, opt_state, params)
  return (optax.apply_updates(params, updates), batch_stats, opt_state), loss


def batch_moments(spec: MemberSpec, params, batch_stats, epoch_key, indices, x):
  """The BatchNorm statistics a training batch has under `params` (same inputs as its step)."""
  _, updates = spec.stats_model.apply({"params": params, "batch_stats": batch_stats},
                                      train_inputs(spec, epoch_key, indices, x), train=True,
                                      mutable=["batch_stats"])
  return updates["batch_stats"]


def eval_logits(spec: MemberSpec, variables, x):
  """Eval-mode float32 logits of one chunk of samples."""
  inputs = jax.vmap(spec.eval_transform)(x)
  return spec.model.apply(variables, inputs, train=False).astype(jnp.float32)


def logits_eval(spec: MemberSpec, variables, x):
  """Eval-mode logits of all of x, in chunks of eval_batch_size (padding by repeat)."""
  n = x.shape[0]
  indices = eval_chunks(n, spec.eval_batch_size)
  _, out = scan(lambda _, idx: (None, eval_logits(spec, variables, x[idx])), None, indices,
                spec.unrolled)
  return out.reshape((-1,) + out.shape[2:])[:n]


def predict(spec: MemberSpec, variables, x):
  return losses.ON_DEVICE[spec.activation](logits_eval(spec, variables, x))


def finish_epoch(spec: MemberSpec, state, carry, step_losses, val_logits, val_y):
  """The state after the epoch's steps, with validation and best-so-far tracking.

  Of `state` it reads only "key", "epoch" and "best"; `carry` replaces the rest.
  """
  params, batch_stats, opt_state = carry
  val = spec.metrics_fn(val_logits, val_y)
  score = val[spec.select_metric].astype(jnp.float32)
  loss = val["val_loss"].astype(jnp.float32)
  # NaN never improves: the comparisons are False. A tie (a small validation set's
  # accuracy sits at 1.0 for many epochs) goes to the lower validation loss, not to
  # the earliest epoch.
  old = state["best"]["metric"]
  better = score > old if spec.maximise else score < old
  improved = better | ((score == old) & (loss < state["best"]["loss"]))
  candidate = {"params": params, "batch_stats": batch_stats, "epoch": state["epoch"],
               "metric": score, "loss": loss}
  best = jax.tree.map(lambda new, kept: jnp.where(improved, new, kept), candidate,
                      state["best"])
  new_state = {"key": state["key"], "epoch": state["epoch"] + 1, "params": params,
               "batch_stats": batch_stats, "opt_state": opt_state, "best": best}
  metrics = {"epoch": state["epoch"], "train_loss": step_losses.mean(), **val,
             "best_epoch": best["epoch"], "best_metric": best["metric"]}
  return new_state, metrics


def epoch(spec: MemberSpec, state, data):
  """One whole epoch as one pure function (the pieces above, composed)."""
  train_x, train_y = data["train"]["x"], data["train"]["y"]
  epoch_key, order = epoch_plan(spec, state, train_y)
  carry = (state["params"], state["batch_stats"], state["opt_state"])
  carry, step_losses = scan(
      lambda c, idx: step(spec, c, epoch_key, idx, train_x[idx], train_y[idx]), carry, order,
      spec.unrolled)
  if spec.precise:
    _, moments = scan(lambda _, idx: (None, batch_moments(spec, carry[0], carry[1], epoch_key,
                                                          idx, train_x[idx])),
                      None, order[:spec.moment_batches or None], spec.unrolled)
    carry = (carry[0], pool_moments(moments), carry[2])
  val_logits = logits_eval(spec, {"params": carry[0], "batch_stats": carry[1]},
                           data["val"]["x"])
  return finish_epoch(spec, state, carry, step_losses, val_logits, data["val"]["y"])


def train(spec: MemberSpec, member_key, data):
  state = init(spec, member_key, data)
  return scan(lambda s, _: epoch(spec, s, data), state, jnp.arange(spec.num_epochs),
              spec.unrolled)


def make_member(config: ml_collections.ConfigDict, augment: Optional[Augment] = None,
                eval_transform: Optional[Transform] = None) -> MemberProgram:
  """The pure per-member functions for the `config.train`-style ConfigDict `config`."""
  spec = member_spec(config, augment, eval_transform)
  bound = lambda fn: functools.partial(fn, spec)  # pylint: disable=unnecessary-lambda-assignment
  return MemberProgram(
      bound(init), bound(epoch), bound(train), bound(predict), bound(epoch_plan), bound(step),
      bound(eval_logits), bound(finish_epoch),
      batch_moments=bound(batch_moments) if spec.precise else None,
      pool_moments=pool_moments if spec.precise else None,
      moment_batches=spec.moment_batches, activation=spec.activation)


def make_member_train(config: ml_collections.ConfigDict, augment: Optional[Augment] = None,
                      eval_transform: Optional[Transform] = None) -> Callable:
  """The pure `train(member_key, data) -> (state, metrics per epoch)` of one member.

  jit it, or vmap it over member keys for an ensemble (train/ensemble.py does
  that with sharding and checkpointable epochs).
  """
  return make_member(config, augment, eval_transform).train
