"""End to end: a hand-built DICOM tree through ingest_tree (library entry of launch/ingest)."""
import gzip
import json
import logging
import os

import dicom_cases
import nibabel as nib
import numpy as np
import pydicom
import pytest

from configs import default
from scanbias_jax import files
from scanbias_jax.cohort import ingest, manifest

FIVE = np.arange(10) * 5.0
THIN = np.arange(20) * 2.5
SMALL = dict(rows=24, columns=24, pixel_mm=8.0)


def _config(grid="paper", workers=1):
  config = default.get_config()
  config.ingest.grid = grid
  config.ingest.workers = workers
  config.ingest.secret = "test-secret"
  config.ingest.selection.min_slices = 8
  config.ingest.paper_grid.in_plane = 32
  config.ingest.paper_grid.n_slices = 12
  return config


@pytest.fixture(scope="module", name="tree")
def fixture_tree(tmp_path_factory):
  """Studies: a: scout+thin+5mm (shuffled, nested); b: thin-only Siemens; c: tilt;
  d: one truncated slice; e: no rescale tags; f: RLE compressed. Plus junk files."""
  root = tmp_path_factory.mktemp("export")
  order = np.random.default_rng(3).permutation(len(FIVE))
  dicom_cases.write_series(root / "x" / "y", FIVE, study="a", names=[f"{i}.dcm" for i in order],
                           instance_numbers=[int(i) + 1 for i in order[::-1]], **SMALL)
  dicom_cases.write_series(root / "x" / "z", THIN, study="a", series="thin", thickness=2.5,
                           description="2.5mm HEAD", series_number=3, **SMALL)
  dicom_cases.write_scout(root / "x" / "s", study="a")
  dicom_cases.write_series(root / "b", THIN, study="b", series="thin", thickness=2.5,
                           vendor=dicom_cases.SIEMENS, description="Head 2.5 H40s", sex="M",
                           **SMALL)
  dicom_cases.write_series(root / "c", FIVE, study="c", tilt_deg=12.0, **SMALL)
  paths = dicom_cases.write_series(root / "d", FIVE, study="d", **SMALL)
  data = open(paths[4], "rb").read()
  open(paths[4], "wb").write(data[:-200])
  dicom_cases.write_series(root / "e", FIVE, study="e", rescale=False, **SMALL)
  dicom_cases.write_series(root / "f", FIVE, study="f", compress=pydicom.uid.RLELossless,
                           **SMALL)
  (root / "DICOMDIR.txt").write_text("export log of Doe^Janet")
  return root


@pytest.fixture(scope="module", name="paper_run")
def fixture_paper_run(tree, tmp_path_factory):
  out = tmp_path_factory.mktemp("paper")
  return out, ingest.ingest_tree(str(tree), str(out), _config(workers=2))


def _read(out, name):
  with open(os.path.join(out, name)) as f:
    return manifest.from_csv(f.read())


def test_manifest_and_rejects(paper_run):
  out, summary = paper_run
  assert summary["studies"] == 6 and summary["studies_ok"] == 5
  rows = {row["selection"] or row["reason"]: row for row in _read(out, "manifest.csv")}
  assert len(rows) >= 3
  by_status = [row["status"] for row in _read(out, "manifest.csv")]
  assert sorted(by_status) == ["ok"] * 5 + ["rejected"]
  table = _read(out, "manifest.csv")
  thin = [r for r in table if r["vendor"] == "Siemens"][0]
  assert thin["selection"].startswith("no 5 mm axial series; thinnest axial 2.5 mm")
  assert "slices 2.5 -> 5 mm (average)" in thin["resampled"] and thin["sex"] == "M"
  assert thin["kernel"] == "H40s\\3" and thin["manufacturer"] == "SIEMENS"
  five = [r for r in table if r["n_series"] == "3"][0]
  assert five["selection"] == "axial 5 mm, description says 5 mm" and five["age_years"] == "63"
  assert any("gantry tilt 12.0 deg corrected" in r["resampled"] for r in table)
  assert any("1 missing slice(s)" in r["resampled"] for r in table)
  rejected = [r for r in table if r["status"] == "rejected"][0]
  assert rejected["reason"].startswith("no usable series")
  for row in table:
    if row["status"] == "ok":
      assert row["shape"] == "32x32x12" and row["spacing_mm"].endswith("x5")
  reasons = [(r["level"], r["reason"]) for r in _read(out, "rejects.csv")]
  assert ("file", "not a DICOM file") in reasons and ("file", "truncated pixel data") in reasons
  assert ("series", "localizer (scout)") in reasons
  assert ("series", "not chosen: a better-ranked series was used") in reasons
  assert any("missing RescaleSlope/RescaleIntercept" in r for _, r in reasons)


def test_nifti_header_is_clean_and_geometry_kept(paper_run):
  out, _ = paper_run
  for name in os.listdir(os.path.join(out, "volumes")):
    image = nib.load(os.path.join(out, "volumes", name))
    header = image.header
    assert image.get_data_dtype() == np.int16
    assert header["descrip"].item() == b"scanbias_jax HU"
    assert header["aux_file"].item() == b"" and header["intent_name"].item() == b""
    assert header["db_name"].item() == b"" and int(header["sform_code"]) == 1
    np.testing.assert_allclose(image.get_qform(), image.get_sform(), atol=1e-4)


def test_no_phi_in_any_output(paper_run, tree, caplog):
  out, _ = paper_run
  with caplog.at_level(logging.DEBUG):
    ingest.ingest_tree(str(tree), str(out), _config())
  needles = set(dicom_cases.FAKE_PHI.values()) | {"Doe", "Janet", "1958", "Fakeville"}
  for path in tree.rglob("*.dcm"):
    ds = pydicom.dcmread(path, stop_before_pixels=True, force=True)
    needles |= {str(ds.get(k)) for k in ("StudyInstanceUID", "SeriesInstanceUID",
                                         "SOPInstanceUID") if k in ds}
    needles |= {os.path.relpath(path, tree), str(path)}
  texts = {"log": caplog.text}
  for directory, _, names in os.walk(out):
    for name in names:
      texts[name] = name
      data = open(os.path.join(directory, name), "rb").read()
      if name.endswith(".gz"):
        data = gzip.decompress(data)
      texts[os.path.join(directory, name)] = data.decode("latin-1")
  needles.discard("None")
  for where, text in texts.items():
    for needle in needles:
      assert needle not in text, (needle, where)


def test_native_grid_matches_independent_converters(tree, tmp_path):
  summary = ingest.ingest_tree(str(tree), str(tmp_path), _config("native"))
  assert summary["studies_ok"] == 5
  table = _read(tmp_path, "manifest.csv")
  five = [r for r in table if r["n_series"] == "3"][0]
  assert five["shape"] == "24x24x10" and five["grid"] == "native"
  image = nib.load(tmp_path / five["path"])
  reference, affine = dicom_cases.sitk_reference(tree / "x" / "y")
  np.testing.assert_array_equal(np.asarray(image.dataobj), np.maximum(reference, -1024))
  np.testing.assert_allclose(files.ras_affine(image.affine), affine, atol=1e-3)
  # dicom2nifti writes its own NIfTI (RAS, possibly reoriented): compare in canonical RAS.
  import dicom2nifti  # pylint: disable=g-import-not-at-top
  theirs = dicom2nifti.dicom_series_to_nifti(str(tree / "f"), str(tmp_path / "f.nii.gz"),
                                             reorient_nifti=True)["NII"]
  compressed = [r for r in table if r["status"] == "ok" and r["n_series"] == "1"]
  ours = [nib.load(tmp_path / r["path"]) for r in compressed]
  theirs = nib.as_closest_canonical(theirs)
  matches = [np.allclose(nib.as_closest_canonical(o).affine, theirs.affine, atol=1e-3)
             and np.array_equal(np.asarray(nib.as_closest_canonical(o).dataobj),
                                np.maximum(np.asarray(theirs.dataobj), -1024))
             for o in ours if o.shape == theirs.shape]
  assert sum(matches) == 1


def test_rerun_skips_and_resumes(tree, tmp_path):
  config = _config()
  first = ingest.ingest_tree(str(tree), str(tmp_path), config)
  manifest_text = (tmp_path / "manifest.csv").read_text()
  again = ingest.ingest_tree(str(tree), str(tmp_path), config)
  assert again["studies_skipped_as_done"] == 6 and again["studies_ingested_now"] == 0
  # A killed run: one study's record gone, a stray temp file left behind.
  record = sorted((tmp_path / "records").iterdir())[0]
  record.unlink()
  (tmp_path / "volumes" / ".half.123.tmp.nii.gz").write_bytes(b"\x1f\x8b")
  resumed = ingest.ingest_tree(str(tree), str(tmp_path), config)
  assert resumed["studies_ingested_now"] == 1 and first["studies_ok"] == resumed["studies_ok"]
  assert (tmp_path / "manifest.csv").read_text() == manifest_text
  with pytest.raises(ValueError, match="other settings"):
    ingest.ingest_tree(str(tree), str(tmp_path), _config("native"))


def test_generated_secret_is_stored_privately(tree, tmp_path):
  config = _config()
  config.ingest.secret = ""
  ingest.ingest_tree(str(tree / "b"), str(tmp_path), config)
  secret = tmp_path / ".secret"
  assert secret.exists() and (secret.stat().st_mode & 0o077) == 0
  assert json.loads((tmp_path / "summary.json").read_text())["studies_ok"] == 1


PHI_TAGS = ("PatientName", "PatientID", "PatientBirthDate", "AccessionNumber",
            "InstitutionName", "StudyDate", "StudyInstanceUID", "SeriesInstanceUID",
            "SOPInstanceUID", "FrameOfReferenceUID", "ReferringPhysicianName")


def test_synthesized_cohort(smoke_cohort, tmp_path):
  """The synthesizer's studies: right series, same voxels as GDCM, no PHI anywhere."""
  import SimpleITK as sitk  # pylint: disable=g-import-not-at-top
  synth_out, records = smoke_cohort
  dicom_root = synth_out / "dicom"
  summary = ingest.ingest_tree(str(dicom_root), str(tmp_path), _config("native"))
  assert summary["studies_ok"] == len(records) and summary["files_rejected"] == 0
  rows = _read(tmp_path, "manifest.csv")
  by_identity = {(r["model"], r["age_years"], r["sex"]): r for r in rows}
  for record in records:
    row = by_identity[(record["model"], f"{record['age_years']:g}", record["sex"])]
    assert (row["vendor"], row["kernel"]) == (record["vendor"], record["kernel"])
    chosen = record["series"][0] if not record["thin_only"] else min(
        record["series"], key=lambda s: s["thickness_mm"])
    assert row["selection"].startswith("no 5 mm" if record["thin_only"] else "axial 5 mm")
    assert float(row["tilt_deg"]) == pytest.approx(record["tilt_deg"], abs=0.05)
    if record["tilt_deg"]:
      continue
    assert int(row["source_slices"]) == chosen["slices"]
    reader = sitk.ImageSeriesReader()
    reader.SetFileNames(reader.GetGDCMSeriesFileNames(str(dicom_root), chosen["series_uid"],
                                                      False, True))
    image = reader.Execute()
    reference = sitk.GetArrayFromImage(image).transpose(2, 1, 0)
    ours = nib.load(tmp_path / row["path"])
    np.testing.assert_array_equal(np.asarray(ours.dataobj), np.maximum(reference, -1024))
    np.testing.assert_allclose(files.ras_affine(ours.affine)[:3, 3], image.GetOrigin(),
                               atol=1e-3)
  needles = set()
  for path in dicom_root.rglob("*"):
    if path.is_file():
      ds = pydicom.dcmread(path, stop_before_pixels=True)
      needles |= {str(ds.get(tag)) for tag in PHI_TAGS if ds.get(tag)}
      needles.add(os.path.relpath(path, dicom_root))
  for directory, _, names in os.walk(tmp_path):
    for name in names:
      data = open(os.path.join(directory, name), "rb").read()
      text = (gzip.decompress(data) if name.endswith(".gz") else data).decode("latin-1")
      leaked = [n for n in needles if n in text or n in name]
      assert not leaked, (name, leaked[:3])


def test_next_series_used_when_the_best_fails(tmp_path):
  root = tmp_path / "dicom"
  dicom_cases.write_series(root / "five", np.delete(FIVE, 4), study="g", **SMALL)
  dicom_cases.write_series(root / "thin", THIN, study="g", series="thin", thickness=2.5,
                           description="2.5mm HEAD", series_number=3, **SMALL)
  config = _config()
  config.ingest.volume.gaps = "reject"
  ingest.ingest_tree(str(root), str(tmp_path / "out"), config)
  (row,) = _read(tmp_path / "out", "manifest.csv")
  assert row["status"] == "ok" and row["series_number"] == "3"
  assert row["selection"].endswith("(after 1 better-ranked series failed)")
  (reject,) = _read(tmp_path / "out", "rejects.csv")
  assert reject["series_number"] == "2" and "gap policy: reject" in reject["reason"]
