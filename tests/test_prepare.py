"""The prepare stage: splits, the prepared layout, the data set arrays, rerun."""
import csv
import json
import os

import jax
import nibabel as nib
import numpy as np
import pytest

from configs import smoke
from scanbias_jax.cohort import balance
from scanbias_jax.dicom import deid
from scanbias_jax.experiments import datasets, prepare, truth
from scanbias_jax.evaluate import metrics
from tests.test_skullstrip import shell_phantom

SPACING = (2.0, 2.0, 5.0)


def config(**prepare_overrides):
  c = smoke.get_config()
  c.prepare.match = False
  c.prepare.workers = 1
  c.prepare.overlays = 1
  for name, value in prepare_overrides.items():
    c.prepare[name] = value
  return c


def fake_rows(sizes, group="vendor"):
  return [{"study_id": f"study-{value}{i:05d}", group: value, "status": "ok"}
          for value, n in sizes.items() for i in range(n)]


@pytest.mark.parametrize("sizes", [{"GE": 391, "Siemens": 391}, {"A": 60, "B": 60, "C": 60}])
def test_split_follows_the_fractions_balanced_over_group_and_label(sizes):
  c = config()
  rows = prepare.plan(fake_rows(sizes), datasets.prepare_key(0), c)
  assert len({r["study_id"] for r in rows}) == len(rows)   # each study once, one split
  assert {r["split"] for r in rows} == set(balance.SPLITS)
  for value, n in sizes.items():
    assert sum(r["label"] for r in rows if r["vendor"] == value) == n // 2
  for split, fraction in zip(balance.SPLITS, c.cohort.split_fractions):
    cells = [sum(1 for r in rows if r["split"] == split and r["vendor"] == v and r["label"] == y)
             for v in sizes for y in (0, 1)]
    assert max(cells) - min(cells) <= 1                    # equal within one study
    n = sum(1 for r in rows if r["split"] == split)
    assert n / len(rows) == pytest.approx(fraction, abs=len(cells) / len(rows))
  again = prepare.plan(fake_rows(sizes), datasets.prepare_key(0), c)
  assert again == rows
  other = prepare.plan(fake_rows(sizes), datasets.prepare_key(1), c)
  assert [r["split"] for r in other] != [r["split"] for r in rows]


def test_plan_keeps_a_traveling_head_in_one_split_and_records_it():
  rows = fake_rows({"GE": 40, "Siemens": 40})
  anatomies = {r["study_id"]: str(i % 40) for i, r in enumerate(rows)}  # GE i, Siemens i
  planned = prepare.plan(rows, datasets.prepare_key(0), config(), anatomies)
  by_head = {}
  for r in planned:
    by_head.setdefault(r["anatomy"], set()).add(r["split"])
  assert len(by_head) == 40 and all(len(s) == 1 for s in by_head.values())
  # The unit resampled by the intervals is the head: its two acquisitions share it.
  unit = datasets.units(planned)
  assert np.unique(unit).size == 40
  for r, u in zip(planned, unit):
    assert set(unit[[q["anatomy"] == r["anatomy"] for q in planned]]) == {u}
  assert np.unique(datasets.units(rows)).size == 80     # no anatomy: every study its own
  # One acquisition per anatomy (the paper's design): the split of before, no column.
  unique = {r["study_id"]: str(i) for i, r in enumerate(rows)}
  assert prepare.plan(rows, datasets.prepare_key(0), config(), unique) == prepare.plan(
      rows, datasets.prepare_key(0), config())


def test_truth_mask_is_carried_between_grids_by_affines():
  _, brain, _ = shell_phantom(shape=(64, 64, 12), spacing=SPACING)
  fine = np.diag([1.0, 1.0, 2.5, 1.0])
  fine[:3, 3] = [-0.5, -0.5, -1.25]   # voxel centres of a 2x finer grid, same extent
  fine_mask = np.repeat(np.repeat(np.repeat(brain, 2, 0), 2, 1), 2, 2)
  on_grid = truth.mask_on_grid(fine_mask, fine, brain.shape, np.diag([*SPACING, 1.0]))
  assert metrics.dice_volume(on_grid, brain) > 0.97


def write_cohort(root, n_per_vendor=3):
  """A tiny ingested cohort (shell phantoms) with synthesizer-style truth."""
  secret = b"test-secret"
  os.makedirs(os.path.join(root, "cohort", "volumes"))
  os.makedirs(os.path.join(root, "truth"))
  with open(os.path.join(root, "cohort", ".secret"), "wb") as f:
    f.write(secret)
  affine = np.diag([-SPACING[0], -SPACING[1], SPACING[2], 1.0])
  rows = []
  for index in range(2 * n_per_vendor):
    hu, brain, _ = shell_phantom(gap_px=index % 3, shape=(64, 64, 12), spacing=SPACING)
    uid = f"1.2.3.{index}"
    study_id = deid.pseudonym(secret, "study", uid)
    path = os.path.join("volumes", f"{study_id}.nii.gz")
    nib.save(nib.Nifti1Image(np.round(hu).astype(np.int16), affine),
             os.path.join(root, "cohort", path))
    nib.save(nib.Nifti1Image(brain.astype(np.uint8), affine),
             os.path.join(root, "truth", f"study_{index:04d}_routine_brain.nii.gz"))
    with open(os.path.join(root, "truth", f"study_{index:04d}.json"), "w") as f:
      mask_name = f"study_{index:04d}_routine_brain.nii.gz"
      json.dump(dict(study_uid=uid, series=[dict(kind="routine", brain_mask=mask_name)]), f)
    rows.append(dict(study_id=study_id, status="ok", vendor=("GE", "Siemens")[index % 2],
                     series_number=2, age_years=50, sex="F", path=path))
  with open(os.path.join(root, "cohort", "manifest.csv"), "w", newline="") as f:
    writer = csv.DictWriter(f, list(rows[0]))
    writer.writeheader()
    writer.writerows(rows)
  return os.path.join(root, "cohort"), os.path.join(root, "truth")


def test_prepare_writes_specs_and_the_sets_come_back_as_arrays(tmp_path):
  cohort, truth_dir = write_cohort(str(tmp_path))
  out = str(tmp_path / "prepared")
  c = config()
  summary = prepare.prepare_cohort(cohort, out, c, truth_dir)
  assert summary["prepared_now"] == 6
  for d in summary["skullstrip"]:
    assert d["dice"]["n"] == 3 and d["dice"]["min"] > 0.95
  assert len(os.listdir(os.path.join(out, "overlays"))) == 2
  again = prepare.prepare_cohort(cohort, out, c, truth_dir)
  assert again["prepared_now"] == 0 and again["skipped_as_done"] == 6
  assert again["counts"] == summary["counts"]

  prepared = datasets.load_prepared(out)
  assert prepared.group_values == ("GE", "Siemens")
  original = datasets.original_set(prepared)
  assert original["volumes"].shape == (6, 64, 64, 12) and original["volumes"].dtype == np.int16
  assert sorted(original["labels"].tolist()) == [0, 0, 0, 1, 1, 1]
  ge = datasets.original_set(prepared, group_value="GE")
  assert (ge["labels"] == 0).all() and len(ge["study_ids"]) == 3

  stacks = datasets.manufacturer_batch(jax.random.key(0), original["volumes"])
  assert stacks.shape == (6, 64, 64, 3) and float(stacks.min()) >= -1.0
  part = datasets.manufacturer_batch(jax.random.key(0), original["volumes"][2:4], [2, 3])
  np.testing.assert_array_equal(part, stacks[2:4])        # independent of the batch
  stack = datasets.manufacturer_stack(jax.random.key(1), np.arange(12.0)[None, None] * 20 - 160)
  picked = np.asarray(stack)[0, 0]
  assert len(set(picked.tolist())) == 3                     # three distinct slices

  hard = datasets.spheres_set(prepared, "hard")
  easy = datasets.spheres_set(prepared, "easy")
  np.testing.assert_array_equal(hard["specs"].centre, easy["specs"].centre)
  assert hard["labels"].sum() == 2                          # floor(3 / 2) per vendor
  for m in range(6):   # one by one: spheres_batch (vmapped) is tested in test_spheres
    spec = jax.tree.map(lambda a: a[m], hard["specs"])
    x = np.asarray(datasets.spheres_input(hard["volumes"][m], spec, hard["voxel_keys"][m]))
    assert 0.0 <= x.min() and x.max() <= 1.0
    sphere = np.asarray(datasets.spheres.sphere_mask(x.shape, spec))
    assert sphere.any() == bool(hard["labels"][m])
    np.testing.assert_allclose(x[~sphere], datasets.window.spheres_window(
        hard["volumes"][m])[~sphere])
    mask = nib.load(os.path.join(out, "masks", f"{hard['study_ids'][m]}.nii.gz")).dataobj
    assert not (sphere & (np.asarray(mask) == 0)).any()

  # The brain alone: air outside each mask, every voxel inside as it was; a sphere
  # inserted there reads as in the whole head, so only the surroundings differ.
  brain = datasets.spheres_set(prepared, "hard", outside_brain_hu=-1024)
  for m, study_id in enumerate(hard["study_ids"]):
    mask = np.asarray(nib.load(os.path.join(out, "masks", f"{study_id}.nii.gz")).dataobj) > 0
    assert mask.any() and (~mask).any()
    np.testing.assert_array_equal(brain["volumes"][m][mask], hard["volumes"][m][mask])
    assert (brain["volumes"][m][~mask] == -1024).all()
    spec = jax.tree.map(lambda a: a[m], hard["specs"])
    key = hard["voxel_keys"][m]
    x_head = np.asarray(datasets.spheres_input(hard["volumes"][m], spec, key))
    x_brain = np.asarray(datasets.spheres_input(brain["volumes"][m], spec, key))
    np.testing.assert_array_equal(x_brain[mask], x_head[mask])
    assert (x_brain[~mask] == 0.0).all()

  # Paired training set: each study twice without and twice with a sphere.
  draws = datasets.paired_draws(prepared, datasets.select(prepared), copies=2)
  assert draws == datasets.paired_draws(prepared, datasets.select(prepared), copies=2)
  paired = {d: datasets.paired_spheres_set(prepared, d, draws) for d in ("easy", "medium", "hard")}
  pairs = paired["hard"]
  brain_pairs = datasets.paired_spheres_set(prepared, "hard", draws, outside_brain_hu=-1024)
  np.testing.assert_array_equal(brain_pairs["volumes"], brain["volumes"])
  assert len(pairs["labels"]) == 24 and pairs["volumes"].shape[0] == 6
  for m, study_id in enumerate(hard["study_ids"]):
    mine = pairs["source"] == m
    assert sorted(pairs["labels"][mine].tolist()) == [0, 0, 1, 1]
    assert set(pairs["study_ids"][i] for i in np.flatnonzero(mine)) == {study_id}
    assert (pairs["groups"][mine] == hard["groups"][m]).all()
    with_sphere = np.flatnonzero(mine & (pairs["labels"] == 1))
    if hard["labels"][m]:  # a positive's own sphere comes first, voxel for voxel
      np.testing.assert_array_equal(pairs["specs"].centre[with_sphere[0]], hard["specs"].centre[m])
      assert pairs["specs"].radius_mm[with_sphere[0]] == hard["specs"].radius_mm[m]
      np.testing.assert_array_equal(jax.random.key_data(pairs["voxel_keys"][with_sphere[0]]),
                                    jax.random.key_data(hard["voxel_keys"][m]))
    mask = np.asarray(nib.load(os.path.join(out, "masks", f"{study_id}.nii.gz")).dataobj)
    for i in with_sphere:
      sphere = np.asarray(datasets.spheres.sphere_mask(
          mask.shape, jax.tree.map(lambda a: a[i], pairs["specs"])))
      assert sphere.any() and not (sphere & (mask == 0)).any()
  assert not pairs["specs"].present[pairs["labels"] == 0].any()
  assert pairs["specs"].present[pairs["labels"] == 1].all()
  radii = {d: np.asarray(p["specs"].radius_mm) for d, p in paired.items()}
  assert (radii["easy"] >= radii["medium"]).all() and (radii["medium"] >= radii["hard"]).all()

  # The brain box: centred on the mask's bounding box, inside the volume, holding every sphere.
  for m, study_id in enumerate(hard["study_ids"]):
    mask = np.asarray(nib.load(os.path.join(out, "masks", f"{study_id}.nii.gz")).dataobj)
    box = np.argwhere(mask)
    np.testing.assert_array_equal(hard["brain_centres"][m], (box.min(0) + box.max(0)) // 2)
  size = (40, 40, 12)
  starts = datasets.crop_starts(hard["brain_centres"], hard["volumes"].shape[1:], size)
  assert (starts >= 0).all() and (starts + size <= np.array([64, 64, 12])).all()
  np.testing.assert_array_equal(datasets.crop_starts([[5, 60, 6]], (64, 64, 12), (40, 40, 12)),
                                [[0, 24, 0]])
  np.testing.assert_array_equal(datasets.crop_starts([[32, 32, 6]], (64, 64, 12), (40, 40, 12)),
                                [[12, 12, 0]])
  np.testing.assert_array_equal(pairs["brain_centres"], hard["brain_centres"])

  skull = datasets.skull_set(prepared, n_slices=8)
  assert skull["volumes"].shape == (6, 64, 64, 8) and skull["masks"].dtype == np.uint8
  assert skull["spacing"][2] == pytest.approx(5.0 * 12 / 8)
  assert set(np.unique(skull["masks"])) <= {0, 1}


def test_skull_slices_resampling_keeps_constant_and_linear_profiles():
  ramp = np.broadcast_to(np.arange(35.0), (2, 2, 35))
  out = np.asarray(datasets.resize_slices(ramp, 32))
  expected = np.clip((np.arange(32) + 0.5) * 35 / 32 - 0.5, 0, 34)
  np.testing.assert_allclose(out[0, 0], expected, atol=1e-5)
  volume, mask = datasets.skull_slices(np.full((2, 2, 35), 7.0), np.ones((2, 2, 35)))
  assert volume.shape == (2, 2, 32) and float(volume.min()) == 7.0 and int(mask.min()) == 1
