"""Header indexing, file rejects, series selection, and the PHI-free facts (deid)."""
import dataclasses

import numpy as np
import pytest

from configs import default
from scanbias_jax.dicom import deid, scan
import dicom_cases


@pytest.fixture(name="rules")
def fixture_rules():
  return default.get_config().ingest.selection


def _series(uid, count, thickness, description="", image_type=("ORIGINAL", "PRIMARY", "AXIAL"),
            orientation=(1, 0, 0, 0, 1, 0), number=1, sop_class=scan.dicom_uid.CTImageStorage):
  return [scan.SliceRef(
      path=f"{uid}/{k}", frame=-1, study_uid="s", series_uid=uid, patient_id="p",
      sop_uid=f"{uid}.{k}",
      series_number=number, instance_number=k, sop_class=sop_class, modality="CT",
      image_type=image_type, description=description, position=(0.0, 0.0, k * thickness),
      orientation=orientation, pixel_spacing=(1.0, 1.0), thickness=thickness, rows=8,
      columns=8, manufacturer="GE MEDICAL SYSTEMS", model="", kernel="", gantry_tilt=0.0,
      age_years=63.0, sex="F") for k in range(count)]


def test_scout_thin_and_5mm_study_chooses_5mm(rules):
  series = {"scout": _series("scout", 2, 1.0, "SCOUT", ("ORIGINAL", "PRIMARY", "LOCALIZER")),
            "thin": _series("thin", 48, 1.25, "1.25mm HEAD STD", number=3),
            "five": _series("five", 12, 5.0, "5mm HEAD", number=2)}
  choice = scan.select_series(series, rules)
  assert [uid for uid, _ in choice.ranked] == ["five", "thin"]
  assert "5 mm" in choice.ranked[0][1]
  assert dict(choice.passed_over) == {"scout": "localizer (scout)"}


def test_thin_only_study_chooses_thinnest(rules):
  series = {"a": _series("a", 24, 2.5, "2.5mm"), "b": _series("b", 48, 1.25, "1.25mm"),
            "c": _series("c", 20, 3.75, "3.75mm")}
  choice = scan.select_series(series, rules)
  assert [uid for uid, _ in choice.ranked] == ["b", "a"]
  assert "thinnest axial 1.25 mm" in choice.ranked[0][1]
  assert "neither 5 mm nor thin" in dict(choice.passed_over)["c"]


def test_never_derived_secondary_coronal_or_excluded(rules):
  series = {
      "derived": _series("derived", 12, 5.0, "5mm", ("DERIVED", "SECONDARY", "AXIAL")),
      "sc": _series("sc", 12, 5.0, "5mm", sop_class=scan.dicom_uid.SecondaryCaptureImageStorage),
      "coronal": _series("coronal", 12, 5.0, "5mm COR", orientation=(1, 0, 0, 0, 0, -1)),
      "bone": _series("bone", 12, 5.0, "5mm BONE"),
      "few": _series("few", 3, 5.0, "5mm"),
  }
  choice = scan.select_series(series, rules)
  assert not choice.ranked
  reasons = dict(choice.passed_over)
  assert reasons["derived"] == "derived or secondary image"
  assert reasons["sc"] == "secondary capture"
  assert reasons["coronal"] == "not axial (coronal)"
  assert "exclude" in reasons["bone"]
  assert reasons["few"].startswith("too few slices")


def test_description_breaks_ties_between_5mm_series(rules):
  series = {"plain": _series("plain", 30, 5.0, "HEAD STD", number=2),
            "named": _series("named", 30, 5.0, "Head 5.0 H40s", number=4)}
  assert scan.select_series(series, rules).ranked[0][0] == "named"


@pytest.mark.parametrize("description,kept", [
    ("Brain 5mm iDose 4", True), ("Brain 5.0 FC26 AIDR 3D", True), ("5mm HEAD ASIR-V 40%", True),
    ("Dose Report", False), ("3D VRT", False), ("Head 5mm 3D", False)])
def test_iterative_reconstruction_names_are_not_excluded(rules, description, kept):
  """Vendors name their routine series after their iterative reconstruction; the
  exclusion words must not catch iDose or AIDR 3D."""
  choice = scan.select_series({"s": _series("s", 30, 5.0, description, number=2)}, rules)
  assert bool(choice.ranked) == kept, (description, choice)


def test_tilted_series_is_still_axial(rules):
  tilt = np.radians(20)
  series = {"t": _series("t", 12, 5.0, orientation=(1, 0, 0, 0, np.cos(tilt), -np.sin(tilt)))}
  assert scan.select_series(series, rules).ranked


def test_index_lists_broken_files_with_reasons(tmp_path):
  paths = dicom_cases.write_series(tmp_path / "s", np.arange(3) * 5.0)
  data = open(paths[0], "rb").read()
  open(paths[0], "wb").write(data[:-300])       # pixel data cut short
  open(paths[1], "wb").write(data[:400])        # header cut short
  (tmp_path / "notes.txt").write_text("not an image")
  (tmp_path / "empty.dcm").write_bytes(b"")
  slices, rejects = scan.index_files(sorted(str(p) for p in tmp_path.rglob("*") if p.is_file()))
  assert len(slices) == 1
  reasons = sorted(reject.reason for reject in rejects)
  assert reasons[0] == "not a DICOM file" and reasons[1] == "not a DICOM file"
  assert reasons[2].startswith("truncated or incomplete header")
  assert reasons[3] == "truncated pixel data"
  assert all("PHI" not in repr(r) for r in rejects + slices)


def test_slice_refs_read_vendor_conventions(tmp_path):
  paths = dicom_cases.write_series(tmp_path, [0.0], vendor=dicom_cases.SIEMENS,
                                   patient_age="", sex="M")
  (ref,) = scan.read_slices(paths[0])
  assert ref.kernel == "H40s\\3" and ref.manufacturer == "SIEMENS"
  assert ref.age_years == 60.0  # from PatientBirthDate 19581122 and StudyDate 20190417
  assert ref.sex == "M"
  assert "PHI-ID" not in repr(ref)


@pytest.mark.parametrize("age, expected", [
    ("063Y", 63.0), ("006M", 0.5), ("010W", 0.19), ("003D", 0.01), ("45", 45.0)])
def test_age_units(age, expected):
  assert deid.age_in_years(age, None, None) == expected


@pytest.mark.parametrize("raw, vendor", [
    ("GE MEDICAL SYSTEMS", "GE"), ("SIEMENS", "Siemens"), ("Siemens Healthineers", "Siemens"),
    ("Philips", "Philips"), ("TOSHIBA", "Canon"), ("CANON_MEC", "Canon"),
    ("Canon Medical Systems", "Canon"), ("", "unknown"), ("Acme CT", "Acme CT")])
def test_vendor_names(raw, vendor):
  assert deid.normalise_vendor(raw) == vendor


def test_pseudonyms_are_keyed():
  a = deid.pseudonym(b"secret-a", "study", "1.2.3")
  assert a == deid.pseudonym(b"secret-a", "study", "1.2.3")
  assert a != deid.pseudonym(b"secret-b", "study", "1.2.3")
  assert a != deid.pseudonym(b"secret-a", "patient", "1.2.3")
  assert "1.2.3" not in a
  with pytest.raises(ValueError):
    deid.pseudonym(b"", "study", "1.2.3")


def test_slice_ref_repr_hides_identifiers():
  ref = _series("1.2.840.99", 1, 5.0)[0]
  ref = dataclasses.replace(ref, patient_id="PHI-ID-4711")
  assert "PHI-ID-4711" not in repr(ref) and "1.2.840.99" not in repr(ref)


def test_duplicate_files_count_once(tmp_path):
  paths = dicom_cases.write_series(tmp_path / "a", np.arange(4) * 5.0)
  copy = tmp_path / "copy.dcm"
  copy.write_bytes(open(paths[2], "rb").read())
  slices, _ = scan.index_files(paths + [str(copy)])
  (series,) = next(iter(scan.group_by_study(slices).values())).values()
  assert len(series) == 4
