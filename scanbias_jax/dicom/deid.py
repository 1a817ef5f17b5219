"""Pseudonymisation: keyed hashes of identifiers, and the PHI-free facts we keep.

A pseudonym is HMAC-SHA256(secret, kind + value): stable for one secret, not
reversible or linkable without it. Only pseudonyms, ages, sexes and equipment
facts leave this package; names, IDs, dates, UIDs and institutions never do.
"""
import datetime
import hashlib
import hmac
import re

_AGE_UNITS_IN_YEARS = {"Y": 1.0, "M": 1.0 / 12.0, "W": 7.0 / 365.25, "D": 1.0 / 365.25}


def pseudonym(secret: bytes, kind: str, value: str, length: int = 16) -> str:
  """`kind-<hex>`: a keyed hash of `value`; `kind` separates namespaces (study, patient)."""
  if not secret:
    raise ValueError("an empty secret would make pseudonyms reversible by guessing")
  digest = hmac.new(secret, f"{kind}\x00{value}".encode(), hashlib.sha256).hexdigest()
  return f"{kind}-{digest[:length]}"


def age_in_years(patient_age: str | None, birth_date: str | None,
                 study_date: str | None) -> float | None:
  """Age from PatientAge ("063Y", "006M", "010W", "003D"), else from the two dates."""
  match = re.fullmatch(r"\s*(\d{1,3})\s*([YMWD]?)\s*", str(patient_age or ""))
  if match:
    unit = match.group(2) or "Y"
    return round(int(match.group(1)) * _AGE_UNITS_IN_YEARS[unit], 2)
  birth, study = _parse_date(birth_date), _parse_date(study_date)
  if birth is None or study is None or study < birth:
    return None
  years = study.year - birth.year - ((study.month, study.day) < (birth.month, birth.day))
  return float(years)


def normalise_sex(patient_sex: str | None) -> str:
  """M, F or O; anything else (blank, unknown) is "" (missing)."""
  value = str(patient_sex or "").strip().upper()[:1]
  return value if value in ("M", "F", "O") else ""


_VENDOR_PATTERNS = (
    ("GE", r"\bGE\b|GENERAL ELECTRIC"),
    ("Siemens", r"SIEMENS"),
    ("Philips", r"PHILIPS"),
    ("Canon", r"CANON|TOSHIBA"),
    ("Hitachi", r"HITACHI|FUJIFILM"),
    ("United Imaging", r"UNITED IMAGING|\bUIH\b"),
    ("Neusoft", r"NEUSOFT"),
)


def normalise_vendor(manufacturer: str | None) -> str:
  """A short vendor name ("GE MEDICAL SYSTEMS" -> "GE"); unknown makers pass through."""
  raw = str(manufacturer or "").strip()
  for name, pattern in _VENDOR_PATTERNS:
    if re.search(pattern, raw.upper()):
      return name
  return raw or "unknown"


def _parse_date(value: str | None) -> datetime.date | None:
  try:
    return datetime.datetime.strptime(str(value or "").strip()[:8], "%Y%m%d").date()
  except ValueError:
    return None
