"""Sphere lesions: inside the brain, voxel statistics, determinism, shared centres."""
import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from scanbias_jax.experiments import datasets
from scanbias_jax.lesions import spheres
from scanbias_jax.synth import lesion as anatomy
from scanbias_jax.preprocess import window
from scanbias_jax.synth import atlas_head, phantom, scanner, vendors
from scanbias_jax.synth import geometry as geo

SPACING = (1.0, 1.0, 5.0)  # the paper grid's anisotropy: ~1 mm pixels, 5 mm slices
PARAMS = spheres.SphereParams()


@pytest.fixture(scope="module")
def brain():
  """An ellipsoidal brain (65 x 80 x 60 mm semi-axes) on a 160 x 180 x 30 grid."""
  shape = (160, 180, 30)
  grid = np.meshgrid(*[(np.arange(n) - (n - 1) / 2) * s for n, s in zip(shape, SPACING)],
                     indexing="ij")
  mask = (grid[0] / 65) ** 2 + (grid[1] / 80) ** 2 + (grid[2] / 60) ** 2 < 1
  rng = np.random.default_rng(0)  # the background texture only; not part of any draw
  volume = np.where(mask, 30.0, -1000.0) + rng.normal(0, 4, shape)
  return mask, volume.astype(np.float32)


insert = jax.jit(spheres.insert_sphere)


def draws(mask, key, ids):
  return {s: spheres.draw_sphere(spheres.study_key(key, s), mask, SPACING, PARAMS) for s in ids}


def test_spheres_stay_inside_the_brain_and_have_the_physical_radius(brain):
  mask, volume = brain
  key = jax.random.key(0)
  for study_id, draw in draws(mask, key, [f"study-{i:016x}" for i in range(3)]).items():
    assert draw["fits"] == 1
    assert 21 <= draw["large_radius_mm"] <= 26 and 13 <= draw["small_radius_mm"] <= 17
    for difficulty, small in (("easy", False), ("hard", True)):
      spec = spheres.spec_from_row(draw, difficulty, small, SPACING)
      inside = np.asarray(spheres.sphere_mask(mask.shape, spec))
      assert inside.any() and not (inside & ~mask).any()
      r = float(spec.radius_mm)
      assert inside.sum() == pytest.approx(4 / 3 * np.pi * r ** 3 / 5.0, rel=0.08)
      ks = np.flatnonzero(inside.any(axis=(0, 1)))
      assert ks.size == 2 * int(r // 5.0) + 1   # 5 mm slices: the extent along k
      out = np.asarray(insert(volume, spec, spheres.voxel_key(key, study_id, "x")))
      np.testing.assert_array_equal(out[~inside], volume[~inside])   # replaced, not added
      assert out[inside].mean() == pytest.approx(float(spec.mean_hu), abs=0.15)
      assert out[inside].std(ddof=1) == pytest.approx(float(spec.std_hu), rel=0.06)


def test_same_key_same_spheres_other_key_other_spheres(brain):
  mask, _ = brain
  ids = ["study-00000000000000aa", "study-00000000000000bb"]
  first, again = draws(mask, jax.random.key(3), ids), draws(mask, jax.random.key(3), ids)
  assert first == again
  assert draws(mask, jax.random.key(4), ids) != first
  assert first[ids[0]] != first[ids[1]]
  # A study's draw does not depend on which other studies are in the cohort.
  assert draws(mask, jax.random.key(3), ids[:1])[ids[0]] == first[ids[0]]


def test_difficulties_share_centres_and_small_sets_are_nested():
  rows = [dict(study_id=f"study-{i:016x}", vendor=v, split=s)
          for i, (v, s) in enumerate((v, s) for v in ("A", "B") for s in ("train", "test")
                                     for _ in range(40))]
  key = jax.random.key(1)
  labels = spheres.assign_labels(rows, key, "vendor")
  for value in ("A", "B"):
    assert sum(labels[r["study_id"]] for r in rows if r["vendor"] == value) == 40
  rows = [dict(r, label=labels[r["study_id"]]) for r in rows]
  small = spheres.choose_small(rows, key, "vendor", PARAMS.small_fraction)
  assert not small["easy"] and small["medium"] < small["hard"]
  for value in ("A", "B"):
    positives = {r["study_id"] for r in rows if r["label"] and r["vendor"] == value}
    assert len(small["medium"] & positives) == 8 and len(small["hard"] & positives) == 14
    for split in ("train", "test"):   # spread over the splits in proportion (+-1)
      inside = {r["study_id"] for r in rows if r["vendor"] == value and r["split"] == split}
      assert abs(len(small["hard"] & inside) - 0.35 * len(positives & inside)) <= 1
  draw = dict(centre_i=5, centre_j=6, centre_k=7, large_radius_mm=22.0, large_mean_hu=50.0,
              large_std_hu=2.0, small_radius_mm=14.0, small_mean_hu=40.0, small_std_hu=2.0)
  specs = [spheres.spec_from_row(draw, d, True, SPACING) for d in spheres.DIFFICULTIES]
  for spec in specs:
    np.testing.assert_array_equal(spec.centre, specs[0].centre)
  assert float(specs[0].radius_mm) == 22.0 and float(specs[2].radius_mm) == 14.0


def _with_and_without(volume):
  """(volumes, specs, keys) of a two-sample batch: the volume with a sphere, and without."""
  spec = spheres.SphereSpec(jnp.array([20.0, 20.0, 3.0]), jnp.array(SPACING, jnp.float32),
                            jnp.float32(8.0), jnp.float32(50.0), jnp.float32(2.0),
                            jnp.asarray(True))
  batch = jax.tree.map(lambda a, b: jnp.stack([a, b]), spec, spheres.absent(SPACING))
  return jnp.stack([volume, volume]), batch, jax.random.split(jax.random.key(0), 2)


def test_insert_is_jittable_vmappable_and_absent_is_identity(brain):
  volume = brain[1][:40, :40, :6]
  out = jax.jit(datasets.spheres_batch)(*_with_and_without(volume))
  np.testing.assert_array_equal(out[1], window.spheres_window(volume))
  assert float(jnp.abs(out[0] - window.spheres_window(volume)).max()) > 0


def test_batch_cut_to_a_box_is_the_whole_batch_sliced(brain):
  volumes, batch, key_batch = _with_and_without(brain[1][:40, :40, :6])
  whole = np.asarray(datasets.spheres_batch(volumes, batch, key_batch))
  starts = np.array([[3, 10, 0], [12, 0, 2]], np.int32)
  cut = jax.jit(datasets.spheres_batch, static_argnums=(3, 5))(
      volumes, batch, key_batch, None, starts, (24, 30, 4))
  assert cut.shape == (2, 24, 30, 4)
  np.testing.assert_array_equal(cut[0], whole[0, 3:27, 10:40, 0:4])
  np.testing.assert_array_equal(cut[1], whole[1, 12:36, 0:30, 2:6])


def test_box_insertion_equals_whole_volume_insertion(brain):
  mask, volume = brain
  key = jax.random.key(2)
  draw = spheres.draw_sphere(spheres.study_key(key, "study-box"), mask, SPACING, PARAMS)
  spec = spheres.spec_from_row(draw, "easy", False, SPACING)
  voxel_key = spheres.voxel_key(key, "study-box", "large")
  whole = np.asarray(insert(volume, spec, voxel_key))
  insert_boxed = jax.jit(spheres.insert_sphere, static_argnums=3)
  boxed = insert_boxed(volume, spec, voxel_key, spheres.reach(26.0, SPACING))
  np.testing.assert_array_equal(boxed, whole)
  assert (boxed != volume).sum() > 100
  # A sphere near the array's edge: the box is clamped, the values stay the voxels' own.
  edge = spec.replace(centre=jnp.array([2.0, 3.0, 1.0]), radius_mm=jnp.float32(6.0))
  np.testing.assert_array_equal(
      insert_boxed(volume, edge, voxel_key, spheres.reach(6.0, SPACING)),
      insert(volume, edge, voxel_key))


def test_painted_lesion_replaces_the_anatomy_inside_the_sphere():
  lesion = anatomy.Lesion(jnp.array([10.0, -5.0, 20.0]), jnp.float32(15.0), jnp.float32(50.0),
                          jnp.float32(2.0), jnp.uint32(9), jnp.asarray(True))
  class Flat:  # an anatomy of 30 HU everywhere
    def hu_and_brain(self, p):
      return jnp.full(p.shape[:-1], 30.0), jnp.ones(p.shape[:-1], bool)
  offsets = np.stack(np.meshgrid(*[np.arange(-20.0, 20.5, 1.0)] * 3, indexing="ij"), -1)
  points = (np.asarray(lesion.centre_mm) + offsets + 0.5).reshape(-1, 3).astype(np.float32)
  hu, _ = anatomy.with_lesion(lesion)(Flat(), points)
  inside = np.linalg.norm(points - np.asarray(lesion.centre_mm), axis=-1) <= 15.0
  hu = np.asarray(hu)
  assert (hu[~inside] == 30.0).all()
  assert hu[inside].mean() == pytest.approx(50.0, abs=0.15)
  assert hu[inside].std() == pytest.approx(2.0, rel=0.05)
  again, _ = anatomy.with_lesion(lesion)(Flat(), points)
  np.testing.assert_array_equal(np.asarray(again), hu)   # one texture field per seed
  unchanged, _ = anatomy.with_lesion(anatomy.no_lesion())(Flat(), points)
  assert (np.asarray(unchanged) == 30.0).all()


def test_lesion_placed_inside_the_phantom_brain():
  subject = phantom.draw_subject(jax.random.key(5), 50, False)
  lesion = anatomy.place_in_subject(jax.random.key(6), subject, small=False, grid_mm=6.0)
  assert 21.0 <= float(lesion.radius_mm) <= 26.0 and float(lesion.mean_hu) == 50.0
  i = np.arange(64) + 0.5   # Fibonacci directions on the unit sphere
  z, phi = 1 - 2 * i / 64, np.pi * (1 + 5 ** 0.5) * i
  directions = np.stack([np.sqrt(1 - z * z) * np.cos(phi), np.sqrt(1 - z * z) * np.sin(phi),
                         z], -1)
  surface = np.asarray(lesion.centre_mm) + float(lesion.radius_mm) * directions
  _, brain = jax.jit(phantom.head_hu)(subject, surface.astype(np.float32))
  assert np.asarray(brain).all()


def test_eval_copies_apply_to_paired_sets_only():
  import ml_collections
  from scanbias_jax.experiments import spheres as experiment
  config = ml_collections.ConfigDict(dict(experiments=dict(spheres_test="paired",
                                                           spheres_eval_copies=4)))
  assert experiment.eval_copies(config) == 4
  config.experiments.spheres_test = "paper"   # the paper's sets: each study once
  assert experiment.eval_copies(config) == 1
  config.experiments.spheres_test = "paired"
  config.experiments.spheres_eval_copies = 0
  with pytest.raises(ValueError, match="spheres_eval_copies"):
    experiment.eval_copies(config)


def test_build_makes_a_sample_without_sphere_once_and_every_sample_as_alone(brain):
  """Two volumes, each with copies with and without a sphere (a paired set with repeats):
  `build` equals inserting, windowing and resizing each sample on its own."""
  import ml_collections
  from scanbias_jax.experiments import common, spheres as experiment
  base = brain[1][:40, :40, :6]
  volumes = np.stack([base, base[::-1].copy()])
  with_sphere, without = (jax.tree.map(lambda a: a[i], _with_and_without(base)[1]) for i in (0, 1))
  moved = with_sphere.replace(centre=jnp.array([18.0, 22.0, 2.0]))
  order = [(0, without), (0, with_sphere), (0, without), (1, moved), (1, without), (1, without),
           (0, moved), (1, with_sphere), (0, without)]
  specs = [spec for _, spec in order]
  data = dict(volumes=volumes, source=np.array([v for v, _ in order]),
              labels=np.array([int(bool(s.present)) for s in specs]),
              specs=jax.tree.map(lambda *a: jnp.stack(a), *specs),
              voxel_keys=jax.random.split(jax.random.key(3), len(order)), spacing=SPACING,
              brain_centres=np.array([[20, 20, 3], [20, 20, 3]]))
  config = ml_collections.ConfigDict(dict(
      experiments=dict(spheres_shape=(16, 16, 4), spheres_crop_mm=()),
      prepare=dict(spheres_window=(50.0, 100.0))))
  x, y = experiment.build(config, data)
  assert x.shape == (len(order), 16, 16, 4, 1)
  np.testing.assert_array_equal(y, data["labels"])
  for i, (v, spec) in enumerate(order):
    alone = datasets.spheres_input(volumes[v], spec, data["voxel_keys"][i])
    np.testing.assert_allclose(x[i, ..., 0], common.resize(np.asarray(alone)[None], (16, 16, 4))[0],
                               rtol=1e-6, atol=1e-6)
  # A memo shared with another set of the same volumes: the samples both hold (same
  # volume, sphere and voxel key) come from it bit for bit, only the others are built.
  memo = {}
  first, _ = experiment.build(config, data, memo=memo)
  np.testing.assert_array_equal(first, x)
  built = len(memo)
  assert built == 2 + 4  # a sphere-free sample a volume, the 4 distinct spheres
  again, _ = experiment.build(config, data, memo=memo)
  np.testing.assert_array_equal(again, x)
  assert len(memo) == built
  other = dict(data, voxel_keys=jax.random.split(jax.random.key(4), len(order)))
  redrawn, _ = experiment.build(config, other, memo=memo)
  assert len(memo) == built + 4  # new voxel keys: new spheres, the sphere-free reused
  alone, _ = experiment.build(config, other)
  np.testing.assert_array_equal(redrawn, alone)


def test_acquired_insertion_is_the_scanner_acquiring_the_sphere_in_its_anatomy():
  """Image-domain insertion against the synthesizer: one head acquired with a sphere in
  its anatomy and without (same key: the same noise draw); the difference is what the
  scanner makes of the sphere (slice profile, MTF, calibration), its noise staying.
  insert_acquired on the image without it must give the same difference; the paper's
  painting does not (it replaces the scanner's noise and skips the calibration)."""
  profile = vendors.resolve("GE")
  physics = profile.physics._replace(cupping_hu=0.0, streak_hu=0.0)
  profile = dataclasses.replace(profile, physics=physics)
  subject = atlas_head.draw_subject(jax.random.key(3), 50, False)
  g = geo.axial_series(250.0, 128, 5.0, -20.0, 45.0)
  r0, c0, s0 = 70, 60, 6
  centre = (g.positions[s0] + c0 * g.pixel_mm * g.row_dir + r0 * g.pixel_mm * g.col_dir)
  radius, mean = 16.0, 48.0
  lesion = anatomy.Lesion(jnp.asarray(centre, jnp.float32), jnp.float32(radius),
                          jnp.float32(mean), jnp.float32(0.0), jnp.uint32(1), jnp.asarray(True))
  scan = lambda lesion: np.transpose(scanner.acquire(jax.random.key(0), subject, g, profile,
                                                     ssp_samples=9, lesion=lesion).hu, (1, 2, 0))
  without, with_sphere = scan(None), scan(lesion)
  truth = with_sphere - without
  offset = float(scanner.calibrate(jnp.array([mean]), jnp.zeros((1, 2)), physics)[0]) - mean
  response = spheres.Response(jnp.float32(physics.mtf50_per_mm),
                              jnp.float32(physics.ssp_ratio * g.thickness_mm),
                              jnp.float32(offset))
  spacing = (g.pixel_mm, g.pixel_mm, g.thickness_mm)
  spec = spheres.SphereSpec(jnp.array([r0, c0, s0], jnp.float32), jnp.asarray(spacing, jnp.float32),
                            jnp.float32(radius), jnp.float32(mean), jnp.float32(0.0),
                            jnp.asarray(True), response)
  reach = spheres.reach(radius, spacing)
  acquired = np.asarray(spheres.insert_acquired(without, spec, jax.random.key(1), reach)) - without
  painted = np.asarray(spheres.insert_sphere(without, spec, jax.random.key(1), reach)) - without
  box = np.s_[r0 - 12:r0 + 13, c0 - 12:c0 + 13, s0 - 5:s0 + 6]
  rms = lambda x: float(np.sqrt(np.mean(x[box] ** 2)))
  per_slice = lambda x: x[r0 - 3:r0 + 4, c0 - 3:c0 + 4].mean((0, 1))
  assert rms(truth) > 4.0                                   # the sphere is there
  assert rms(acquired - truth) < 0.15 * rms(truth)   # 0.93 of 8.0 HU here
  assert rms(painted - truth) > 1.5 * rms(acquired - truth)   # 2.1x here

  np.testing.assert_allclose(per_slice(acquired)[s0 - 4:s0 + 5],
                             per_slice(truth)[s0 - 4:s0 + 5], atol=1.5)


def test_auto_insertion_acquires_only_where_every_study_has_its_scanner():
  from configs import default
  from scanbias_jax.experiments import spheres as experiment
  config = default.get_config()
  row = dict(study_id="a", mtf50_per_mm="0.38", ssp_fwhm_mm="5.0", offset_large_hu="1.9",
             offset_small_hu="1.8")
  known = datasets.Prepared("", "", "vendor", ("GE",), (row, dict(row, study_id="b")), {}, 0, {})
  unknown = dataclasses.replace(known, rows=(row, dict(study_id="c")))
  assert experiment.insertion(config, known) == "acquired"
  assert experiment.beside(config, known) == {"medium_painted": ("medium", "painted")}
  assert experiment.insertion(config, unknown) == "painted"
  assert experiment.beside(config, unknown) == {}    # no scanner to acquire with
  config.experiments.spheres_insertion = "acquired"
  with pytest.raises(ValueError, match="study c has no scanner response"):
    datasets.responses(dict(study_id="c"))
  assert float(datasets.responses(row)["small"].offset_hu) == pytest.approx(1.8)


def test_scanner_response_from_the_truth_record():
  from scanbias_jax.experiments import truth
  physics = vendors.PROFILES["Siemens"].physics
  record = dict(physics=physics._asdict(), series=[
      dict(kind="routine", thickness_mm=5.0), dict(kind="thin", thickness_mm=1.25)])
  routine = truth.scanner_response(record, 2, 5.0, dict(large=50.0))
  assert routine["mtf50_per_mm"] == pytest.approx(physics.mtf50_per_mm)
  assert routine["ssp_fwhm_mm"] == pytest.approx(physics.ssp_ratio * 5.0)
  flat = physics._replace(cupping_hu=0.0)
  expected = float(scanner.calibrate(jnp.array([50.0]), jnp.zeros((1, 2)), flat)[0]) - 50.0
  assert routine["offset_large_hu"] == pytest.approx(expected, abs=1e-5)
  thin = truth.scanner_response(record, 3, 5.0, dict(large=50.0))   # slab-averaged to 5 mm
  sigma2 = (physics.ssp_ratio * 1.25) ** 2 / (8 * np.log(2)) + 5.0 ** 2 / 12
  assert thin["ssp_fwhm_mm"] == pytest.approx(np.sqrt(8 * np.log(2) * sigma2), rel=1e-5)
  assert truth.scanner_response(dict(series=[]), 2, 5.0, {}) is None
