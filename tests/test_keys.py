"""keys.stack / keys.take: the same keys as jnp.stack and indexing, without a program."""
import jax
import jax.numpy as jnp
import numpy as np

from scanbias_jax import keys


def _data(k):
  return np.asarray(jax.random.key_data(k))


def test_stack_and_take_equal_jnp_stack_and_indexing():
  root = keys.root(3)
  items = [keys.item(keys.stream(root, "s"), i) for i in range(5)]
  stacked = keys.stack(items)
  np.testing.assert_array_equal(_data(stacked), _data(jnp.stack(items)))
  assert stacked.dtype == root.dtype and stacked.shape == (5,)
  rows = np.array([4, 0, 0, 2])
  np.testing.assert_array_equal(_data(keys.take(stacked, rows)), _data(stacked[rows]))
  np.testing.assert_array_equal(_data(keys.take(stacked, 3)), _data(items[3]))
  # Taken keys draw what the originals draw.
  np.testing.assert_array_equal(jax.random.uniform(keys.take(stacked, 1), (3,)),
                                jax.random.uniform(items[1], (3,)))
