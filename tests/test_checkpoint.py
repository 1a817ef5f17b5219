"""Checkpointed runs: resume after an interruption ends with the same bits."""
import json
import os

import jax
import jax.numpy as jnp
import pytest

import train_toys as toys
from scanbias_jax.train import checkpoint, ensemble, loop

KEY = jax.random.key(0)


@pytest.fixture(scope="module")
def images():
  return toys.bright_square_images(jax.random.key(1))


def test_resume_after_interruption_equals_uninterrupted(images, tmp_path):
  config = toys.config(num_members=2, num_epochs=4, keep_checkpoints=2, scan_unroll="always")
  straight = loop.run(KEY, config, images, str(tmp_path / "straight"))
  interrupted_dir = str(tmp_path / "interrupted")
  loop.run(KEY, config, images, interrupted_dir, stop_after_epochs=2)
  resumed = loop.run(KEY, config, images, interrupted_dir)

  assert toys.bitwise_equal(straight.states, resumed.states)
  assert resumed.ensemble.step_traces == 1  # restored states need no new program
  strip = lambda history: [{k: v for k, v in r.items() if k != "seconds"} for r in history]
  assert strip(straight.history) == strip(resumed.history)
  assert [(r["epoch"], r["member"]) for r in resumed.history] == [
      (e, m) for e in range(4) for m in range(2)]
  # Bounded retention, no temporary directories left behind.
  assert sorted(os.listdir(os.path.join(interrupted_dir, "checkpoints"))) == ["3", "4"]
  with open(os.path.join(interrupted_dir, "train_config.json")) as f:
    assert json.load(f)["num_epochs"] == 4
  # A finished run resumed again is a no-op that returns the same states.
  again = loop.run(KEY, config, images, interrupted_dir)
  assert toys.bitwise_equal(again.states, straight.states)
  predictions = again.ensemble.predict(ensemble.best(again.states), images["val"]["x"])
  assert predictions.shape == (2, images["val"]["x"].shape[0])


def test_resume_checks_the_stored_config(images, tmp_path):
  config = toys.config(num_members=2, num_epochs=2, scan_unroll="always")
  straight = loop.run(KEY, config, images, str(tmp_path / "straight"))
  workdir = str(tmp_path / "extended")
  loop.run(KEY, toys.config(num_members=2, num_epochs=1, scan_unroll="always"), images, workdir)
  config_path = os.path.join(workdir, "train_config.json")
  with open(config_path) as f:
    stored = f.read()

  changed = toys.config(num_members=2, num_epochs=2, scan_unroll="always", learning_rate=1e-3)
  with pytest.raises(ValueError, match=r"(?s)extended.*learning_rate: 0\.005 -> 0\.001"):
    loop.run(KEY, changed, images, workdir)
  with open(config_path) as f:
    assert f.read() == stored  # the stored config still describes the checkpoints

  # More epochs (and other bookkeeping) continue the run, as if asked for at first.
  extended = toys.config(num_members=2, num_epochs=2, scan_unroll="always",
                         keep_checkpoints=3, checkpoint_every_epochs=2)
  resumed = loop.run(KEY, extended, images, workdir)
  assert toys.bitwise_equal(straight.states, resumed.states)
  assert [r["epoch"] for r in resumed.history] == [0, 0, 1, 1]
  with open(config_path) as f:
    assert json.load(f)["num_epochs"] == 2
  with pytest.raises(ValueError, match="past num_epochs=1"):
    loop.run(KEY, toys.config(num_members=2, num_epochs=1, scan_unroll="always"), images,
             workdir)


def test_checkpoints_round_trip_typed_keys_and_shardings(images, tmp_path):
  ens = ensemble.make_ensemble(toys.config(num_members=2))
  states = ens.init(KEY, ens.place_data(images))
  store = checkpoint.Checkpoints(str(tmp_path), max_to_keep=1)
  store.save(1, states)
  store.save(2, states)
  assert store.all() == [2] and store.latest() == 2
  restored = store.restore(2, states)
  store.close()
  assert toys.bitwise_equal(restored, states)
  assert jax.dtypes.issubdtype(restored[0]["key"].dtype, jax.dtypes.prng_key)
  for a, b in zip(jax.tree.leaves(restored), jax.tree.leaves(states)):
    assert a.sharding.is_equivalent_to(b.sharding, a.ndim)


def test_exact_reproducibility_flags_are_added_once(monkeypatch):
  monkeypatch.setenv("XLA_FLAGS", "--xla_force_host_platform_device_count=2")
  loop.request_exact_reproducibility()
  loop.request_exact_reproducibility()
  flags = os.environ["XLA_FLAGS"].split()
  assert flags.count("--xla_gpu_deterministic_ops=true") == 1
  assert "--xla_force_host_platform_device_count=2" in flags


def test_restore_rejects_a_checkpoint_of_another_state(tmp_path):
  small = {"params": {"w": jnp.ones((3, 4))}, "key": jax.random.key(1), "epoch": jnp.int32(2)}
  ckpts = checkpoint.Checkpoints(str(tmp_path))
  ckpts.save(1, small)
  restored = ckpts.restore(1, small)  # the template gives shapes, dtypes, shardings
  assert toys.bitwise_equal(restored, small)
  larger = dict(small, params={"w": jnp.ones((3, 5))})
  with pytest.raises(ValueError, match="does not match"):
    ckpts.restore(1, larger)
  ckpts.close()
