"""Checkpoints of ensemble states: the only module that imports orbax.

Orbax's CheckpointManager writes each step into a temporary directory and renames
it when complete, so a killed run never leaves a checkpoint that a later run
trusts; `max_to_keep` bounds how many stay on disk. Saves are synchronous: when
`save` returns, the checkpoint is on disk (the loop then appends the metrics of
that epoch, so the two never disagree).

Typed PRNG keys are stored as their raw uint32 key data and re-wrapped on restore.
"""
import os
from typing import Any, Optional

import jax
import orbax.checkpoint as ocp

PyTree = Any


def _is_key(leaf) -> bool:
  return isinstance(leaf, jax.Array) and jax.dtypes.issubdtype(leaf.dtype, jax.dtypes.prng_key)


def _to_storable(tree: PyTree) -> PyTree:
  return jax.tree.map(lambda x: jax.random.key_data(x) if _is_key(x) else x, tree)


def _abstract(tree: PyTree) -> PyTree:
  """Shape, dtype and sharding of every leaf: what a restore must reproduce exactly."""
  return jax.tree.map(lambda x: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=x.sharding),
                      _to_storable(tree))


def _from_storable(tree: PyTree, template: PyTree) -> PyTree:
  return jax.tree.map(
      lambda x, t: jax.random.wrap_key_data(x, impl=jax.random.key_impl(t)) if _is_key(t) else x,
      tree, template)


class Checkpoints:
  """Numbered checkpoints (by completed epochs) of one run's ensemble states."""

  def __init__(self, directory: str, max_to_keep: int = 2):
    options = ocp.CheckpointManagerOptions(
        max_to_keep=max_to_keep, create=True, cleanup_tmp_directories=True,
        enable_async_checkpointing=False)
    self._manager = ocp.CheckpointManager(os.path.abspath(directory), options=options)

  def latest(self) -> Optional[int]:
    """The number of completed epochs of the newest checkpoint, or None."""
    return self._manager.latest_step()

  def all(self) -> list[int]:
    return list(self._manager.all_steps())

  def save(self, epochs_done: int, states: PyTree) -> None:
    self._manager.save(epochs_done, args=ocp.args.StandardSave(_to_storable(states)))
    self._manager.wait_until_finished()

  def restore(self, epochs_done: int, template: PyTree) -> PyTree:
    """The states saved at `epochs_done`, with the shapes, dtypes and shardings of `template`."""
    restored = self._manager.restore(
        epochs_done, args=ocp.args.StandardRestore(_abstract(template)))
    return _from_storable(restored, template)

  def close(self) -> None:
    self._manager.close()
