"""The synthetic cohort: determinism, independence of cohort size, real DICOM out."""
import dataclasses
import json
import subprocess
import sys
from pathlib import Path

import nibabel as nib
import numpy as np
import pydicom
import pytest
import SimpleITK as sitk
from pydicom.pixels import apply_modality_lut

from conftest import smoke_synth, synth_key
from scanbias_jax.synth import cohort, export, scanner, vendors

REPO = Path(__file__).resolve().parents[1]


def series_files(root: Path, series_uid: str) -> list[Path]:
  return [p for p in root.rglob("*") if p.is_file()
          and pydicom.dcmread(p, stop_before_pixels=True).SeriesInstanceUID == series_uid]


def test_vendor_assignment_has_the_mix_and_does_not_depend_on_cohort_size():
  seq = cohort.vendor_sequence(782, (0.5, 0.5))
  assert seq.count(0) == seq.count(1) == 391
  assert cohort.vendor_sequence(100, (0.5, 0.5)) == seq[:100]
  thirds = cohort.vendor_sequence(90, (0.2, 0.3, 0.5))
  assert [thirds.count(v) for v in range(3)] == [18, 27, 45]


def test_study_i_does_not_depend_on_cohort_size():
  small = cohort.plan_cohort(synth_key(), smoke_synth(3))
  large = cohort.plan_cohort(synth_key(), smoke_synth(9))
  assert small == large[:3]
  a = cohort.render_study(synth_key(), small[2], smoke_synth(3))
  b = cohort.render_study(synth_key(), large[2], smoke_synth(9))
  for x, y in zip(a, b):
    np.testing.assert_array_equal(x.acquired.stored, y.acquired.stored)


def test_same_key_gives_identical_files_whatever_the_worker_count(smoke_cohort, tmp_path):
  out, _ = smoke_cohort
  synth = smoke_synth(4, tilt_fraction=0.5, thin_only_fraction=0.25, workers=2)
  export.write_cohort(synth_key(), synth, tmp_path)
  first = sorted(p.relative_to(out) for p in (out / "dicom").rglob("*") if p.is_file())
  second = sorted(p.relative_to(tmp_path) for p in (tmp_path / "dicom").rglob("*")
                  if p.is_file())
  assert first == second and len(first) > 100
  for rel in first:
    assert (out / rel).read_bytes() == (tmp_path / rel).read_bytes(), rel


def test_different_key_gives_different_pixels():
  plan = cohort.plan_cohort(synth_key(0), smoke_synth(1))[0]
  a = cohort.render_study(synth_key(0), plan, smoke_synth(1))[0].acquired.stored
  b = cohort.render_study(synth_key(1), plan, smoke_synth(1))[0].acquired.stored
  assert a.shape != b.shape or (a != b).mean() > 0.1   # another head, or other noise


def test_cohort_has_the_promised_series_and_cases(smoke_cohort):
  _, records = smoke_cohort
  assert [r["vendor"] for r in records] == ["GE", "Siemens", "GE", "Siemens"]
  kinds = [tuple(s["kind"] for s in r["series"]) for r in records]
  assert ("thin",) in kinds and ("routine", "thin") in kinds
  assert any(r["tilt_deg"] > 0 for r in records)
  assert all(r["files"] == sum(s["slices"] for s in r["series"]) + 2 for r in records)


def test_written_series_read_back_with_simpleitk_to_the_synthesized_hu(smoke_cohort):
  """An independent reader (ITK/GDCM) recovers HU and geometry of untilted series."""
  out, records = smoke_cohort
  synth = smoke_synth(4, tilt_fraction=0.5, thin_only_fraction=0.25)
  checked = 0
  for record in records:
    if record["tilt_deg"]:
      continue
    plan = cohort.plan_cohort(synth_key(), synth)[record["index"]]
    rendered = cohort.render_study(synth_key(), plan, synth)
    profile = vendors.resolve(record["vendor"])
    for series, meta in zip(rendered, record["series"]):
      files = series_files(out / "dicom", meta["series_uid"])
      reader = sitk.ImageSeriesReader()
      reader.SetFileNames(sitk.ImageSeriesReader_GetGDCMSeriesFileNames(
          str(files[0].parent), meta["series_uid"]))
      image = reader.Execute()
      hu = sitk.GetArrayFromImage(image).astype(np.float32)   # [z, y, x], z ascending
      field = np.broadcast_to(scanner.in_field(synth.matrix, profile.field_fraction),
                              hu.shape)
      expected = series.acquired.hu
      inside = field & (expected > -1000) & (expected < 2000)
      assert np.abs(hu - expected)[inside].max() <= 0.5 + 1e-3
      np.testing.assert_allclose(image.GetOrigin(), series.geometry.positions[0], atol=1e-3)
      np.testing.assert_allclose(image.GetSpacing()[:2], series.geometry.pixel_mm)
      assert image.GetSpacing()[2] == pytest.approx(series.geometry.thickness_mm, abs=1e-3)
      checked += 1
  assert checked >= 2


def test_pydicom_modality_lut_and_vendor_tags(smoke_cohort):
  out, records = smoke_cohort
  for record in records:
    profile = vendors.resolve(record["vendor"])
    meta = record["series"][-1]
    path = series_files(out / "dicom", meta["series_uid"])[0]
    ds = pydicom.dcmread(path)
    assert ds.Manufacturer == profile.manufacturer and ds.Modality == "CT"
    assert ds.ManufacturerModelName in profile.models
    assert ds.PatientAge == f"{record['age_years']:03d}Y"
    assert ds.PatientName and ds.PatientID and ds.PatientBirthDate  # fake PHI present
    assert ("PixelPaddingValue" in ds) == profile.padding_tag
    hu = apply_modality_lut(ds.pixel_array, ds)
    assert hu.min() >= profile.rescale_intercept + profile.outside_stored * \
        profile.rescale_slope - 1
    assert float(ds.SliceThickness) == meta["thickness_mm"]


def test_truth_masks_are_nifti_on_the_series_grid(smoke_cohort):
  out, records = smoke_cohort
  meta = records[0]["series"][0]
  mask = nib.load(out / "truth" / meta["brain_mask"])
  assert mask.shape[2] == meta["slices"]
  volume_ml = mask.get_fdata().sum() * np.prod(mask.header.get_zooms()) / 1000
  assert 700 < volume_ml < 2200   # intracranial volume of an adult head
  table = (out / "truth" / "studies.csv").read_text()
  assert "PatientName" not in table and records[0]["study_uid"] in table


def test_rerun_skips_finished_studies(smoke_cohort):
  out, records = smoke_cohort
  stamp = (out / "truth" / "study_0000.json").stat().st_mtime_ns
  again = export.write_cohort(synth_key(), smoke_synth(4, tilt_fraction=0.5,
                                                       thin_only_fraction=0.25), out)
  assert again == json.loads(json.dumps(records))
  assert (out / "truth" / "study_0000.json").stat().st_mtime_ns == stamp


@pytest.mark.parametrize("field,value,message", [
    ("num_studies", -3, "num_studies"),
    ("vendors", ("GE", "Hitachi"), "unknown vendor 'Hitachi'"),
    ("thin_mm_choices", (7.5,), "impossible slice thickness"),
    ("vendor_mix", (0.7, 0.7), "vendor_mix"),
])
def test_invalid_config_fails_before_any_work(tmp_path, field, value, message):
  synth = smoke_synth(2)
  synth[field] = value
  with pytest.raises(ValueError, match=message):
    export.write_cohort(synth_key(), synth, tmp_path / "out")
  assert not (tmp_path / "out").exists()


def test_launcher_writes_a_cohort_and_says_what_it_made(tmp_path):
  result = subprocess.run(
      [sys.executable, "-m", "launch.synthesize", "--config=configs/smoke.py",
       f"--out={tmp_path}", "--num_studies=1"],
      cwd=REPO, capture_output=True, text=True, timeout=300)
  assert result.returncode == 0, result.stderr
  assert "synthesized 1 studies" in result.stdout
  assert (tmp_path / "truth" / "studies.csv").exists()


def test_compressed_vendors_decode_to_the_synthesized_hu(tmp_path):
  """Philips is written RLE Lossless, Canon JPEG 2000 Lossless: both decode exactly."""
  synth = smoke_synth(2, vendors=("Philips", "Canon"), tilt_fraction=0.0,
                      thin_only_fraction=1.0, write_scout=False)
  records = export.write_cohort(synth_key(), synth, tmp_path)
  for plan, record in zip(cohort.plan_cohort(synth_key(), synth), records):
    series = cohort.render_study(synth_key(), plan, synth)[0]
    profile = vendors.resolve(record["vendor"])
    files = series_files(tmp_path / "dicom", record["series"][0]["series_uid"])
    by_position = {}
    for path in files:
      ds = pydicom.dcmread(path)
      assert ds.file_meta.TransferSyntaxUID.is_compressed
      by_position[round(float(ds.ImagePositionPatient[2]), 3)] = ds
    for k, z in enumerate(series.geometry.positions[:, 2]):
      # IPP is written as a decimal string of limited precision: match the nearest.
      ds = by_position[min(by_position, key=lambda written: abs(written - z))]
      np.testing.assert_array_equal(ds.pixel_array, series.acquired.stored[k])
      field = scanner.in_field(synth.matrix, profile.field_fraction)
      hu = apply_modality_lut(ds.pixel_array, ds)
      assert np.abs(hu - series.acquired.hu[k])[field & (series.acquired.hu[k] > -1000)
                                                ].max() <= 0.5 + 1e-3


def test_thin_series_fraction_drops_thin_series_and_nothing_else():
  every = cohort.plan_cohort(synth_key(), smoke_synth(12, thin_only_fraction=0.25,
                                                      thin_series_fraction=1.0))
  none = cohort.plan_cohort(synth_key(), smoke_synth(12, thin_only_fraction=0.25,
                                                     thin_series_fraction=0.0))
  assert [p.index for p in every] == [p.index for p in none]
  for a, b in zip(every, none):
    assert b.with_thin == b.thin_only and a.with_thin
    assert dataclasses.replace(a, with_thin=b.with_thin) == b   # every other draw unchanged
    kinds = set(cohort.series_geometries(b, smoke_synth(12), (0.0, 100.0)))
    assert kinds == ({"thin"} if b.thin_only else {"routine"})
    assert set(cohort.series_geometries(a, smoke_synth(12), (0.0, 100.0))) == (
        {"thin"} if a.thin_only else {"routine", "thin"})
  assert any(p.thin_only for p in none) and not all(p.thin_only for p in none)
  with pytest.raises(ValueError, match="thin_series_fraction"):
    cohort.plan_cohort(synth_key(), smoke_synth(2, thin_series_fraction=1.5))


@pytest.mark.parametrize("vendor", ["GE", "Siemens"])
def test_series_writer_gives_the_bytes_pydicom_writes(tmp_path, vendor):
  """write.save_series (shared elements encoded once) against pydicom.dcmwrite, file by file."""
  from scanbias_jax.synth import dicom_write as write  # pylint: disable=g-import-not-at-top
  synth = smoke_synth(1, vendors=(vendor,), vendor_mix=(1.0,), tilt_fraction=0.0,
                      write_scout=False)
  plan = cohort.plan_cohort(synth_key(), synth)[0]
  series = cohort.render_study(synth_key(), plan, synth)[0]
  profile = vendors.resolve(vendor)
  tags = write.SeriesTags(2, "Head 5.0", "axial")
  images = write.axial_datasets(plan.tags, tags, series.geometry, series.acquired.stored,
                                profile)
  fast = [tmp_path / "fast" / f"{i}.dcm" for i in range(len(images))]
  write.save_series(images, fast, profile.transfer_syntax)
  again = write.axial_datasets(plan.tags, tags, series.geometry, series.acquired.stored,
                               profile)
  for i, ds in enumerate(again):
    reference = tmp_path / "pydicom" / f"{i}.dcm"
    write.save(ds, reference, profile.transfer_syntax)
    assert fast[i].read_bytes() == reference.read_bytes(), f"image {i}"
  assert len({p.read_bytes()[-100:] for p in fast}) == len(fast)   # own pixels each


def test_second_kernel_and_site_protocols_change_only_what_they_name(tmp_path):
  """Off (the default): the plans of before. On: a share of the studies gets the
  vendor's second kernel (its name in ConvolutionKernel, its MTF and NPS peak in the
  physics), the low-dose site its dose factor and kVp; every other draw unchanged."""
  plain = cohort.plan_cohort(synth_key(), smoke_synth(24))
  varied = cohort.plan_cohort(synth_key(), smoke_synth(
      24, second_kernel_fraction=0.5, site_protocols=((1.0, 120), (1.0, 120), (0.6, 100))))
  low_site = cohort.INSTITUTIONS[2]
  seconds = 0
  for a, b in zip(plain, varied):
    assert a.kernel == ""
    low = a.tags.institution == low_site
    assert b.dose == pytest.approx(a.dose * (0.6 if low else 1.0))
    assert b.tags.kvp == (100.0 if low else 120.0)
    assert dataclasses.replace(b, kernel="", dose=a.dose, tags=a.tags) == a
    profile = cohort.plan_profile(b, smoke_synth(24, second_kernel_fraction=0.5))
    own = vendors.PROFILES[b.vendor]
    if b.kernel:
      seconds += 1
      assert b.kernel == own.second_kernel[0] and profile.kernel == (b.kernel, *own.kernel[1:])
      assert profile.physics.nps_peak_per_mm == pytest.approx(own.second_kernel[2])
      assert profile.physics.noise_hu == own.physics.noise_hu
    else:
      assert profile.kernel == own.kernel
  assert 0 < seconds < 24
  with pytest.raises(ValueError, match="site_protocols"):
    cohort.plan_cohort(synth_key(), smoke_synth(2, site_protocols=((1.0, 120),)))
  # Written: the kernel tag follows the plan.
  synth = smoke_synth(4, second_kernel_fraction=1.0)
  plan = cohort.plan_cohort(synth_key(), synth)[0]
  export.write_study(tmp_path, plan, cohort.render_study(synth_key(), plan, synth), synth)
  kernels = {str(pydicom.dcmread(p, stop_before_pixels=True).get("ConvolutionKernel", ""))
             for p in tmp_path.rglob("*.dcm")}
  assert vendors.PROFILES[plan.vendor].second_kernel[0] in kernels


def test_settings_rendered_together_write_what_each_writes_alone(tmp_path):
  """A sweep's strengths share each head's anatomy (export.write_cohorts): every file
  of every setting's export is byte for byte the one write_cohort writes alone (thin
  series, tilt and two plane spacings included)."""
  settings = [smoke_synth(4, signature_strength=s, tilt_fraction=0.5) for s in (0.0, 2.0)]
  together = [tmp_path / f"together_{i}" for i in range(2)]
  export.write_cohorts(synth_key(), settings, together)
  for i, synth in enumerate(settings):
    alone = tmp_path / f"alone_{i}"
    export.write_cohort(synth_key(), synth, alone)
    names = sorted(p.relative_to(alone) for p in alone.rglob("*") if p.is_file())
    assert names == sorted(p.relative_to(together[i]) for p in together[i].rglob("*")
                           if p.is_file())
    for name in names:
      assert (alone / name).read_bytes() == (together[i] / name).read_bytes(), name
  with pytest.raises(ValueError, match="plan different studies"):
    export.write_cohorts(synth_key(), [settings[0], smoke_synth(6)], together)
