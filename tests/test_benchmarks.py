"""The benchmarks' JAX programs still build and step with the engine as it is now
(their ConfigDicts are written by hand; a key the engine newly needs broke them once)."""
import numpy as np

from benchmarks import bench_train, common


def test_bench_vs_torch_member_step_runs():
  x, y = common.batch_for("shallow_cnn", (8, 8, 3), 4)
  config = common.train_config("shallow_cnn", dict(widths=(4,), head="mean"), 1e-3, 4)
  step, carry, n_params = common.member_step(config, x, y)
  carry, loss = step(carry, x, y)
  assert n_params > 0 and np.isfinite(float(loss))


def test_bench_train_measures_an_ensemble_epoch():
  rate, seconds, _, _ = bench_train.measure(bench_train.config("shallow_cnn", batch=4),
                                            (8, 8, 3), steps=1)
  assert rate > 0 and np.isfinite(rate) and seconds > 0
