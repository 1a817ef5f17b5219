"""The seed-ensemble engine: reproducibility, member independence, learning, compiles."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest

import train_toys as toys
from scanbias_jax.train import ensemble, losses, member

KEY = jax.random.key(0)


@pytest.fixture(scope="module")
def images():
  return toys.bright_square_images(jax.random.key(1))


def test_same_config_and_key_twice_gives_identical_bits(images):
  config = toys.config(num_members=2, num_epochs=2, scan_unroll="always")
  runs = []
  for _ in range(2):
    train = ensemble.make_train(config)
    states, history = train(KEY, images)
    runs.append((states, history, train.ensemble.predict(ensemble.best(states), images["val"]["x"])))
  assert toys.bitwise_equal(runs[0][0], runs[1][0])
  assert toys.bitwise_equal(runs[0][1], runs[1][1])
  assert toys.bitwise_equal(runs[0][2], runs[1][2])
  probabilities = runs[0][2]
  assert probabilities.shape == (2, images["val"]["x"].shape[0])
  assert bool(((probabilities >= 0) & (probabilities <= 1)).all())


def test_member_of_an_ensemble_equals_member_trained_alone(images):
  # Member 2 of 4 against member 2 alone (its key does not depend on the others).
  alone, _ = ensemble.make_train(toys.config(num_members=1, first_member=2))(KEY, images)
  alone = ensemble.last(alone)[0]
  # Rounds of one member per call: the same program as alone, so the same bits.
  states, _ = ensemble.make_train(toys.config(num_members=4, members_per_device=1))(KEY, images)
  assert toys.bitwise_equal(ensemble.last(states)[2], alone)
  # All 4 in one vmap: each member's convolutions are its own (models/conv.py), but
  # XLA fuses the batched BatchNorm reductions and matrix products differently, so
  # the rounding differs; 8 Adam steps stay this close (~2e-7 measured).
  states, _ = ensemble.make_train(toys.config(num_members=4))(KEY, images)
  vmapped = jax.tree.map(lambda x: x[2], ensemble.last(states)[0])
  assert toys.max_abs_difference(vmapped, jax.tree.map(lambda x: x[0], alone)) < 1e-5


@pytest.mark.parametrize("bn_stats,bn_stats_batches", [("ema", 0), ("precise", 0), ("precise", 1)])
def test_engine_runs_the_pure_member_program_step_by_step(images, bn_stats, bn_stats_batches):
  # The engine compiles one program per step; member.train is the same
  # computation as one pure function (the purejaxrl form), compiled whole.
  config = toys.config(num_members=1, num_epochs=2, scan_unroll="always", bn_stats=bn_stats,
                       bn_stats_batches=bn_stats_batches)
  states, history = ensemble.make_train(config)(KEY, images)
  program = member.make_member(config)
  state, metrics = jax.jit(program.train)(ensemble.member_keys(KEY, [0])[0], images)
  engine = jax.tree.map(lambda x: x[0], ensemble.last(states)[0])
  pure = {"params": state["params"], "batch_stats": state["batch_stats"]}
  assert toys.max_abs_difference(engine, pure) < 1e-5
  np.testing.assert_allclose(history["val_loss"][0], metrics["val_loss"], rtol=1e-4)


def test_pooled_batch_moments_are_the_statistics_of_all_batches_at_once():
  rng = np.random.default_rng(0)
  batches = rng.normal(2.0, 3.0, (5, 8, 4)) * rng.uniform(0.5, 2.0, (5, 1, 1))  # [batch, n, ch]
  stacked = {"layer": {"BatchNorm_0": {"mean": jnp.asarray(batches.mean(1)),
                                       "var": jnp.asarray(batches.var(1))}}}
  pooled = member.pool_moments(stacked)["layer"]["BatchNorm_0"]
  everything = batches.reshape(-1, 4)
  np.testing.assert_allclose(pooled["mean"], everything.mean(0), rtol=1e-6)
  np.testing.assert_allclose(pooled["var"], everything.var(0), rtol=1e-5)


@pytest.mark.parametrize("bn_stats_batches", [0, 2])
def test_precise_statistics_are_those_of_the_last_weights_on_the_epochs_batches(
    images, bn_stats_batches):
  # After an epoch with bn_stats="precise", the first BatchNorm's mean is the
  # mean of the first convolution's output over every sample the epoch used (or
  # its first `bn_stats_batches` batches), computed here directly with the final
  # parameters.
  config = toys.config(num_members=1, num_epochs=1, bn_stats="precise",
                       bn_stats_batches=bn_stats_batches, batch_size=4)
  states, _ = ensemble.make_train(config)(KEY, images)
  final = jax.tree.map(lambda x: x[0], ensemble.last(states)[0])
  program = member.make_member(config)
  state = program.init(ensemble.member_keys(KEY, [0])[0], images)
  _, order = program.epoch_plan(state, images["train"]["y"])
  assert len(order) > 2  # the first two batches are not the whole epoch
  used = images["train"]["x"][order[:bn_stats_batches or None].reshape(-1)]
  kernel = final["params"]["ConvNormRelu_0"]["Conv_0"]["kernel"]
  conv = jax.lax.conv_general_dilated(used, kernel, (1, 1), "SAME",
                                      dimension_numbers=("NHWC", "HWIO", "NHWC"))
  stats = final["batch_stats"]["ConvNormRelu_0"]["BatchNorm_0"]
  np.testing.assert_allclose(stats["mean"], conv.mean((0, 1, 2)), rtol=1e-4, atol=1e-5)
  np.testing.assert_allclose(stats["var"], conv.var((0, 1, 2)), rtol=1e-3, atol=1e-5)


def test_unknown_bn_stats_is_an_error():
  with pytest.raises(ValueError, match="bn_stats"):
    member.make_member(toys.config(bn_stats="running"))


def test_members_differ_and_keep_their_own_batchnorm_statistics(images):
  states, _ = ensemble.make_train(toys.config(num_members=3))(KEY, images)
  stats = jax.tree.leaves(states[0]["batch_stats"])[0]
  assert stats.shape[0] == 3
  assert not np.allclose(stats[0], stats[1]) and not np.allclose(stats[1], stats[2])
  params = jax.tree.leaves(states[0]["params"])[0]
  assert not np.allclose(params[0], params[1])


def test_best_epoch_is_the_first_best_validation_score(images):
  config = toys.config(num_members=2, num_epochs=4, select_metric="val_loss")
  states, history = ensemble.make_train(config)(KEY, images)
  scores = np.asarray(history["val_loss"])
  best_epoch = np.argmin(scores, axis=1)
  np.testing.assert_array_equal(states[0]["best"]["epoch"], best_epoch)
  np.testing.assert_array_equal(history["best_epoch"][:, -1], best_epoch)
  np.testing.assert_array_equal(states[0]["best"]["metric"], scores.min(axis=1))


def test_a_tied_validation_accuracy_goes_to_the_lower_validation_loss(images):
  config = toys.config(num_members=2, num_epochs=6, select_metric="val_accuracy")
  states, history = ensemble.make_train(config)(KEY, images)
  accuracy, loss = np.asarray(history["val_accuracy"]), np.asarray(history["val_loss"])
  # numpy's lexicographic choice: the highest accuracy, then the lowest loss among those.
  expected = [min(np.flatnonzero(a == a.max()), key=lambda e: (l[e], e))
              for a, l in zip(accuracy, loss)]
  np.testing.assert_array_equal(states[0]["best"]["epoch"], expected)
  np.testing.assert_array_equal(states[0]["best"]["loss"], loss[np.arange(2), expected])
  ties = [np.sum(a == a.max()) for a in accuracy]
  assert max(ties) > 1, ties   # the toy task saturates: a tie was broken
  assert any(e != np.argmax(a) for e, a in zip(expected, accuracy))


def test_no_recompilation_after_the_first_epoch(images):
  compiles = []
  jax.monitoring.register_event_duration_secs_listener(
      lambda event, seconds, **kw: compiles.append(event) if "backend_compile" in event else None)
  ens = ensemble.make_ensemble(toys.config(num_members=2, num_epochs=4))
  data = ens.place_data(images)
  states = ens.init(KEY, data)
  states, _ = ens.epoch(states, data)
  after_first = len(compiles)
  for _ in range(3):
    states, metrics = ens.epoch(states, data)
  jax.block_until_ready(metrics)
  assert len(compiles) == after_first, compiles[after_first:]
  assert ens.step_traces == 1


def test_pluggable_augment_gets_a_key_per_sample_and_epoch():
  # "Name the Manufacturer": three random slices of a volume, stacked as channels.
  volumes = toys.sphere_volumes(jax.random.key(4), n=24, n_train=16)
  volumes = jax.tree.map(lambda a: a[..., 0] if a.ndim == 5 else a, volumes)

  def three_slices(key, volume):
    return volume[..., jax.random.choice(key, volume.shape[-1], (3,), replace=False)]

  config = toys.config(num_members=1, num_epochs=2)
  states, history = ensemble.make_train(
      config, augment=three_slices, eval_transform=lambda v: v[..., 6:9])(KEY, volumes)
  assert np.isfinite(history["train_loss"]).all()


@pytest.mark.parametrize("model, data, epochs, lr, target", [
    ("shallow_cnn", lambda: toys.bright_square_images(jax.random.key(1), n=96, n_train=64), 5, 5e-3, 0.95),
    ("resnet3d", lambda: toys.sphere_volumes(jax.random.key(2), n=96, n_train=64), 6, 3e-3, 0.9),
    ("unet3d", lambda: toys.sphere_volumes(jax.random.key(3), with_masks=True), 8, 1e-2, 0.8),
])
def test_models_learn_a_small_synthetic_task(model, data, epochs, lr, target):
  config = toys.config(model, num_members=1, num_epochs=epochs, learning_rate=lr)
  states, history = ensemble.make_train(config)(KEY, data())
  assert history["best_metric"][0, -1] >= target, history[config.select_metric]


def test_a_softmax_ensemble_learns_three_classes_and_predicts_distributions():
  """The audit's multi-class "Name the X": ShallowCNN with a logit a class, softmax
  cross-entropy, selected by balanced accuracy; predictions are distributions."""
  data = toys.square_corner_images(jax.random.key(4))
  config = toys.config(num_members=2, num_epochs=6, loss="softmax_cross_entropy",
                       select_metric="val_balanced_accuracy",
                       model_kwargs={**toys.SMALL_MODELS["shallow_cnn"], "classes": 3})
  train = ensemble.make_train(config)
  states, history = train(KEY, data)
  assert (history["best_metric"][:, -1] >= 0.9).all(), history["val_balanced_accuracy"]
  probabilities = train.ensemble.predict(ensemble.best(states), data["val"]["x"])
  assert probabilities.shape == (2, 32, 3)
  np.testing.assert_allclose(probabilities.sum(-1), 1.0, rtol=1e-5)
  own = member.make_member(config).predict(jax.tree.map(lambda x: x[0], ensemble.best(states)[0]),
                                           data["val"]["x"])
  np.testing.assert_allclose(probabilities[0], own, rtol=1e-5, atol=1e-6)


def test_multiclass_metrics_match_scikit_learn():
  from sklearn.metrics import balanced_accuracy_score, log_loss, roc_auc_score
  rng = np.random.default_rng(0)
  labels = np.array([0, 0, 0, 0, 1, 1, 2, 2, 2, 2, 2, 1])
  logits = rng.normal(size=(12, 3)) + 1.5 * np.eye(3)[labels] * rng.random((12, 1))
  probs = np.exp(logits) / np.exp(logits).sum(1, keepdims=True)
  got = losses.multiclass_metrics(jnp.asarray(logits, jnp.float32),
                                  jnp.asarray(labels, jnp.float32))
  assert float(got["val_loss"]) == pytest.approx(log_loss(labels, probs), rel=1e-5)
  assert float(got["val_accuracy"]) == pytest.approx(np.mean(logits.argmax(1) == labels))
  assert float(got["val_balanced_accuracy"]) == pytest.approx(
      balanced_accuracy_score(labels, logits.argmax(1)))
  assert float(got["val_auroc"]) == pytest.approx(
      roc_auc_score(labels, probs, multi_class="ovr", average="macro"), rel=1e-5)


def test_bfloat16_compute_keeps_float32_parameters(images):
  states, history = ensemble.make_train(toys.config(compute_dtype="bfloat16"))(KEY, images)
  assert all(p.dtype == jnp.float32 for p in jax.tree.leaves(states[0]["params"]))
  assert np.isfinite(history["train_loss"]).all()


def test_layout_pads_members_to_whole_rounds():
  assert ensemble.plan(10, 4) == ensemble.Layout(10, 4, 3, 1)
  assert ensemble.plan(10, 4, 2) == ensemble.Layout(10, 4, 2, 2)
  assert ensemble.plan(3, 1, 1).rounds == 3
  with pytest.raises(ValueError):
    ensemble.plan(0, 1)


def test_validation_metrics_match_their_definitions():
  from sklearn.metrics import roc_auc_score
  scores = jnp.array([0.1, 0.4, 0.4, 0.8, -1.0, 2.0])
  labels = jnp.array([0.0, 1.0, 0.0, 1.0, 0.0, 1.0])
  assert float(losses.auroc(scores, labels)) == pytest.approx(roc_auc_score(labels, scores))
  masks = jnp.zeros((2, 4, 4)).at[0, :2].set(1.0)
  perfect = jnp.where(masks > 0, 20.0, -20.0)
  np.testing.assert_allclose(losses.hard_dice(perfect, masks), [1.0, 1.0])
  np.testing.assert_allclose(losses.soft_dice_loss(perfect, masks), [0.0, 0.0], atol=1e-6)


def test_prediction_matches_the_pure_member_predict(images):
  config = toys.config(num_members=2, num_epochs=1, eval_batch_size=5)  # 16 val: padded chunks
  train = ensemble.make_train(config)
  states, _ = train(KEY, images)
  variables = ensemble.best(states)
  probabilities = train.ensemble.predict(variables, images["val"]["x"])
  program = member.make_member(config)
  for i in range(2):
    own = jax.tree.map(lambda x: x[i], variables[0])
    np.testing.assert_allclose(probabilities[i], program.predict(own, images["val"]["x"]),
                               rtol=1e-5, atol=1e-6)
  assert train.ensemble.predict(variables, images["val"]["x"][:0]).shape == (2, 0)


def test_conditions_with_equal_configs_share_compiled_programs(images, tmp_path):
  from scanbias_jax.train import loop
  config = toys.config(num_members=1, num_epochs=1, learning_rate=1e-3)
  first = loop.run(KEY, config, images, str(tmp_path / "a"))
  smaller = jax.tree.map(lambda x: x[:24], images)  # another condition: fewer studies
  second = loop.run(KEY, config, smaller, str(tmp_path / "b"))
  assert second.ensemble is first.ensemble and first.ensemble.step_traces == 1


def test_repeated_samples_are_scored_once_with_the_same_bits(images):
  from scanbias_jax.experiments import common
  config = toys.config(num_members=2, num_epochs=1)
  train = ensemble.make_train(config)
  states, _ = train(KEY, images)
  variables = ensemble.best(states)
  x = np.asarray(images["val"]["x"])
  repeated = x[[0, 3, 0, 0, 5, 3, 7, 0]]  # as a paired set's sphere-free copies
  calls = []
  original = train.ensemble.predict
  train.ensemble.predict = lambda v, chunk: calls.append(len(chunk)) or original(v, chunk)
  try:
    scores = common.predict(train.ensemble, variables, repeated, chunk=2)
  finally:
    train.ensemble.predict = original
  assert len(calls) == 2  # 4 distinct samples, 2 a chunk
  np.testing.assert_array_equal(scores, common._predict_chunks(train.ensemble, variables,
                                                               repeated, 2))
