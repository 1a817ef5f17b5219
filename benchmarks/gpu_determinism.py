"""The determinism section of benchmarks/gpu_check.py: the toy checks of
tests/test_ensemble.py, then each model at paper widths trained twice and as a vmap."""
import importlib.util
import os

from absl import flags
import jax
import numpy as np

from benchmarks import bench_train
from benchmarks.gpu_steps import (ROOT, Run, SMALL_SHAPES, error_text, input_shape, say,
                                  train_config, with_overrides)
from scanbias_jax.train import ensemble, loop

FLAGS = flags.FLAGS


def host_tree(tree):
  return jax.tree.map(np.asarray, jax.device_get(tree))


def bitwise_equal(a, b) -> bool:
  if jax.tree.structure(a) != jax.tree.structure(b):
    return False
  return all(x.dtype == y.dtype and x.shape == y.shape and x.tobytes() == y.tobytes()
             for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b)))


def max_abs_difference(a, b) -> float:
  return max(float(np.max(np.abs(np.asarray(x, np.float64) - np.asarray(y, np.float64))))
             for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b)))


def trained(cfg, key, data):
  """(per-member host variables after training, host metrics history)."""
  states, history = ensemble.make_train(cfg)(key, data)
  chunks = host_tree(ensemble.last(states))
  members = [jax.tree.map(lambda a, i=i: a[i], chunk)
             for chunk in chunks for i in range(jax.tree.leaves(chunk)[0].shape[0])]
  return members[:cfg.num_members], history


def check(section: dict, name: str, passed, detail: str) -> None:
  status = "INFO" if passed is None else ("PASS" if passed else "FAIL")
  section["checks"].append({"name": name, "status": status, "detail": detail})
  say(f"{status} {name}: {detail}")


def train_toys():
  """tests/train_toys.py, by path: tests/ is no package, and a `tests` package that
  some other distribution installs would win over a namespace package."""
  spec = importlib.util.spec_from_file_location(
      "train_toys", os.path.join(ROOT, "tests", "train_toys.py"))
  module = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(module)
  return module


def toy_checks(section: dict) -> None:
  """tests/test_ensemble.py's checks on its toy task: the same config and key twice;
  test_member_of_an_ensemble_equals_member_trained_alone."""
  toys = train_toys()
  key, images = jax.random.key(0), toys.bright_square_images(jax.random.key(1))
  alone, history = trained(toys.config(num_members=1, first_member=2), key, images)
  again, history_again = trained(toys.config(num_members=1, first_member=2), key, images)
  check(section, "toy: same config and key twice", bitwise_equal(alone, again)
        and bitwise_equal(history, history_again), "parameters and metrics bitwise")
  one_each, _ = trained(toys.config(num_members=4, members_per_device=1), key, images)
  vmapped, _ = trained(toys.config(num_members=4), key, images)
  check(section, "toy: member 2 alone == member 2 of 4 at members_per_device=1",
        bitwise_equal(alone[0], one_each[2]), "bitwise (as tests/test_ensemble.py)")
  diff = max_abs_difference(alone[0], vmapped[2])
  check(section, "toy: member 2 alone vs member 2 in one vmap of 4", diff < 1e-5,
        f"max |diff| {diff:.3g} after 8 Adam steps; the test's tolerance 1e-5")


def section_determinism(run: Run, config) -> None:
  section = run.begin("determinism")
  section["checks"] = []
  section["xla_flags"] = os.environ.get("XLA_FLAGS", "")
  try:
    loop._check_reproducibility(train_config(config, "shallow_cnn"))
    check(section, "loop._check_reproducibility", True,
          f"backend {jax.default_backend()}, XLA_FLAGS {section['xla_flags']!r}")
  except RuntimeError as e:
    check(section, "loop._check_reproducibility", False, str(e))
  try:
    toy_checks(section)
  except Exception as e:  # pylint: disable=broad-except
    check(section, "toy checks", False, error_text(e))
  run.save()
  key = jax.random.key(0)
  for model in FLAGS.determinism_models:
    if not run.time_left("determinism"):
      section["checks"].append({"name": f"{model} runs", "status": "SKIPPED",
                                "detail": "time budget"})
      say(f"SKIPPED {model} runs: time budget")
      continue
    shape = SMALL_SHAPES[model] if not FLAGS.quick else input_shape(config, model)
    cfg = train_config(config, model, num_members=2, members_per_device=1, num_epochs=2)
    batch = cfg.batch_size
    n = 2 * batch  # 2 steps an epoch
    full = bench_train.data_for(model, tuple(shape), n + max(batch // 2, 2))["train"]
    data = {"train": {k: v[:n] for k, v in full.items()},
            "val": {k: v[n:] for k, v in full.items()}}
    label = f"{model} {tuple(shape)} batch {batch}"
    try:
      first, history1 = trained(cfg, key, data)
      second, history2 = trained(cfg, key, data)
      check(section, f"{label}: same config and key twice (2 epochs, 2 members)",
            bitwise_equal(first, second) and bitwise_equal(history1, history2),
            "parameters, BatchNorm statistics and metrics bitwise; max |diff| "
            f"{max_abs_difference(first, second):.3g}")
      vmapped, _ = trained(with_overrides(cfg, members_per_device=2), key, data)
      diff = max_abs_difference(first, vmapped)
      check(section, f"{label}: vmap of 2 vs 1 member per call", None,
            f"max |param diff| {diff:.3g} after 4 Adam steps (bitwise: "
            f"{bitwise_equal(first, vmapped)})")
    except Exception as e:  # pylint: disable=broad-except
      check(section, f"{label}: runs", False, error_text(e))
    run.save()
  failed = [c for c in section["checks"] if c["status"] == "FAIL"]
  run.end("determinism", "done" if not failed else "failed")


# ----------------------------------------------------------------------------- estimate


