"""The PyTorch twins in benchmarks/ match the Flax networks: parameters, shapes, outputs."""
import jax
import numpy as np
import pytest

torch = pytest.importorskip("torch")

from benchmarks import bench_vs_torch, torch_models  # noqa: E402  (needs torch)
from scanbias_jax import models  # noqa: E402

SIZES = [(model, shape, kwargs) for model, shape, _, kwargs, _ in bench_vs_torch.DEFAULT_ROWS]
SIZES += [("shallow_cnn", (256, 256, 3), {}), ("resnet3d", (256, 256, 35, 1), {}),
          ("unet3d", (256, 256, 32, 1), {})]
# Odd sizes exercise 'SAME' stride-2 padding and the -inf padding of the pools.
TINY = {
    "shallow_cnn": ((33, 31, 3), dict(widths=(4, 8, 8))),
    "resnet3d": ((17, 16, 9, 1), dict(widths=(4, 4, 8, 8), stem_width=4, hidden=16)),
    "unet3d": ((16, 16, 8, 1), dict(widths=(2, 4, 8))),
}


@pytest.mark.parametrize("model,shape,kwargs", SIZES, ids=lambda v: str(v).replace(" ", ""))
def test_parameter_counts_match_flax(model, shape, kwargs):
  assert bench_vs_torch.check_param_counts(model, shape, kwargs) > 0


def random_variables(flax_model, x):
  """Variables shaped as `init`'s, drawn by numpy: compiling `init` takes seconds."""
  shapes = jax.eval_shape(lambda k: flax_model.init(k, x, train=False), jax.random.key(0))
  rng = np.random.default_rng(1)

  def draw(path, leaf):
    name = path[-1].key
    if name == "var":
      return 1.0 + 0.1 * rng.random(leaf.shape, dtype=np.float32)
    if name in ("mean", "bias"):
      return 0.1 * rng.standard_normal(leaf.shape, dtype=np.float32)
    if name == "scale":
      return 1.0 + 0.1 * rng.standard_normal(leaf.shape, dtype=np.float32)
    fan_in = int(np.prod(leaf.shape[:-1]))  # kernels: (k..., in, out)
    return rng.standard_normal(leaf.shape, dtype=np.float32) / np.sqrt(fan_in)

  return jax.tree_util.tree_map_with_path(draw, shapes)


@pytest.mark.parametrize("name", sorted(TINY))
def test_outputs_match_flax_with_copied_weights(name):
  shape, kwargs = TINY[name]
  x = np.random.default_rng(0).standard_normal((3,) + shape, dtype=np.float32)
  flax_model = models.build(name, **kwargs)
  variables = random_variables(flax_model, x)

  @jax.jit
  def run(variables, x):
    train_out, _ = flax_model.apply(variables, x, train=True, mutable=["batch_stats"])
    return flax_model.apply(variables, x, train=False), train_out

  eval_out, train_out = jax.device_get(run(variables, x))
  net = torch_models.build(name, shape, **kwargs)
  torch_models.load_flax_params(net, flax_model, variables, torch.from_numpy(x))
  with torch.no_grad():
    torch_eval = net.eval()(torch.from_numpy(x)).numpy()
    torch_train = net.train()(torch.from_numpy(x)).numpy()
  assert torch_eval.shape == eval_out.shape
  for ours, theirs in ((torch_eval, eval_out), (torch_train, train_out)):
    np.testing.assert_allclose(ours, theirs, rtol=1e-4, atol=1e-4 * np.abs(theirs).max())
