"""Index a DICOM tree from headers alone, group it by study and series, pick a series.

`read_slices` reads one file's header (never its pixels) into `SliceRef`s, one
per image (one per frame of an enhanced multi-frame object). `select_series`
ranks the series of one study the paper's way (axial 5 mm first, else the
thinnest axial series under the thin limit) and says why every other series
was passed over.
"""
import contextlib
import dataclasses
import logging
import os
import re
import warnings

import numpy as np
import pydicom
import pydicom.config
from pydicom import uid as dicom_uid

from scanbias_jax.dicom import deid

CT_STORAGE = frozenset({
    dicom_uid.CTImageStorage,
    dicom_uid.EnhancedCTImageStorage,
    dicom_uid.LegacyConvertedEnhancedCTImageStorage,
})
REQUIRED_TAGS = ("StudyInstanceUID", "SeriesInstanceUID", "SOPClassUID", "Rows",
                 "Columns")


@dataclasses.dataclass(frozen=True)
class SliceRef:
  """One image (or one frame) as its header describes it; no pixel data."""
  path: str = dataclasses.field(repr=False)
  frame: int  # -1 for a single-frame object
  study_uid: str = dataclasses.field(repr=False)
  series_uid: str = dataclasses.field(repr=False)
  patient_id: str = dataclasses.field(repr=False)
  sop_uid: str = dataclasses.field(repr=False)
  series_number: int | None
  instance_number: int | None
  sop_class: str
  modality: str
  image_type: tuple[str, ...]
  description: str
  position: tuple[float, float, float] | None
  orientation: tuple[float, ...] | None
  pixel_spacing: tuple[float, float] | None
  thickness: float | None
  rows: int
  columns: int
  manufacturer: str
  model: str
  kernel: str
  gantry_tilt: float | None
  age_years: float | None
  sex: str
  # Acquisition attributes the bias audit asks about (launch/audit.py); the two names
  # may identify a site, so they never leave ingest unhashed (manifest.acquisition).
  kvp: float | None = None
  institution: str = dataclasses.field(default="", repr=False)
  station: str = dataclasses.field(default="", repr=False)
  recon_diameter_mm: float | None = None
  study_year: str = ""


@dataclasses.dataclass(frozen=True)
class FileReject:
  path: str = dataclasses.field(repr=False)
  reason: str


@dataclasses.dataclass(frozen=True)
class SeriesChoice:
  """The ranked usable series of a study, and the reasons for the unusable ones."""
  ranked: tuple[tuple[str, str], ...]  # (series_uid, why it qualifies), best first
  passed_over: tuple[tuple[str, str], ...]  # (series_uid, reason)


@contextlib.contextmanager
def _quiet_pydicom():
  """pydicom's warnings and log lines about one file's oddities off the console: every
  file that cannot be used gets its reason in rejects.csv instead (thousands of files)."""
  log = logging.getLogger("pydicom")
  level = log.level
  log.setLevel(logging.ERROR)
  try:
    with warnings.catch_warnings():
      warnings.simplefilter("ignore")
      yield
  finally:
    log.setLevel(level)


def read_slices(path: str) -> list[SliceRef] | FileReject:
  """The images one file holds, or why it cannot be used. Reads no pixel data."""
  with _quiet_pydicom():
    return _read_slices(path)


def _read_slices(path: str) -> list[SliceRef] | FileReject:
  try:
    ds = pydicom.dcmread(path, defer_size=1024)
  except pydicom.errors.InvalidDicomError:
    return FileReject(path, "not a DICOM file")
  except Exception as error:  # a broken file must never stop the index
    return FileReject(path, f"unreadable DICOM header ({type(error).__name__})")
  missing = [tag for tag in REQUIRED_TAGS if tag not in ds]
  if missing:
    return FileReject(path, f"truncated or incomplete header (missing {', '.join(missing)})")
  pixel = ds._dict.get(pydicom.tag.Tag(0x7FE0, 0x0010))  # deferred: offset only
  if pixel is None:
    return FileReject(path, "no pixel data")
  tell, length = getattr(pixel, "value_tell", None), pixel.length
  if tell is not None and length != 0xFFFFFFFF and tell + length > os.path.getsize(path):
    return FileReject(path, "truncated pixel data")
  try:  # pydicom converts a value when it is first read: a malformed one raises here
    frames = int(ds.get("NumberOfFrames", 1) or 1)
    if ds.SOPClassUID != dicom_uid.CTImageStorage and "PerFrameFunctionalGroupsSequence" in ds:
      return [_slice_ref(path, ds, frame) for frame in range(frames)]
    return [_slice_ref(path, ds, -1)]
  except Exception as error:  # a broken file must never stop the index
    field = _malformed_field(path)
    return FileReject(path, f"malformed header value{f' in {field}' if field else ''} "
                            f"({type(error).__name__})")


# What the index reads of a header (besides the per-frame sequences): where one of
# these holds a malformed value, the reject names the field (never the value: it may
# be anything, a name included).
READ_FIELDS = ("NumberOfFrames", "Rows", "Columns", "SOPClassUID", "ImagePositionPatient",
               "ImageOrientationPatient", "PixelSpacing", "SliceThickness", "ConvolutionKernel",
               "ImageType", "SeriesNumber", "InstanceNumber", "GantryDetectorTilt", "KVP",
               "ReconstructionDiameter", "PatientAge", "PatientBirthDate", "StudyDate",
               "AcquisitionDate", "PatientSex", "Modality")


def _malformed_field(path: str) -> str:
  """The first of READ_FIELDS whose value pydicom's strict reading rejects, or ""."""
  try:
    ds = pydicom.dcmread(path, defer_size=1024)
    with pydicom.config.strict_reading():
      for keyword in READ_FIELDS:
        try:
          ds.get(keyword)
        except Exception:  # pylint: disable=broad-except
          return keyword
  except Exception:  # pylint: disable=broad-except
    pass
  return ""


def index_files(paths) -> tuple[list[SliceRef], list[FileReject]]:
  slices, rejects = [], []
  for path in paths:
    found = read_slices(path)
    if isinstance(found, FileReject):
      rejects.append(found)
    else:
      slices.extend(found)
  return slices, rejects


def group_by_study(slices) -> dict[str, dict[str, list[SliceRef]]]:
  """study uid -> series uid -> slices, in a deterministic order.

  A SOP instance exported twice (same SOPInstanceUID and frame) counts once.
  """
  studies, seen = {}, set()
  for ref in sorted(slices, key=lambda r: (r.study_uid, r.series_uid, r.path, r.frame)):
    identity = (ref.study_uid, ref.series_uid, ref.sop_uid, ref.frame)
    if identity in seen:
      continue
    seen.add(identity)
    studies.setdefault(ref.study_uid, {}).setdefault(ref.series_uid, []).append(ref)
  return studies


def slice_normal(orientation) -> np.ndarray:
  row, column = np.asarray(orientation[:3], float), np.asarray(orientation[3:], float)
  return np.cross(row, column)


def unusable_reason(ref: SliceRef) -> str | None:
  """Why one image can never be part of the chosen series, or None."""
  if ref.modality != "CT" or ref.sop_class not in CT_STORAGE:
    if ref.sop_class == dicom_uid.SecondaryCaptureImageStorage:
      return "secondary capture"
    return f"not a CT image ({ref.modality or 'no modality'})"
  if "LOCALIZER" in ref.image_type:
    return "localizer (scout)"
  if ref.image_type[:1] == ("DERIVED",) or ref.image_type[1:2] == ("SECONDARY",):
    return "derived or secondary image"
  if ref.orientation is None or ref.position is None or ref.pixel_spacing is None:
    return "no image plane geometry"
  return None


def select_series(series: dict[str, list[SliceRef]], rules) -> SeriesChoice:
  """Ranks one study's series by the selection `rules` (config.ingest.selection)."""
  ranked, passed_over = [], []
  exclude = re.compile(rules.exclude_description_regex) if rules.exclude_description_regex else None
  prefer = re.compile(rules.preferred_description_regex)
  for series_uid, refs in series.items():
    usable = [ref for ref in refs if unusable_reason(ref) is None]
    if not usable:
      passed_over.append((series_uid, unusable_reason(refs[0])))
      continue
    first = usable[0]
    plane = _plane_name(first.orientation)
    thickness = _series_thickness(usable)
    if plane != "axial":
      reason = f"not axial ({plane})"
    elif exclude and exclude.search(first.description):
      reason = "series description matches the exclude rule"
    elif len(usable) < rules.min_slices:
      reason = f"too few slices ({len(usable)} < {rules.min_slices})"
    elif thickness is None:
      reason = "no slice thickness or spacing"
    elif abs(thickness - rules.preferred_mm) <= rules.thickness_tolerance_mm:
      described = bool(prefer.search(first.description))
      rank = (0, not described, -len(usable), first.series_number or 0)
      why = f"axial {thickness:g} mm" + (", description says 5 mm" if described else "")
      ranked.append((rank, series_uid, why))
      continue
    elif thickness <= rules.thin_max_mm:
      rank = (1, thickness, -len(usable), first.series_number or 0)
      ranked.append((rank, series_uid, f"no 5 mm axial series; thinnest axial {thickness:g} mm"))
      continue
    else:
      reason = (f"axial {thickness:g} mm: neither {rules.preferred_mm:g} mm nor thin "
                f"(<= {rules.thin_max_mm:g} mm)")
    passed_over.append((series_uid, reason))
  ranked.sort(key=lambda entry: entry[0])
  return SeriesChoice(tuple((uid, why) for _, uid, why in ranked), tuple(passed_over))


def _series_thickness(refs) -> float | None:
  thicknesses = [ref.thickness for ref in refs if ref.thickness]
  if thicknesses:
    return float(np.median(thicknesses))
  normal = slice_normal(refs[0].orientation)
  positions = np.sort([np.dot(normal, ref.position) for ref in refs])
  steps = np.diff(positions)
  return float(np.median(steps)) if steps.size and np.median(steps) > 0 else None


def _plane_name(orientation) -> str:
  axis = int(np.argmax(np.abs(slice_normal(orientation))))
  return ("sagittal", "coronal", "axial")[axis]


def frame_item(ds, frame: int, sequence: str):
  """An item of a functional group for `frame`: per-frame if present, else shared."""
  per_frame = ds.get("PerFrameFunctionalGroupsSequence")
  shared = ds.get("SharedFunctionalGroupsSequence")
  groups = ([per_frame[frame]] if per_frame else []) + ([shared[0]] if shared else [])
  for group in groups:
    if sequence in group and group[sequence].value:
      return group[sequence][0]
  return pydicom.Dataset()


def _floats(value, count):
  try:
    values = tuple(float(v) for v in value)
  except (TypeError, ValueError):
    return None
  return values if len(values) == count else None


def _slice_ref(path, ds, frame) -> SliceRef:
  if frame >= 0:
    position = frame_item(ds, frame, "PlanePositionSequence").get("ImagePositionPatient")
    orientation = frame_item(ds, frame, "PlaneOrientationSequence").get(
        "ImageOrientationPatient")
    measures = frame_item(ds, frame, "PixelMeasuresSequence")
    spacing, thickness = measures.get("PixelSpacing"), measures.get("SliceThickness")
    kernel = (frame_item(ds, frame, "CTReconstructionSequence").get("ConvolutionKernel")
              or ds.get("ConvolutionKernel"))
  else:
    position, orientation = ds.get("ImagePositionPatient"), ds.get("ImageOrientationPatient")
    spacing, thickness = ds.get("PixelSpacing"), ds.get("SliceThickness")
    kernel = ds.get("ConvolutionKernel")
  if isinstance(kernel, pydicom.multival.MultiValue):
    kernel = "\\".join(str(k) for k in kernel)
  image_type = ds.get("ImageType") or ()
  if isinstance(image_type, str):
    image_type = (image_type,)
  return SliceRef(
      path=path, frame=frame,
      study_uid=str(ds.StudyInstanceUID), series_uid=str(ds.SeriesInstanceUID),
      patient_id=str(ds.get("PatientID", "")),
      sop_uid=str(ds.get("SOPInstanceUID", path)),
      series_number=_int_or_none(ds.get("SeriesNumber")),
      instance_number=_int_or_none(ds.get("InstanceNumber")),
      sop_class=str(ds.SOPClassUID), modality=str(ds.get("Modality", "")),
      image_type=tuple(str(v).strip().upper() for v in image_type),
      description=str(ds.get("SeriesDescription", "")),
      position=_floats(position, 3) if position is not None else None,
      orientation=_floats(orientation, 6) if orientation is not None else None,
      pixel_spacing=_floats(spacing, 2) if spacing is not None else None,
      thickness=float(thickness) if thickness not in (None, "") else None,
      rows=int(ds.Rows), columns=int(ds.Columns),
      manufacturer=str(ds.get("Manufacturer", "")).strip(),
      model=str(ds.get("ManufacturerModelName", "")).strip(),
      kernel=str(kernel or "").strip(),
      gantry_tilt=float(ds.GantryDetectorTilt) if ds.get("GantryDetectorTilt") not in (None, "") else None,
      age_years=deid.age_in_years(ds.get("PatientAge"), ds.get("PatientBirthDate"),
                                  ds.get("StudyDate") or ds.get("AcquisitionDate")),
      sex=deid.normalise_sex(ds.get("PatientSex")),
      kvp=_float_or_none(ds.get("KVP")),
      institution=str(ds.get("InstitutionName", "")).strip(),
      station=str(ds.get("StationName", "")).strip(),
      recon_diameter_mm=_float_or_none(ds.get("ReconstructionDiameter")),
      study_year=_year(ds.get("StudyDate") or ds.get("AcquisitionDate") or ""))


def _float_or_none(value):
  try:
    return float(value)
  except (TypeError, ValueError):
    return None


def _year(date) -> str:
  """The year of a DICOM date (YYYYMMDD), or "" (a year alone identifies no one)."""
  text = str(date).strip()
  return text[:4] if len(text) >= 4 and text[:4].isdigit() else ""


def _int_or_none(value):
  try:
    return int(value)
  except (TypeError, ValueError):
    return None
