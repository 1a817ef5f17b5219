"""The manifest (one row per study) and the rejects list: columns, rows, CSV text.

Both hold pseudonyms, equipment facts, age and sex only: no names, IDs, dates,
UIDs, institutions, series descriptions or file paths (unless asked for).
"""
import csv
import io

from scanbias_jax.dicom import deid, scan

MANIFEST_COLUMNS = (
    "study_id",            # keyed hash of StudyInstanceUID
    "patient_id",          # keyed hash of PatientID (keeps one patient's studies together)
    "status",              # ok | rejected | error
    "reason",              # why rejected, empty when ok
    "vendor",              # normalised: GE, Siemens, Philips, Canon, ...
    "manufacturer",        # the raw Manufacturer string
    "model",               # ManufacturerModelName
    "kernel",              # ConvolutionKernel (multiple values joined with \)
    "age_years",
    "sex",                 # M | F | O | empty
    "n_series",            # series in the study
    "series_number",       # SeriesNumber of the chosen series
    "selection",           # why this series was chosen
    "source_thickness_mm", # SliceThickness of the chosen series
    "source_spacing_mm",   # slice step after assembly (along the slice axis)
    "source_slices",
    "source_matrix",       # rows x columns
    "source_pixel_mm",     # in-plane spacing (column x row)
    "tilt_deg",            # gantry tilt found from the geometry
    "resampled",           # what was done to the voxels, "; "-separated
    "grid",                # paper | native
    "shape",               # i x j x k of the written volume
    "spacing_mm",          # i x j x k voxel size of the written volume
    "path",                # the NIfTI, relative to the output directory
    # Acquisition attributes (the bias audit's questions), from the chosen series:
    "kvp",                 # KVP
    "institution",         # keyed hash of InstitutionName ("institution-<hex>")
    "station",             # keyed hash of StationName
    "recon_diameter_mm",   # ReconstructionDiameter
    "study_year",          # year of StudyDate (a year alone identifies no one)
)
REJECT_COLUMNS = ("level", "study_id", "series_number", "series_id", "file_id", "reason")


def study_row(study_id, patient_id, refs, choice_reason, n_series, vol, source_vol,
              grid, path) -> dict:
  """The manifest row of a study whose chosen series (`refs`) became `vol`."""
  first = refs[0]
  thicknesses = sorted(ref.thickness for ref in refs if ref.thickness)
  return {
      "study_id": study_id, "patient_id": patient_id, "status": "ok", "reason": "",
      "vendor": deid.normalise_vendor(first.manufacturer),
      "manufacturer": first.manufacturer, "model": first.model, "kernel": first.kernel,
      "age_years": "" if first.age_years is None else f"{first.age_years:g}",
      "sex": first.sex, "n_series": n_series,
      "series_number": "" if first.series_number is None else first.series_number,
      "selection": choice_reason,
      "source_thickness_mm": f"{thicknesses[len(thicknesses) // 2]:g}" if thicknesses else "",
      "source_spacing_mm": f"{source_vol.spacing[2]:.4g}",
      "source_slices": source_vol.hu.shape[2],
      "source_matrix": f"{first.rows}x{first.columns}",
      "source_pixel_mm": "x".join(f"{s:.4g}" for s in source_vol.spacing[:2]),
      "tilt_deg": f"{source_vol.tilt_deg:.2f}",
      "resampled": "; ".join(vol.notes),
      "grid": grid,
      "shape": "x".join(str(n) for n in vol.hu.shape),
      "spacing_mm": "x".join(f"{s:.4g}" for s in vol.spacing),
      "path": path,
  }


def acquisition(ref, secret: bytes) -> dict:
  """The acquisition columns of a series' first image; site names as keyed hashes."""
  def hashed(kind, value):
    return deid.pseudonym(secret, kind, value, length=8) if value else ""

  return {"kvp": "" if ref.kvp is None else f"{ref.kvp:g}",
          "institution": hashed("institution", ref.institution),
          "station": hashed("station", ref.station),
          "recon_diameter_mm": "" if ref.recon_diameter_mm is None else f"{ref.recon_diameter_mm:g}",
          "study_year": ref.study_year}


def rejected_row(study_id, patient_id, refs, n_series, reason, status="rejected") -> dict:
  row = dict.fromkeys(MANIFEST_COLUMNS, "")
  first = refs[0] if refs else None
  row.update(study_id=study_id, patient_id=patient_id, status=status, reason=reason,
             n_series=n_series)
  if first is not None:
    row.update(vendor=deid.normalise_vendor(first.manufacturer),
               manufacturer=first.manufacturer, model=first.model, kernel=first.kernel,
               age_years="" if first.age_years is None else f"{first.age_years:g}",
               sex=first.sex)
  return row


def reject_row(level, reason, study_id="", series_number="", series_id="",
               file_id="") -> dict:
  return {"level": level, "study_id": study_id, "series_number": series_number,
          "series_id": series_id, "file_id": file_id, "reason": reason}


def series_number_of(refs: list[scan.SliceRef]):
  number = refs[0].series_number if refs else None
  return "" if number is None else number


def to_csv(rows, columns) -> str:
  buffer = io.StringIO()
  writer = csv.DictWriter(buffer, fieldnames=list(columns), extrasaction="ignore",
                          lineterminator="\n")
  writer.writeheader()
  writer.writerows(rows)
  return buffer.getvalue()


def from_csv(text: str) -> list[dict]:
  return list(csv.DictReader(io.StringIO(text)))
