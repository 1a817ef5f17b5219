"""files.py: every write lands whole or not at all, beside its target."""
import json
import os

import nibabel as nib
import numpy as np
import pytest

from scanbias_jax import files


def test_writes_replace_the_target_and_leave_no_temporary(tmp_path):
  target = tmp_path / "deep" / "record.json"
  files.write_json(target, {"a": 1}, indent=1)
  files.write_json(target, {"a": 2})
  assert json.loads(target.read_text()) == {"a": 2}
  files.write_bytes(tmp_path / "x.dcm", b"\x00\x01", sync=True)
  assert (tmp_path / "x.dcm").read_bytes() == b"\x00\x01"
  assert sorted(p.name for p in tmp_path.rglob("*")) == ["deep", "record.json", "x.dcm"]


def test_a_failed_write_keeps_the_old_file_and_removes_the_temporary(tmp_path):
  target = tmp_path / "summary.md"
  files.write_text(target, "old")
  with pytest.raises(RuntimeError):
    with files.atomic_path(target) as temporary:
      temporary.write_text("half")
      raise RuntimeError("killed")
  assert target.read_text() == "old"
  assert [p.name for p in tmp_path.iterdir()] == ["summary.md"]


def test_nifti_is_written_atomically_with_one_header_convention(tmp_path):
  seen = []
  affine = np.diag([0.9, 0.9, 5.0, 1.0])
  image = nib.Nifti1Image(np.arange(24, dtype=np.int16).reshape(2, 3, 4), affine)
  with files.atomic_path(tmp_path / "w.nii.gz") as temporary:
    seen.append(temporary.name)
    nib.save(image, temporary)   # nibabel picks the format by the suffix
  assert seen[0].endswith(".nii.gz") and seen[0].startswith(".")
  data = np.arange(24, dtype=np.int16).reshape(2, 3, 4)
  files.save_nifti(tmp_path / "v.nii.gz", data, affine, "scanbias_jax HU")
  back = nib.load(tmp_path / "v.nii.gz")
  np.testing.assert_array_equal(np.asarray(back.dataobj), data)
  np.testing.assert_allclose(back.affine, affine)
  np.testing.assert_allclose(back.get_qform(), affine)
  header = back.header
  assert int(header["sform_code"]) == 1 and int(header["qform_code"]) == 1
  assert header.get_xyzt_units() == ("mm", "sec")
  assert bytes(header["descrip"]).rstrip(b"\0") == b"scanbias_jax HU"
  assert not [f for f in os.listdir(tmp_path) if f.startswith(".")]
  loaded = files.load_nifti(tmp_path / "v.nii.gz")
  assert loaded.data.dtype == np.int16
  np.testing.assert_array_equal(loaded.data, data)
  np.testing.assert_allclose(loaded.affine, affine)
  np.testing.assert_allclose(loaded.spacing, [0.9, 0.9, 5.0])


def test_ras_affine_flips_the_first_two_world_axes():
  lps = np.array([[0.5, 0, 0, -120.0], [0, 0.5, 0, -110.0], [0, 0, 5.0, 30.0], [0, 0, 0, 1]])
  ras = files.ras_affine(lps)
  voxel = np.array([10.0, 20.0, 3.0, 1.0])
  x, y, z, _ = lps @ voxel
  np.testing.assert_allclose(ras @ voxel, [-x, -y, z, 1.0])


def test_fingerprints_find_truncated_changed_and_missing_outputs(tmp_path):
  for name in ("a.bin", "b.bin", "c.bin"):
    (tmp_path / name).write_bytes(bytes(range(200)) * 50)
  outputs = {name: files.fingerprint(tmp_path / name) for name in ("a.bin", "b.bin", "c.bin")}
  assert outputs["a.bin"][0] == 10_000 and files.damage(tmp_path, outputs) == {}
  (tmp_path / "a.bin").write_bytes((tmp_path / "a.bin").read_bytes()[:3000])
  changed = bytearray((tmp_path / "b.bin").read_bytes())
  changed[5000] ^= 1
  (tmp_path / "b.bin").write_bytes(bytes(changed))
  (tmp_path / "c.bin").unlink()
  assert files.damage(tmp_path, outputs) == {
      "a.bin": "3000 bytes where 10000 were written",
      "b.bin": "its content differs from what was written", "c.bin": "missing"}


def test_a_truncated_nifti_is_named_not_a_bare_traceback(tmp_path):
  path = tmp_path / "study.nii.gz"
  noise = np.random.default_rng(0).integers(-1000, 1000, (16, 16, 8)).astype(np.int16)
  files.save_nifti(path, noise, np.eye(4))
  assert path.stat().st_size > 1000
  path.write_bytes(path.read_bytes()[:1000])
  with pytest.raises(files.DamagedFile, match=r"study\.nii\.gz cannot be read .*Rerun the same"):
    files.load_nifti(path)
