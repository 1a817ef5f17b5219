"""The only place random keys are derived.

A stage receives one typed key (`jax.random.key`). Named streams separate the
stages (`stream(key, "synth")`), and items inside a stage are `fold_in(key, i)`
by index, so item i never depends on how many other items there are.
"""
import zlib

import jax
import numpy as np


def root(seed: int) -> jax.Array:
  """The typed root key of a run."""
  return jax.random.key(seed)


def stream(key: jax.Array, name: str) -> jax.Array:
  """A named sub-stream; the name is hashed with CRC32 so it is stable across runs."""
  return jax.random.fold_in(key, zlib.crc32(name.encode()) & 0x7FFFFFFF)


def item(key: jax.Array, index: int) -> jax.Array:
  """The key of item `index` (subject, member, epoch, step) of a stream."""
  return jax.random.fold_in(key, index)


def numpy_rng(key: jax.Array) -> np.random.Generator:
  """A numpy Generator seeded from a key, for host-side code that needs numpy."""
  words = np.asarray(jax.random.key_data(key), dtype=np.uint32).ravel()
  return np.random.Generator(np.random.PCG64(words.tolist()))


# Stacking or indexing typed key arrays runs a JAX program, compiled once per shape;
# these go through the raw key data on the host instead (the same keys, no program).
def stack(keys_list) -> jax.Array:
  """The keys of `keys_list` as one typed key array [n, ...]."""
  return jax.random.wrap_key_data(np.stack([np.asarray(jax.random.key_data(k))
                                            for k in keys_list]))


def take(keys_array: jax.Array, index) -> jax.Array:
  """keys_array[index] for a numpy index (an int array or a slice)."""
  return jax.random.wrap_key_data(np.asarray(jax.random.key_data(keys_array))[index])
