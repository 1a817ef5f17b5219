"""A seed ensemble: the member program vmapped over members, spread over devices.

Layout. `num_members` members run in chunks of `members_per_device`; each device
vmaps the member program over one chunk at a time, the devices run their chunks
concurrently, and `rounds` such waves cover all members. Slots past `num_members`
are padding: real members with the next indices, computed and dropped.

Why chunks: XLA fuses and vectorises an op batched over 4 members (a BatchNorm
reduction, a matrix product) differently from the same op on one, so a member's
bits depend on how many members share its vmap (by ~1e-7 after a few steps), and
nothing else.
With `members_per_device` fixed, a run gives the same bits on 1 device (more
rounds) as on 4. `members_per_device=0` picks one round (plain vmap of all
members on one device).

Member i's key is `item(stream(key, "members"), i)`: it does not depend on the
ensemble size.
"""
import threading
from typing import Callable, NamedTuple, Optional, Sequence

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
from jax.sharding import AxisType, Mesh, NamedSharding, PartitionSpec as P, SingleDeviceSharding

from scanbias_jax import keys
from scanbias_jax.models import conv
from scanbias_jax.train import losses, member

AXIS = "members"


class Layout(NamedTuple):
  num_members: int
  num_devices: int
  members_per_device: int
  rounds: int

  @property
  def slots_per_round(self) -> int:
    return self.num_devices * self.members_per_device


def plan(num_members: int, num_devices: int, members_per_device: int = 0) -> Layout:
  """How many rounds of how many slots run `num_members` members on `num_devices`."""
  if num_members < 1 or num_devices < 1 or members_per_device < 0:
    raise ValueError(f"need num_members >= 1, num_devices >= 1, members_per_device >= 0; got "
                     f"{num_members}, {num_devices}, {members_per_device}")
  per_device = members_per_device or -(-num_members // num_devices)
  rounds = -(-num_members // (num_devices * per_device))
  return Layout(num_members, num_devices, per_device, rounds)


def member_keys(key: jax.Array, indices: Sequence[int]) -> jax.Array:
  """Typed keys of the members with these indices."""
  members = keys.stream(key, "members")
  return jnp.stack([keys.item(members, int(i)) for i in indices])


def make_mesh(num_devices: Optional[int] = None) -> Mesh:
  """A 1-D mesh named "members" over the first `num_devices` of this process's devices
  (all by default); several processes split the members among them (train/loop.py)."""
  devices = jax.local_devices()
  num_devices = num_devices or len(devices)
  if num_devices > len(devices):
    raise ValueError(f"asked for {num_devices} devices; only {len(devices)} are visible")
  return jax.make_mesh((num_devices,), (AXIS,), axis_types=(AxisType.Auto,),
                       devices=devices[:num_devices])


def _gather_members(trees, num_members):
  """Chunks (on any devices) -> host arrays with leading axis num_members."""
  trees = jax.device_get(trees)
  return jax.tree.map(lambda *leaves: np.concatenate(leaves)[:num_members], *trees)


class Ensemble:
  """The compiled ensemble programs. A state is a list of chunk states, each chunk a
  pytree whose leaves lead with that chunk's member axis.

  parallel="dispatch" (default): chunk c holds `members_per_device` members on device
  c % num_devices; every chunk runs the same single-device program (vmap over its
  members) and JAX's asynchronous dispatch runs the devices concurrently. Same
  program everywhere, hence the same bits on 1 device or on 4.
  parallel="shard_map": one chunk per round, its member axis sharded over a mesh
  with `jax.shard_map` (one SPMD program, and the path to multi-host runs). On
  XLA:CPU the partitioned program fuses slightly differently from the 1-device one:
  results then agree to float rounding, not bit for bit (BUILD_NOTES.md, "Device
  parallelism").
  """

  def __init__(self, program: member.MemberProgram, layout: Layout, mesh: Mesh,
               batch_size: int, eval_batch_size: int, first_member: int = 0,
               parallel: str = "dispatch"):
    if mesh.devices.size != layout.num_devices:
      raise ValueError(f"layout is for {layout.num_devices} devices, mesh has {mesh.devices.size}")
    if parallel not in ("dispatch", "shard_map"):
      raise ValueError(f"unknown parallel {parallel!r}; expected 'dispatch' or 'shard_map'")
    self.program, self.layout, self.mesh, self.parallel = program, layout, mesh, parallel
    self.first_member = first_member
    devices = list(mesh.devices.flat)
    if parallel == "shard_map":
      self.chunk_size = layout.slots_per_round
      self.member_shardings = [NamedSharding(mesh, P(AXIS))] * layout.rounds
      self.data_shardings = [NamedSharding(mesh, P())]
      self.data_index = [0] * layout.rounds
    else:
      self.chunk_size = layout.members_per_device
      chunks = layout.rounds * layout.num_devices
      self.member_shardings = [SingleDeviceSharding(devices[c % len(devices)]) for c in range(chunks)]
      self.data_shardings = [SingleDeviceSharding(d) for d in devices]
      self.data_index = [c % len(devices) for c in range(chunks)]

    def over_members(fn, in_axes):
      """fn vmapped over the member axis of the arguments whose in_axes is 0."""
      batched = jax.vmap(fn, in_axes=in_axes)
      if parallel == "dispatch":
        return batched
      # check_vma=False: with it on, a value that does not vary over devices (a
      # zero-initialised bias, say) gets its gradient psum-ed over the mesh, as in
      # data parallelism; our members are independent, so that would be wrong.
      specs = tuple(P(AXIS) if axis == 0 else P() for axis in in_axes)
      return jax.shard_map(batched, mesh=mesh, in_specs=specs, out_specs=P(AXIS),
                           check_vma=False)

    self.step_traces = 0

    def counted_step(*args):
      self.step_traces += 1  # runs only while JAX traces, i.e. before each compilation
      return program.step(*args)

    def gather(indices, x, y):
      return x[indices], y[indices]

    # Programs whose work is negligible (initialisation, which runs once, and the
    # epoch's bookkeeping) compile without XLA's optimiser: its passes cost seconds
    # per model on CPU (init's random-normal kernels: 5x) and save nothing that
    # matters. Only these few are compiled per data-set size; the costly step, the
    # BatchNorm pass and evaluation see the batch's shapes alone.
    cheap = {"compiler_options": {"xla_backend_optimization_level": 0}}
    self._init = jax.jit(over_members(program.init, (0, 0)), **cheap)
    self._plan = jax.jit(over_members(program.epoch_plan, (0, None)), **cheap)
    self._gather = jax.jit(over_members(gather, (0, None, None)), **cheap)
    # The programs that run the network: convolutions to XLA:CPU's Eigen (models/conv.py).
    network = {"compiler_options": conv.compiler_options()}
    self._step = jax.jit(over_members(counted_step, (0, 0, 0, 0, 0)), donate_argnums=0,
                         **network)
    self._eval = jax.jit(over_members(program.eval_logits, (0, None)), **network)
    if program.batch_moments is not None:
      self._moments = jax.jit(over_members(program.batch_moments, (0, 0, 0, 0, 0)), **network)
      def with_pooled(carry, moments):
        stacked = jax.tree.map(lambda *m: jnp.stack(m), *moments)
        return carry[0], program.pool_moments(stacked), carry[2]
      self._pool = jax.jit(over_members(with_pooled, (0, 0)), donate_argnums=0, **cheap)
    def finish(rest, carry, step_losses, val_chunks, val_y):
      val_logits = jnp.concatenate(val_chunks)[:val_y.shape[0]]
      return program.finish_epoch(rest, carry, jnp.stack(step_losses), val_logits, val_y)

    self._finish = jax.jit(over_members(finish, (0, 0, 0, 0, None)), donate_argnums=0, **cheap)
    self.batch_size, self.eval_batch_size = batch_size, eval_batch_size

  def place_data(self, data) -> list:
    """Copies of the data dict on the devices (made once; they stay for the whole run),
    with "val_chunks": validation inputs cut on the host into eval_batch_size chunks
    (the last padded by repetition), so no epoch slices device arrays: every slice of
    a new shape would be one more program to compile."""
    data = dict(data)
    val_x = np.asarray(data["val"]["x"])
    data["val_chunks"] = [val_x[idx] for idx in member.eval_chunks(len(val_x), self.eval_batch_size)]
    return [jax.device_put(data, sharding) for sharding in self.data_shardings]

  def _data(self, placed, chunk):
    if not isinstance(placed, list):
      placed = self.place_data(placed)
    return placed[self.data_index[chunk]]

  def init(self, key: jax.Array, data) -> list:
    """Fresh chunk states for the experiment key `key`."""
    size, first = self.chunk_size, self.first_member
    states = []
    for c, sharding in enumerate(self.member_shardings):
      train = self._data(data, c)["train"]
      if train["x"].shape[0] < self.batch_size:
        raise ValueError(f"batch_size {self.batch_size} exceeds the {train['x'].shape[0]} "
                         "training samples")
      # One batch is all init looks at; passing only it keeps one compilation per shape.
      # It comes from the epoch's gather program (already compiled for this data set).
      first_rows = np.tile(np.arange(self.batch_size), (size, 1))
      x, y = self._gather(first_rows, train["x"], train["y"])
      member_ids = range(first + c * size, first + (c + 1) * size)
      states.append(self._init(jax.device_put(member_keys(key, member_ids), sharding),
                               {"train": {"x": x, "y": y}}))
    return states

  def epoch(self, states: list, data) -> tuple[list, dict]:
    """One epoch of every member: (new states, host metrics with leading axis num_members).

    The same computation as `member.epoch`, run as one compiled program per step
    from Python rather than one program per epoch: XLA:CPU runs convolutions inside
    a while loop many times slower than outside one, and unrolling the steps into one
    program made compile time grow with the data set (BUILD_NOTES.md). Dispatch is
    asynchronous, so nothing waits on the host until the metrics are gathered.
    """
    results = []
    precise = self.program.batch_moments is not None  # BatchNorm statistics recomputed
    for c, state in enumerate(states):
      data_c = self._data(data, c)
      train, val = data_c["train"], data_c["val"]
      epoch_keys, order = self._plan(state, train["y"])
      # Each step's indices, cut on the host: slicing the device array would compile
      # a program per shape.
      steps = list(np.asarray(order).transpose(1, 0, 2))
      carry = (state["params"], state["batch_stats"], state["opt_state"])
      step_losses, batches = [], []
      kept = (self.program.moment_batches or len(steps)) if precise else 0
      for indices in steps:
        x, y = self._gather(indices, train["x"], train["y"])
        carry, loss = self._step(carry, epoch_keys, indices, x, y)
        step_losses.append(loss)
        if len(batches) < kept:
          batches.append(x)
      if precise:
        moments = [self._moments(carry[0], carry[1], epoch_keys, indices, x)
                   for indices, x in zip(steps, batches)]
        carry = self._pool(carry, moments)
      variables = {"params": carry[0], "batch_stats": carry[1]}
      chunks = [self._eval(variables, chunk) for chunk in data_c["val_chunks"]]
      # The steps consumed (donated) the state's params; finish needs only these.
      rest = {name: state[name] for name in ("key", "epoch", "best")}
      results.append(self._finish(rest, carry, step_losses, chunks, val["y"]))
    new_states = [state for state, _ in results]
    return new_states, _gather_members([m for _, m in results], self.layout.num_members)

  def predict(self, variables: list, x) -> np.ndarray:
    """Per-member probabilities [num_members, N, ...] of `variables` (see `best`, `last`).

    Runs validation's compiled program on chunks of eval_batch_size (the last
    padded by repetition), so prediction compiles nothing new for any N."""
    x = np.asarray(x)
    n, size = len(x), self.eval_batch_size
    if n == 0:
      chunk = jax.ShapeDtypeStruct((size,) + x.shape[1:], x.dtype)
      out = jax.eval_shape(self._eval, variables[0], chunk)
      return np.zeros((self.layout.num_members, 0) + out.shape[2:], np.float32)
    chunks = [x[np.minimum(np.arange(i, i + size), n - 1)] for i in range(0, n, size)]
    outputs = []
    for c, v in enumerate(variables):
      sharding = self.data_shardings[self.data_index[c]]
      logits = [self._eval(v, jax.device_put(chunk, sharding)) for chunk in chunks]
      outputs.append(np.concatenate(jax.device_get(logits), axis=1)[:, :n])
    return losses.ON_HOST[self.program.activation](
        _gather_members(outputs, self.layout.num_members))

  def batch_programs(self, train_x: tuple, y: tuple, eval_x: tuple) -> list:
    """[(name, jitted program, abstract arguments)]: the per-batch programs (init, step,
    BatchNorm moments, evaluation) as training calls them for one chunk of members on
    its device, from per-sample shapes alone (float32), for compiling ahead of the data
    (experiments/precompile.py). The committed sharding is part of a lowered program,
    hence of its cache key, so the abstract arguments carry the chunk's."""
    size, batch = self.chunk_size, self.batch_size
    sharding = self.member_shardings[0]

    def spec(shape, dtype=jnp.float32):
      return jax.ShapeDtypeStruct(tuple(shape), dtype, sharding=sharding)

    keys_ = jax.device_put(member_keys(jax.random.key(0), range(size)), sharding)
    x, labels = spec((size, batch) + tuple(train_x)), spec((size, batch) + tuple(y))
    first = {"train": {"x": x, "y": labels}}
    state = jax.tree.map(lambda a: spec(a.shape, a.dtype),
                         jax.eval_shape(self._init, keys_, first))
    params, batch_stats = state["params"], state["batch_stats"]
    # Training passes each step's indices as a host (numpy) array: not committed.
    epoch_keys, indices = state["key"], jax.ShapeDtypeStruct((size, batch), jnp.int32)
    out = [("init", self._init, (keys_, first)),
           ("step", self._step, ((params, batch_stats, state["opt_state"]), epoch_keys,
                                 indices, x, labels)),
           ("eval", self._eval, ({"params": params, "batch_stats": batch_stats},
                                 spec((self.eval_batch_size,) + tuple(eval_x))))]
    if self.program.batch_moments is not None:
      out.append(("moments", self._moments, (params, batch_stats, epoch_keys, indices, x)))
    return out


def best(states: list) -> list:
  """The variables of each member's best validation epoch."""
  return [{"params": s["best"]["params"], "batch_stats": s["best"]["batch_stats"]} for s in states]


def last(states: list) -> list:
  """The variables after each member's latest epoch."""
  return [{"params": s["params"], "batch_stats": s["batch_stats"]} for s in states]


def make_ensemble(config: ml_collections.ConfigDict, augment: Optional[member.Augment] = None,
                  eval_transform: Optional[member.Transform] = None,
                  mesh: Optional[Mesh] = None) -> Ensemble:
  """Members `first_member` .. `first_member + num_members - 1` over `mesh` (all devices
  by default). `first_member` lets a study add members to an ensemble later."""
  mesh = mesh or make_mesh(config.num_devices or None)
  layout = plan(config.num_members, mesh.devices.size, config.members_per_device)
  return Ensemble(member.make_member(config, augment, eval_transform), layout, mesh,
                  config.batch_size, config.eval_batch_size, config.first_member,
                  config.parallel)


_SHARED: dict = {}
_SHARED_LOCK = threading.Lock()  # conditions train in threads (experiments/common.py)


def shared_ensemble(config: ml_collections.ConfigDict, augment: Optional[member.Augment] = None,
                    eval_transform: Optional[member.Transform] = None,
                    mesh: Optional[Mesh] = None) -> Ensemble:
  """`make_ensemble`, reusing the Ensemble (hence its compiled programs) of an equal
  config and the same augment/transform objects and mesh made earlier in this
  process: a study's conditions share one config per task, and tracing and
  compiling a step costs seconds while a small condition trains in a few."""
  cache_key = (config.to_json(sort_keys=True), augment, eval_transform, mesh)
  with _SHARED_LOCK:
    if cache_key not in _SHARED:
      _SHARED[cache_key] = make_ensemble(config, augment, eval_transform, mesh)
    return _SHARED[cache_key]


def make_train(config: ml_collections.ConfigDict, augment: Optional[member.Augment] = None,
               eval_transform: Optional[member.Transform] = None,
               mesh: Optional[Mesh] = None) -> Callable:
  """`train(key, data) -> (states, metrics [num_members, num_epochs])` of the ensemble.

  Pure apart from its compiled-program cache: every epoch of every round runs the
  same jitted program that `loop.run` checkpoints between, so the two agree bit for
  bit.
  """
  ensemble = make_ensemble(config, augment, eval_transform, mesh)

  def train(key, data):
    data = ensemble.place_data(data)
    states = ensemble.init(key, data)
    history = []
    for _ in range(config.num_epochs):
      states, metrics = ensemble.epoch(states, data)
      history.append(metrics)
    return states, jax.tree.map(lambda *m: np.stack(m, axis=1), *history)

  train.ensemble = ensemble
  return train
