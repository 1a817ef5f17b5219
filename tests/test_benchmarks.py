"""The benchmarks' JAX programs still build and step with the engine as it is now
(their ConfigDicts are written by hand; a key the engine newly needs broke them once)."""
import jax
import numpy as np

from benchmarks import bench_train, common


def test_bench_vs_torch_member_step_runs():
  x, y = common.batch_for("shallow_cnn", (8, 8, 3), 4)
  config = common.train_config("shallow_cnn", dict(widths=(4,), head="mean"), 1e-3, 4)
  step, carry, n_params = common.member_step(config, x, y)
  carry, loss = step(carry, x, y)
  assert n_params > 0 and np.isfinite(float(loss))


def test_bench_train_config_builds_an_ensemble_step():
  from scanbias_jax.train import member  # pylint: disable=import-outside-toplevel
  config = bench_train.config("shallow_cnn", batch=4)
  spec = member.member_spec(config, None, None)
  assert spec is not None
  data = bench_train.data_for("shallow_cnn", (8, 8, 3), 4)
  assert jax.tree.leaves(data)
