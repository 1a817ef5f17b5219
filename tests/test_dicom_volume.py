"""Volume assembly against SimpleITK/GDCM and dicom2nifti, and pydicom's modality LUT.

Comparisons are in DICOM LPS: SimpleITK reports LPS origin/direction directly,
and both our arrays and its arrays are indexed [column, row, slice]. The one
documented difference: ingest maps everything below air (-1024 HU: padding,
out-of-field) to air, so the reference is clipped at -1024 before comparing.
"""
import warnings

import dicom_cases
import numpy as np
import pydicom
import pytest
from pydicom import uid as dicom_uid
from pydicom.data import get_testdata_file
from pydicom.pixels import apply_modality_lut

from configs import default
from scanbias_jax import files
from scanbias_jax.dicom import scan
from scanbias_jax.dicom import volume as volume_lib

HEIGHTS = np.arange(12) * 5.0


@pytest.fixture(name="policy")
def fixture_policy():
  return default.get_config().ingest.volume


def _assemble(directory, policy):
  slices, rejects = scan.index_files(sorted(str(p) for p in directory.iterdir()))
  assert not rejects
  return volume_lib.assemble(slices, policy)


def _assert_matches_sitk(vol, directory):
  reference, affine = dicom_cases.sitk_reference(directory)
  np.testing.assert_allclose(vol.affine, affine, atol=1e-3)
  np.testing.assert_array_equal(vol.hu, np.maximum(reference, -1024))


def test_shuffled_names_and_instance_numbers(tmp_path, policy):
  order = np.random.default_rng(1).permutation(len(HEIGHTS))
  dicom_cases.write_series(tmp_path, HEIGHTS, names=[f"IM{i:04d}" for i in order],
                           instance_numbers=[int(i) for i in order[::-1] + 1])
  vol = _assemble(tmp_path, policy)
  _assert_matches_sitk(vol, tmp_path)
  assert vol.affine[2, 2] == pytest.approx(5.0) and not vol.notes


@pytest.mark.parametrize("vendor", [dicom_cases.GE, dicom_cases.SIEMENS], ids=["GE", "Siemens"])
def test_padding_outside_circle_is_air(tmp_path, policy, vendor):
  dicom_cases.write_series(tmp_path, HEIGHTS, vendor=vendor, field_radius_mm=75.0)
  vol = _assemble(tmp_path, policy)
  _assert_matches_sitk(vol, tmp_path)
  assert vol.hu.min() == -1024
  corner = vol.hu[0, 0, :]
  assert np.all(corner == -1024)


def test_padding_value_read_as_unsigned_still_matches():
  ds = pydicom.Dataset()
  ds.PixelRepresentation = 1
  ds.PixelPaddingValue = 63536  # -2000 as SS, arrived as US
  stored = np.array([-2000, -1024, 0], np.int16)
  np.testing.assert_array_equal(volume_lib._padding_mask(ds, stored), [True, False, False])


@pytest.mark.parametrize("syntax", [dicom_uid.RLELossless, dicom_uid.JPEG2000Lossless],
                         ids=["RLE", "J2K"])
def test_compressed_series(tmp_path, policy, syntax):
  canon = dicom_cases.Vendor("TOSHIBA", "Aquilion ONE", "FC26", True, 16, -1024.0, 1.0, None)
  dicom_cases.write_series(tmp_path, HEIGHTS, vendor=canon, compress=syntax)
  assert pydicom.dcmread(next(tmp_path.iterdir())).file_meta.TransferSyntaxUID == syntax
  _assert_matches_sitk(_assemble(tmp_path, policy), tmp_path)


def test_missing_slice_is_rejected_or_filled(tmp_path, policy):
  full = dicom_cases.write_series(tmp_path / "full", HEIGHTS)
  gapped = dicom_cases.write_series(tmp_path / "gap", HEIGHTS)
  (tmp_path / "gap" / gapped[5].split("/")[-1]).unlink()
  policy.gaps = "reject"
  with pytest.raises(volume_lib.Rejected, match=r"1 missing slice\(s\): gap of 10.00 mm"):
    _assemble(tmp_path / "gap", policy)
  import dicom2nifti  # the independent converter rejects it too
  with pytest.raises(Exception, match="SLICE_INCREMENT"):
    dicom2nifti.dicom_series_to_nifti(str(tmp_path / "gap"), str(tmp_path / "x.nii.gz"))
  policy.gaps = "resample"
  vol = _assemble(tmp_path / "gap", policy)
  reference, affine = dicom_cases.sitk_reference(tmp_path / "full")
  reference[..., 5] = (reference[..., 4] + reference[..., 6]) / 2  # linear fill
  np.testing.assert_allclose(vol.affine, affine, atol=1e-3)
  np.testing.assert_allclose(vol.hu, np.maximum(reference, -1024), atol=1e-3)
  assert "resampled linearly to 12 slices" in vol.notes[0]
  del full


def test_too_many_missing_slices_rejected(tmp_path, policy):
  dicom_cases.write_series(tmp_path, np.delete(HEIGHTS, [4, 5, 6]))
  with pytest.raises(volume_lib.Rejected, match="3 missing slice.*more than 2 to fill"):
    _assemble(tmp_path, policy)


def test_uneven_spacing_reported(tmp_path, policy):
  dicom_cases.write_series(tmp_path, np.array([0, 5, 10, 13, 18, 23, 28, 33, 38, 43.0]))
  policy.gaps = "reject"
  with pytest.raises(volume_lib.Rejected, match="uneven slice spacing"):
    _assemble(tmp_path, policy)


def test_missing_rescale_rejected_or_identity(tmp_path, policy):
  dicom_cases.write_series(tmp_path, HEIGHTS, rescale=False)
  with pytest.raises(volume_lib.Rejected, match="missing RescaleSlope/RescaleIntercept"):
    _assemble(tmp_path, policy)
  policy.missing_rescale = "identity"
  _assert_matches_sitk(_assemble(tmp_path, policy), tmp_path)


def test_gantry_tilt_rejected_or_corrected(tmp_path, policy):
  dicom_cases.write_series(tmp_path, HEIGHTS, tilt_deg=15.0)
  policy.tilt = "reject"
  with pytest.raises(volume_lib.Rejected, match="gantry tilt 15.0 deg"):
    _assemble(tmp_path, policy)
  policy.tilt = "correct"
  vol = _assemble(tmp_path, policy)
  assert vol.tilt_deg == pytest.approx(15.0, abs=0.01)
  assert np.allclose(vol.affine[:3, :3], np.diag([6.0, 6.0, 5.0]), atol=1e-4)
  # Independent geometry: dicom2nifti's sheared affine (its orthogonality check off)
  # says where each stored voxel is; sample it where our corrected voxels are.
  import dicom2nifti  # pylint: disable=g-import-not-at-top
  from dicom2nifti import settings  # pylint: disable=g-import-not-at-top
  from scipy import ndimage  # pylint: disable=g-import-not-at-top
  settings.disable_validate_orthogonal()
  try:
    with warnings.catch_warnings():
      warnings.simplefilter("ignore")
      nii = dicom2nifti.dicom_series_to_nifti(str(tmp_path), str(tmp_path.parent / "t.nii.gz"),
                                              reorient_nifti=False)["NII"]
  finally:
    settings.enable_validate_orthogonal()
  ijk = np.stack(np.meshgrid(*[np.arange(n) for n in vol.hu.shape], indexing="ij"), -1)
  world_ras = (files.ras_affine(vol.affine) @ np.concatenate(
      [ijk, np.ones(ijk.shape[:-1] + (1,))], -1)[..., None])[..., 0]
  theirs = (np.linalg.inv(nii.affine) @ world_ras[..., None])[..., :3, 0]
  sampled = ndimage.map_coordinates(np.asarray(nii.dataobj, float), np.moveaxis(theirs, -1, 0),
                                    order=1, cval=np.nan)
  inside = ~np.isnan(sampled)
  assert inside.mean() > 0.7
  np.testing.assert_allclose(vol.hu[inside], np.maximum(sampled[inside], -1024), atol=1e-2)
  # And the anatomy is where the phantom put it: the marker centre at (20, -15, 50) LPS.
  marker = np.argwhere(np.abs(vol.hu - 70) < 1)
  centre = vol.affine[:3, :3] @ marker.mean(0) + vol.affine[:3, 3]
  np.testing.assert_allclose(centre, [20, -15, 50], atol=3.0)


def test_enhanced_multiframe_matches_classic(tmp_path, policy):
  ds = dicom_cases.enhanced_dataset(HEIGHTS)
  ds.save_as(tmp_path / "enhanced.dcm", enforce_file_format=True)
  dicom_cases.write_series(tmp_path / "classic", HEIGHTS)
  refs = scan.read_slices(str(tmp_path / "enhanced.dcm"))
  assert len(refs) == len(HEIGHTS) and refs[3].frame == 3 and refs[0].kernel == "STANDARD"
  vol = volume_lib.assemble(refs, policy)
  classic = _assemble(tmp_path / "classic", policy)
  np.testing.assert_array_equal(vol.hu, classic.hu)
  np.testing.assert_allclose(vol.affine, classic.affine, atol=1e-6)
  _assert_matches_sitk(classic, tmp_path / "classic")


@pytest.mark.parametrize("name", ["CT_small.dcm", "693_J2KI.dcm", "J2K_pixelrep_mismatch.dcm"])
def test_pydicom_test_data_hu_equals_modality_lut(name, policy):
  path = get_testdata_file(name)
  if path is None:
    pytest.skip(f"{name} not shipped offline")
  with warnings.catch_warnings():
    warnings.simplefilter("ignore")
    refs = scan.read_slices(path)
    ds = pydicom.dcmread(path)
    expected = apply_modality_lut(ds.pixel_array, ds).astype(np.float64)
  (ours,) = volume_lib.read_hu(refs, policy)
  padding = volume_lib._padding_mask(ds, ds.pixel_array)
  expected = np.maximum(expected, -1024)
  if padding is not None:
    expected[padding] = -1024
  np.testing.assert_allclose(ours.T, expected, atol=1e-3)
