"""Writes synthetic studies as real DICOM (CT Image Storage), the way vendors do.

Used by the synthesizer only; ingest never imports it. Every file is written to
a temporary name and renamed, so a killed run leaves no half file.
"""
import dataclasses
from pathlib import Path

import numpy as np
import pydicom
from pydicom.charset import default_encoding
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.filebase import DicomBytesIO
from pydicom.filewriter import correct_ambiguous_vr, write_data_element, write_file_meta_info
from pydicom.uid import (CTImageStorage, ExplicitVRLittleEndian, JPEG2000Lossless,
                         RLELossless, generate_uid)

from scanbias_jax import files
from scanbias_jax.synth.geometry import SeriesGeometry
from scanbias_jax.synth.vendors import Profile

TRANSFER_SYNTAX = {"explicit": ExplicitVRLittleEndian, "jpeg2000": JPEG2000Lossless,
                   "rle": RLELossless}
UID_ROOT = "1.2.826.0.1.3680043.8.498."  # pydicom's root: these UIDs are synthetic


@dataclasses.dataclass(frozen=True)
class StudyTags:
  """Patient- and study-level values, fake PHI included."""
  uid_seed: str          # entropy for every UID of the study
  patient_name: str
  patient_id: str
  birth_date: str        # YYYYMMDD
  age_years: int
  sex: str               # "M" | "F"
  accession: str
  institution: str
  referring: str
  study_date: str
  study_time: str
  model: str
  station: str
  kvp: float
  mas: float
  ctdi_vol: float


@dataclasses.dataclass(frozen=True)
class SeriesTags:
  number: int
  description: str
  kind: str              # "axial" | "scout"


def uid(study: StudyTags, *parts) -> str:
  return generate_uid(prefix=UID_ROOT, entropy_srcs=[study.uid_seed, *map(str, parts)])


def _study_dataset(study: StudyTags, profile: Profile) -> Dataset:
  ds = Dataset()
  ds.SpecificCharacterSet = "ISO_IR 100"
  ds.SOPClassUID = CTImageStorage
  ds.Modality = "CT"
  ds.Manufacturer = profile.manufacturer
  ds.ManufacturerModelName = study.model
  ds.StationName = study.station
  ds.SoftwareVersions = f"{profile.name.lower()}-sim-1"
  ds.InstitutionName = study.institution
  ds.ReferringPhysicianName = study.referring
  ds.PatientName = study.patient_name
  ds.PatientID = study.patient_id
  ds.PatientBirthDate = study.birth_date
  ds.PatientSex = study.sex
  ds.PatientAge = f"{study.age_years:03d}Y"
  ds.StudyInstanceUID = uid(study, "study")
  ds.FrameOfReferenceUID = uid(study, "frame")
  ds.StudyDate = ds.SeriesDate = ds.AcquisitionDate = ds.ContentDate = study.study_date
  ds.StudyTime = ds.SeriesTime = ds.AcquisitionTime = ds.ContentTime = study.study_time
  ds.AccessionNumber = study.accession
  ds.StudyID = study.accession[-4:]
  ds.StudyDescription = "CT HEAD WO CONTRAST"
  ds.BodyPartExamined = "HEAD"
  ds.PatientPosition = "HFS"
  ds.KVP = study.kvp
  ds.Exposure = int(round(study.mas))
  ds.CTDIvol = round(study.ctdi_vol, 2)
  return ds


def _pixel_module(ds: Dataset, stored: np.ndarray, profile: Profile) -> None:
  ds.SamplesPerPixel = 1
  ds.PhotometricInterpretation = "MONOCHROME2"
  ds.Rows, ds.Columns = stored.shape
  ds.BitsAllocated = 16
  ds.BitsStored = profile.bits_stored
  ds.HighBit = profile.bits_stored - 1
  ds.PixelRepresentation = profile.pixel_representation
  ds.PixelData = stored.tobytes()


def axial_datasets(study: StudyTags, series: SeriesTags, geometry: SeriesGeometry,
                   stored: np.ndarray, profile: Profile) -> list[Dataset]:
  """One CT image per slice of an axial series, in the vendor's instance order."""
  order = range(geometry.num_slices)
  if profile.instance_order == "superior_first":
    order = reversed(order)
  series_ds = _study_dataset(study, profile)  # what every image of the series shares
  series_ds.ImageType = ["ORIGINAL", "PRIMARY", "AXIAL"]
  series_ds.SeriesInstanceUID = uid(study, "series", series.number)
  series_ds.SeriesNumber = series.number
  series_ds.AcquisitionNumber = 1
  series_ds.SeriesDescription = series.description
  series_ds.ConvolutionKernel = list(profile.kernel) if len(profile.kernel) > 1 \
      else profile.kernel[0]
  series_ds.SliceThickness = geometry.thickness_mm
  series_ds.SpacingBetweenSlices = geometry.thickness_mm
  series_ds.GantryDetectorTilt = geometry.tilt_deg
  series_ds.ImageOrientationPatient = geometry.orientation()
  series_ds.PixelSpacing = [geometry.pixel_mm, geometry.pixel_mm]
  series_ds.ReconstructionDiameter = geometry.pixel_mm * geometry.matrix
  series_ds.RescaleIntercept = profile.rescale_intercept
  series_ds.RescaleSlope = profile.rescale_slope
  series_ds.RescaleType = "HU"
  series_ds.WindowCenter, series_ds.WindowWidth = 40, 80
  if profile.padding_tag:
    series_ds.PixelPaddingValue = profile.outside_stored
  out = []
  for instance, k in enumerate(order, start=1):
    # A new mapping of the shared elements (none is changed in place afterwards):
    # building ~45 elements per image through pydicom cost ~1.3 ms an image.
    ds = Dataset(dict(series_ds.items()))
    ds.SOPInstanceUID = uid(study, "image", series.number, k)
    ds.InstanceNumber = instance
    ds.ImagePositionPatient = [round(float(v), 4) for v in geometry.positions[k]]
    ds.SliceLocation = round(float(geometry.positions[k][2]), 4)
    _pixel_module(ds, stored[k], profile)
    out.append(ds)
  return out


def scout_datasets(study: StudyTags, series: SeriesTags, images: list[np.ndarray],
                   spacings: list[tuple[float, float]], orientations: list[list[float]],
                   origins: list[np.ndarray], profile: Profile) -> list[Dataset]:
  """The localizer images (projection radiographs, no HU rescale)."""
  out = []
  for instance, (image, spacing, iop, origin) in enumerate(
      zip(images, spacings, orientations, origins), start=1):
    ds = _study_dataset(study, profile)
    ds.ImageType = ["ORIGINAL", "PRIMARY", "LOCALIZER"]
    ds.SeriesInstanceUID = uid(study, "series", series.number)
    ds.SOPInstanceUID = uid(study, "image", series.number, instance)
    ds.SeriesNumber = series.number
    ds.InstanceNumber = instance
    ds.SeriesDescription = series.description
    ds.ImageOrientationPatient = iop
    ds.ImagePositionPatient = [round(float(v), 4) for v in origin]
    ds.PixelSpacing = list(spacing)
    ds.SliceThickness = 0.6
    ds.RescaleIntercept, ds.RescaleSlope = 0, 1
    _pixel_module(ds, image.astype(np.uint16),
                  dataclasses.replace(profile, bits_stored=12, pixel_representation=0))
    out.append(ds)
  return out


def save(ds: Dataset, path: Path, transfer_syntax: str = "explicit") -> int:
  """Writes `ds` as a Part 10 file atomically; returns its size in bytes."""
  syntax = TRANSFER_SYNTAX[transfer_syntax]
  ds.file_meta = FileMetaDataset()
  ds.file_meta.MediaStorageSOPClassUID = ds.SOPClassUID
  ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
  ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
  if syntax != ExplicitVRLittleEndian:
    ds.compress(syntax, generate_instance_uid=False)
  with files.atomic_path(path) as temporary:
    pydicom.dcmwrite(temporary, ds, enforce_file_format=True)
  return path.stat().st_size


def _encoded(elements, encodings) -> bytes:
  """Data elements as Explicit VR Little Endian bytes, pydicom's encoder."""
  fp = DicomBytesIO()
  fp.is_little_endian, fp.is_implicit_VR = True, False
  for element in elements:
    write_data_element(fp, element, encodings)
  return fp.getvalue()


def _uid_value(text: str) -> bytes:
  """A UI value as encoded: padded to even length with a NUL."""
  data = text.encode("ascii")
  return data + b"\x00" * (len(data) % 2)


def _file_meta(ds: Dataset) -> bytes:
  meta = FileMetaDataset()
  meta.MediaStorageSOPClassUID = ds.SOPClassUID
  meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
  meta.TransferSyntaxUID = ExplicitVRLittleEndian
  fp = DicomBytesIO()
  fp.is_little_endian, fp.is_implicit_VR = True, False
  write_file_meta_info(fp, meta, enforce_standard=True)
  return fp.getvalue()


def save_series(datasets: list[Dataset], paths: list[Path],
                transfer_syntax: str = "explicit") -> int:
  """`save` for each image of a series (the same bytes), faster: the elements every
  image shares are encoded once. Compressed syntaxes, or images whose element sets
  differ, go through `save` one by one. Returns the bytes written."""
  tags = sorted(datasets[0].keys()) if datasets else []
  if (TRANSFER_SYNTAX[transfer_syntax] != ExplicitVRLittleEndian or len(datasets) < 2
      or any(sorted(ds.keys()) != tags for ds in datasets[1:])
      or any(t.group <= 2 or (t.element == 0 and t.group > 6) for t in tags)
      or any(ds[t].VR == "SQ" for ds in datasets[:1] for t in tags)):
    return sum(save(ds, path, transfer_syntax) for ds, path in zip(datasets, paths))
  for ds in datasets:
    correct_ambiguous_vr(ds, True)   # as dcmwrite does (e.g. US/SS by PixelRepresentation)
  first = datasets[0]
  def as_first(ds, tag):  # elements copied from one series dataset are the same objects
    a, b = ds.get_item(tag), first.get_item(tag)
    return a is b or (a.VR == b.VR and a.value == b.value)

  shared = [all(as_first(ds, t) for ds in datasets[1:]) for t in tags]
  encodings = first.get("SpecificCharacterSet", default_encoding)
  # Runs of shared elements, encoded once, between the elements each image has its own.
  runs, start = [], 0
  for index in [i for i, common in enumerate(shared) if not common] + [len(tags)]:
    runs.append(_encoded([first[t] for t in tags[start:index]], encodings))
    start = index + 1
  own = [t for t, common in zip(tags, shared) if not common]
  meta, meta_uid = _file_meta(first), _uid_value(first.SOPInstanceUID)
  size = 0
  for ds, path in zip(datasets, paths):
    uid_value = _uid_value(ds.SOPInstanceUID)
    # The file meta differs only in the instance UID: substituted when as long.
    parts = [b"\x00" * 128, b"DICM", meta.replace(meta_uid, uid_value)
             if len(uid_value) == len(meta_uid) else _file_meta(ds), runs[0]]
    for tag, run in zip(own, runs[1:]):
      parts += [_encoded([ds[tag]], encodings), run]
    data = b"".join(parts)
    files.write_bytes(path, data)
    size += len(data)
  return size


def scout_images(series):
  """Lateral and AP projections of a rendered series' volume (cohort.RenderedSeries;
  12-bit, bone bright)."""
  g = series.geometry
  mu = np.clip(series.acquired.hu + 1000.0, 0, None) / 1000.0     # relative to water
  step = g.table_step_mm
  images, spacings, iops, origins = [], [], [], []
  top = g.positions[-1]
  for axis, iop, origin in (
      (2, [0.0, 1.0, 0.0, 0.0, 0.0, -1.0], np.array([0.0, top[1], top[2]])),
      (1, [1.0, 0.0, 0.0, 0.0, 0.0, -1.0], np.array([top[0], 0.0, top[2]]))):
    path = mu.sum(axis=axis)[::-1] * g.pixel_mm                     # rows: top down
    images.append(np.clip(path / max(path.max(), 1e-6) * 4095, 0, 4095))
    spacings.append((step, g.pixel_mm))
    iops.append(iop)
    origins.append(origin)
  return images, spacings, iops, origins
