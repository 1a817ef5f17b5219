"""The members spread over 4 forced host devices give the 1-device bits.

Runs in a fresh Python: the device count is fixed when JAX starts, and the rest
of the suite (under pytest-xdist) runs on one device.
"""
import os
import subprocess
import sys
import textwrap

SCRIPT = textwrap.dedent("""
  import jax, numpy as np
  import train_toys as toys
  from scanbias_jax.train import ensemble
  assert jax.device_count() == 4, jax.devices()
  key, data = jax.random.key(0), toys.bright_square_images(jax.random.key(1), n=24, n_train=16)

  def run(devices, members, per_device, parallel="dispatch"):
    config = toys.config(num_members=members, members_per_device=per_device, num_epochs=2,
                         parallel=parallel)
    states, history = ensemble.make_train(config, mesh=ensemble.make_mesh(devices))(key, data)
    return jax.tree.map(lambda *x: np.concatenate([np.asarray(a) for a in x])[:members],
                        *ensemble.last(states)), history

  # 4 members, one per device, against 4 rounds on one device.
  sharded, sharded_history = run(4, 4, 1)
  single, single_history = run(1, 4, 1)
  assert toys.bitwise_equal(sharded, single)
  assert toys.bitwise_equal(sharded_history, single_history)
  # 3 members on 2 devices x 2 slots (one padding member, dropped) against 1 device.
  padded, padded_history = run(2, 3, 2)
  assert padded_history["val_loss"].shape == (3, 2)
  assert toys.bitwise_equal(padded, run(1, 3, 2)[0])
  # One SPMD program (shard_map): same members, equal to float rounding only.
  spmd, _ = run(4, 4, 1, "shard_map")
  assert toys.max_abs_difference(spmd, single) < 1e-5
  print("OK")
""")


def test_sharded_over_four_devices_equals_unsharded_bitwise():
  here = os.path.dirname(os.path.abspath(__file__))
  env = dict(os.environ, XLA_FLAGS="--xla_force_host_platform_device_count=4",
             PYTHONPATH=os.pathsep.join([here, os.path.dirname(here)]))
  result = subprocess.run([sys.executable, "-c", SCRIPT], env=env, capture_output=True,
                          text=True, timeout=600)
  assert result.returncode == 0 and "OK" in result.stdout, result.stderr[-3000:]
