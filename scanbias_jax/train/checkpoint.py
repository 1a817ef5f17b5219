"""Checkpoints of ensemble states: the only module that imports orbax.

Orbax's CheckpointManager writes each step into a temporary directory and renames
it when complete, so a killed run never leaves a checkpoint that a later run
trusts; `max_to_keep` bounds how many stay on disk. Saves are synchronous: when
`save` returns, the checkpoint is on disk (the loop then appends the metrics of
that epoch, so the two never disagree).

Typed PRNG keys are stored as their raw uint32 key data and re-wrapped on restore.
The leaves are stored packed, one flat array per dtype in tree order: orbax spends
~2 ms per array, and a ResNet ensemble state has hundreds (1 s per save against
0.04 s packed; BUILD_NOTES.md). Restore splits them by the template's leaves.
"""
import os
from typing import Any, Optional

import jax
import numpy as np
import orbax.checkpoint as ocp

from scanbias_jax import files

PyTree = Any


def _is_key(leaf) -> bool:
  return isinstance(leaf, jax.Array) and jax.dtypes.issubdtype(leaf.dtype, jax.dtypes.prng_key)


def _to_storable(tree: PyTree) -> PyTree:
  return jax.tree.map(lambda x: jax.random.key_data(x) if _is_key(x) else x, tree)


def _local_cpu() -> jax.sharding.Sharding:
  return jax.sharding.SingleDeviceSharding(jax.local_devices(backend="cpu")[0])


def _pack(tree: PyTree) -> dict:
  """{dtype name: the leaves of that dtype, raveled and concatenated in tree order}."""
  groups = {}
  for leaf in jax.tree.leaves(tree):
    groups.setdefault(np.dtype(leaf.dtype).name, []).append(np.asarray(leaf).ravel())
  return {name: np.concatenate(parts) for name, parts in groups.items()}


def _packed_abstract(template: PyTree) -> dict:
  sizes = {}
  for leaf in jax.tree.leaves(template):
    name = np.dtype(leaf.dtype).name
    sizes[name] = sizes.get(name, 0) + int(np.prod(leaf.shape))
  return {name: jax.ShapeDtypeStruct((size,), np.dtype(name), sharding=_local_cpu())
          for name, size in sizes.items()}


def _unpack(packed: dict, template: PyTree) -> PyTree:
  """The leaves of `template` (shape, dtype, sharding) cut from the packed arrays."""
  leaves, treedef = jax.tree.flatten(template)
  offsets, out = {}, []
  for leaf in leaves:
    name, size = np.dtype(leaf.dtype).name, int(np.prod(leaf.shape))
    start = offsets.get(name, 0)
    flat = np.asarray(packed[name])[start:start + size]
    out.append(jax.device_put(flat.reshape(leaf.shape), leaf.sharding))
    offsets[name] = start + size
  return jax.tree.unflatten(treedef, out)


def _from_storable(tree: PyTree, template: PyTree) -> PyTree:
  return jax.tree.map(
      lambda x, t: jax.random.wrap_key_data(x, impl=jax.random.key_impl(t)) if _is_key(t) else x,
      tree, template)


class Checkpoints:
  """Numbered checkpoints (by completed epochs) of one run's ensemble states.

  One process: orbax. Under jax.distributed each process checkpoints its own block
  of members (train/loop.py), host-local arrays that orbax 0.12 refuses in a
  multi-process job (and its numpy handler writes from process 0 only): there the
  same packed arrays go to `<directory>/<epochs>.npz`, written atomically.
  """

  def __init__(self, directory: str, max_to_keep: int = 2, read_only: bool = False):
    self._directory, self._max_to_keep = os.path.abspath(directory), max_to_keep
    self._manager = None
    if jax.process_count() > 1:
      if not read_only:
        os.makedirs(self._directory, exist_ok=True)
      return
    options = ocp.CheckpointManagerOptions(
        max_to_keep=max_to_keep, create=not read_only, cleanup_tmp_directories=not read_only,
        enable_async_checkpointing=False, read_only=read_only)
    self._manager = ocp.CheckpointManager(self._directory, options=options)

  def latest(self) -> Optional[int]:
    """The number of completed epochs of the newest checkpoint, or None."""
    if self._manager is None:
      return max(self.all(), default=None)
    return self._manager.latest_step()

  def all(self) -> list[int]:
    if self._manager is None:
      names = os.listdir(self._directory) if os.path.isdir(self._directory) else []
      return sorted(int(n[:-4]) for n in names if n.endswith(".npz") and n[:-4].isdigit())
    return list(self._manager.all_steps())

  def _npz(self, epochs_done: int) -> str:
    return os.path.join(self._directory, f"{epochs_done}.npz")

  def save(self, epochs_done: int, states: PyTree) -> None:
    packed = _pack(_to_storable(states))
    if self._manager is None:
      with files.atomic_path(self._npz(epochs_done), sync=True) as temporary:
        with open(temporary, "wb") as f:
          np.savez(f, **packed)
      for old in self.all()[:-self._max_to_keep]:
        os.remove(self._npz(old))
      return
    self._manager.save(epochs_done, args=ocp.args.StandardSave(packed))
    self._manager.wait_until_finished()

  def restore(self, epochs_done: int, template: PyTree) -> PyTree:
    """The states saved at `epochs_done`, with the shapes, dtypes and shardings of `template`.

    A checkpoint of a different model or ensemble layout fails here (sizes or
    dtypes differ) rather than later; loop.run checks the config first."""
    storable = _to_storable(template)
    abstract = _packed_abstract(storable)
    try:
      if self._manager is None:
        with np.load(self._npz(epochs_done)) as stored:
          packed = {name: stored[name] for name in stored.files}
        if {n: (a.shape, a.dtype) for n, a in packed.items()} != \
            {n: (a.shape, a.dtype) for n, a in abstract.items()}:
          raise ValueError("stored arrays differ in size or type")
      else:
        packed = self._manager.restore(epochs_done, args=ocp.args.StandardRestore(abstract))
    except Exception as e:  # orbax raises assorted types for a mismatched target
      raise ValueError(f"checkpoint {epochs_done} in {self._directory} does not match "
                       f"the model's state (different model or ensemble layout?): {e}") from e
    return _from_storable(_unpack(packed, storable), template)

  def close(self) -> None:
    if self._manager is not None:
      self._manager.close()
