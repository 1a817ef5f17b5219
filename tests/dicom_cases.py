"""Hand-built DICOM cases for the ingest tests, written with pydicom.

A small analytic head (skull ring, brain with a gradient, an off-centre marker)
is sampled at every pixel's patient position, so tilted and shifted series show
the same anatomy. Every file carries fake PHI (the FAKE_PHI strings), which no
ingest output may contain.
"""
import dataclasses

import numpy as np
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.sequence import Sequence
from pydicom import uid as dicom_uid

FAKE_PHI = {
    "PatientName": "Doe^Janet",
    "PatientID": "PHI-ID-4711",
    "PatientBirthDate": "19581122",
    "AccessionNumber": "ACC90210",
    "InstitutionName": "Fakeville General Hospital",
    "StudyDate": "20190417",
    "ReferringPhysicianName": "Quack^Doctor",
}


@dataclasses.dataclass(frozen=True)
class Vendor:
  manufacturer: str = "GE MEDICAL SYSTEMS"
  model: str = "LightSpeed VCT"
  kernel: object = "STANDARD"
  signed: bool = True
  bits_stored: int = 16
  intercept: float = -1024.0
  slope: float = 1.0
  padding: int | None = -2000  # stored value outside the field of view (None: store 0)


GE = Vendor()
SIEMENS = Vendor("SIEMENS", "SOMATOM Definition AS", ["H40s", "3"], False, 12, -1024.0,
                 1.0, None)


def phantom_hu(points):
  """HU at LPS points (..., 3): skull ring, brain with a z/x gradient, a marker."""
  x, y, z = points[..., 0], points[..., 1], points[..., 2]
  radius = np.sqrt((x / 70.0) ** 2 + (y / 85.0) ** 2 + ((z - 40.0) / 80.0) ** 2)
  hu = np.full(x.shape, -1000.0)
  hu[radius < 1.0] = 1200.0
  brain = radius < 0.88
  hu[brain] = 25.0 + 0.1 * z[brain] + 0.05 * x[brain]
  marker = (x - 20) ** 2 + (y + 15) ** 2 + (z - 50) ** 2 < 12.0 ** 2
  hu[marker] = 70.0
  return hu


def uid(*parts) -> str:
  return dicom_uid.generate_uid(entropy_srcs=[str(p) for p in parts])


def series_slices(heights, *, rows=32, columns=32, pixel_mm=6.0, tilt_deg=0.0,
                  thickness=None):
  """(position, orientation) per slice; tilt the GE way (table steps along z)."""
  tilt = np.radians(tilt_deg)
  row = np.array([1.0, 0.0, 0.0])
  column = np.array([0.0, np.cos(tilt), -np.sin(tilt)])
  centre_offset = -(np.array([columns, rows]) - 1) / 2 * pixel_mm
  planes = []
  for height in heights:
    origin = np.array([0.0, 0.0, height]) + centre_offset[0] * row + centre_offset[1] * column
    planes.append((origin, np.concatenate([row, column])))
  return planes


def slice_dataset(*, position, orientation, study, series, instance, vendor=GE,
                  rows=32, columns=32, pixel_mm=6.0, thickness=5.0, description="5mm HEAD",
                  series_number=2, image_type=("ORIGINAL", "PRIMARY", "AXIAL"),
                  field_radius_mm=None, rescale=True, tilt_deg=0.0,
                  patient_age="063Y", sex="F") -> Dataset:
  """One CT Image Storage slice sampling the phantom at its own geometry."""
  row, column = np.asarray(orientation[:3]), np.asarray(orientation[3:])
  j, i = np.mgrid[0:rows, 0:columns]
  points = (np.asarray(position) + i[..., None] * pixel_mm * row
            + j[..., None] * pixel_mm * column)
  hu = phantom_hu(points)
  stored = np.round((hu - vendor.intercept) / vendor.slope)
  if field_radius_mm is not None:
    centre = np.asarray(position) + ((columns - 1) * row + (rows - 1) * column) * pixel_mm / 2
    outside = np.linalg.norm(points - centre, axis=-1) > field_radius_mm
    stored[outside] = vendor.padding if vendor.padding is not None else 0
  dtype = np.int16 if vendor.signed else np.uint16
  ds = _base(study, series, f"{study}.{series}.{instance}", dicom_uid.CTImageStorage)
  ds.ImageType = list(image_type)
  ds.SeriesDescription = description
  ds.SeriesNumber = series_number
  ds.InstanceNumber = instance
  ds.ImagePositionPatient = [round(float(v), 4) for v in position]
  ds.ImageOrientationPatient = [round(float(v), 6) for v in orientation]
  ds.PixelSpacing = [pixel_mm, pixel_mm]
  ds.SliceThickness = thickness
  ds.GantryDetectorTilt = tilt_deg
  ds.Manufacturer = vendor.manufacturer
  ds.ManufacturerModelName = vendor.model
  ds.ConvolutionKernel = vendor.kernel
  ds.PatientAge = patient_age
  ds.PatientSex = sex
  if rescale:
    ds.RescaleIntercept = vendor.intercept
    ds.RescaleSlope = vendor.slope
    ds.RescaleType = "HU"
  if vendor.padding is not None and field_radius_mm is not None:
    ds.PixelPaddingValue = vendor.padding
  _set_pixels(ds, stored.astype(dtype), vendor)
  return ds


def write_series(directory, heights, *, study="study-1", series="series-5mm",
                 names=None, instance_numbers=None, rows=32, columns=32, pixel_mm=6.0,
                 tilt_deg=0.0, compress=None, **kwargs) -> list[str]:
  """Writes one slice per height; returns the paths. `names` / `instance_numbers` permute."""
  directory.mkdir(parents=True, exist_ok=True)
  planes = series_slices(heights, rows=rows, columns=columns, pixel_mm=pixel_mm,
                         tilt_deg=tilt_deg)
  paths = []
  for index, (position, orientation) in enumerate(planes):
    ds = slice_dataset(position=position, orientation=orientation, study=study,
                       series=series, rows=rows, columns=columns, pixel_mm=pixel_mm,
                       tilt_deg=tilt_deg,
                       instance=(instance_numbers or range(1, len(heights) + 1))[index],
                       **kwargs)
    if compress is not None:
      ds.compress(compress)
    name = names[index] if names else f"{series}-{index:03d}.dcm"
    path = directory / name
    ds.save_as(path, enforce_file_format=True)
    paths.append(str(path))
  return paths


def write_scout(directory, *, study="study-1", series="series-scout", **kwargs):
  """A 2-image localizer series (coronal and sagittal, ImageType LOCALIZER)."""
  directory.mkdir(parents=True, exist_ok=True)
  paths = []
  for index, orientation in enumerate(([1, 0, 0, 0, 0, -1], [0, 1, 0, 0, 0, -1])):
    ds = slice_dataset(position=[-96.0, -96.0, 150.0], orientation=orientation, study=study,
                       series=series, instance=index + 1, description="SCOUT",
                       series_number=1, thickness=1.0,
                       image_type=("ORIGINAL", "PRIMARY", "LOCALIZER"), **kwargs)
    path = directory / f"scout-{index}.dcm"
    ds.save_as(path, enforce_file_format=True)
    paths.append(str(path))
  return paths


def enhanced_dataset(heights, *, study="study-enh", series="series-enh", vendor=GE,
                     rows=32, columns=32, pixel_mm=6.0) -> Dataset:
  """An Enhanced CT Image Storage object holding the same slices as write_series."""
  classic = [slice_dataset(position=p, orientation=o, study=study, series=series,
                           instance=i + 1, vendor=vendor, rows=rows, columns=columns,
                           pixel_mm=pixel_mm)
             for i, (p, o) in enumerate(series_slices(heights, rows=rows, columns=columns,
                                                      pixel_mm=pixel_mm))]
  ds = _base(study, series, f"{study}.{series}.mf", dicom_uid.EnhancedCTImageStorage)
  ds.ImageType = ["ORIGINAL", "PRIMARY", "AXIAL", "NONE"]
  ds.SeriesDescription, ds.SeriesNumber, ds.InstanceNumber = "5mm HEAD", 3, 1
  ds.Manufacturer, ds.ManufacturerModelName = vendor.manufacturer, vendor.model
  ds.PatientAge, ds.PatientSex = "063Y", "F"
  ds.NumberOfFrames = len(heights)
  shared = Dataset()
  shared.PlaneOrientationSequence = Sequence([_item(
      ImageOrientationPatient=classic[0].ImageOrientationPatient)])
  shared.PixelMeasuresSequence = Sequence([_item(PixelSpacing=[pixel_mm, pixel_mm],
                                                 SliceThickness=5.0)])
  shared.PixelValueTransformationSequence = Sequence([_item(
      RescaleIntercept=vendor.intercept, RescaleSlope=vendor.slope, RescaleType="HU")])
  shared.CTReconstructionSequence = Sequence([_item(ConvolutionKernel="STANDARD")])
  ds.SharedFunctionalGroupsSequence = Sequence([shared])
  ds.PerFrameFunctionalGroupsSequence = Sequence([
      _item(PlanePositionSequence=Sequence([_item(
          ImagePositionPatient=c.ImagePositionPatient)]),
            FrameContentSequence=Sequence([_item(InStackPositionNumber=i + 1)]))
      for i, c in enumerate(classic)])
  frames = np.stack([c.pixel_array for c in classic])
  _set_pixels(ds, frames, vendor)
  return ds


def _item(**elements) -> Dataset:
  item = Dataset()
  for keyword, value in elements.items():
    setattr(item, keyword, value)
  return item


def _base(study, series, instance_key, sop_class) -> Dataset:
  ds = Dataset()
  ds.file_meta = FileMetaDataset()
  ds.file_meta.MediaStorageSOPClassUID = sop_class
  ds.file_meta.MediaStorageSOPInstanceUID = uid(instance_key)
  ds.file_meta.TransferSyntaxUID = dicom_uid.ExplicitVRLittleEndian
  ds.SOPClassUID = sop_class
  ds.SOPInstanceUID = ds.file_meta.MediaStorageSOPInstanceUID
  ds.StudyInstanceUID = uid(study)
  ds.SeriesInstanceUID = uid(study, series)
  ds.FrameOfReferenceUID = uid(study, "frame")
  ds.Modality = "CT"
  ds.StudyID = "1"
  for keyword, value in FAKE_PHI.items():
    setattr(ds, keyword, value)
  ds.SeriesDate = ds.ContentDate = FAKE_PHI["StudyDate"]
  return ds


def _set_pixels(ds, stored, vendor):
  ds.Rows, ds.Columns = stored.shape[-2:]
  ds.SamplesPerPixel = 1
  ds.PhotometricInterpretation = "MONOCHROME2"
  ds.BitsAllocated = 16
  ds.BitsStored = vendor.bits_stored
  ds.HighBit = vendor.bits_stored - 1
  ds.PixelRepresentation = 1 if vendor.signed else 0
  ds.PixelData = stored.tobytes()


def sitk_reference(directory):
  """(HU [i, j, k], LPS affine) as SimpleITK/GDCM reads the one series in `directory`.

  GDCM orders the files by position and applies the rescale; the out-of-field
  convention differs (it keeps e.g. -3024), so callers clip at air as ingest does.
  """
  import SimpleITK as sitk  # pylint: disable=g-import-not-at-top
  reader = sitk.ImageSeriesReader()
  reader.SetFileNames(reader.GetGDCMSeriesFileNames(str(directory)))
  image = reader.Execute()
  affine = np.eye(4)
  direction = np.array(image.GetDirection()).reshape(3, 3)
  affine[:3, :3] = direction * np.array(image.GetSpacing())
  affine[:3, 3] = image.GetOrigin()
  return sitk.GetArrayFromImage(image).transpose(2, 1, 0).astype(np.float64), affine
