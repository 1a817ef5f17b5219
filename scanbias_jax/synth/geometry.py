"""Where an axial series' pixels lie in patient space (DICOM LPS, mm).

A pixel (row r, column c) of slice k sits at
  position[k] + c * pixel_mm * row_dir + r * pixel_mm * col_dir,
exactly as DICOM's ImagePositionPatient / ImageOrientationPatient say. Gantry
tilt is written the way GE and Toshiba write it: the image plane is rotated about
the patient's left-right axis while the table, and with it ImagePositionPatient,
steps along z; the table step is thickness / cos(tilt) so slices are contiguous
along their own normal.
"""
import dataclasses
import math

import numpy as np


@dataclasses.dataclass(frozen=True)
class SeriesGeometry:
  matrix: int              # rows = columns
  pixel_mm: float          # in-plane spacing, both directions
  thickness_mm: float      # nominal slice thickness (also the spacing along the normal)
  tilt_deg: float          # gantry tilt; 0 for a plain axial series
  positions: np.ndarray    # [slices, 3] ImagePositionPatient (centre of pixel 0,0)
  row_dir: np.ndarray      # [3] direction of increasing column index
  col_dir: np.ndarray      # [3] direction of increasing row index

  @property
  def normal(self) -> np.ndarray:
    return np.cross(self.row_dir, self.col_dir)

  @property
  def num_slices(self) -> int:
    return len(self.positions)

  @property
  def table_step_mm(self) -> float:
    return self.thickness_mm / math.cos(math.radians(self.tilt_deg))

  def orientation(self) -> list[float]:
    """ImageOrientationPatient."""
    return [float(v) for v in (*self.row_dir, *self.col_dir)]


def axial_series(fov_mm: float, matrix: int, thickness_mm: float,
                 z_lo: float, z_hi: float, tilt_deg: float = 0.0) -> SeriesGeometry:
  """Contiguous slices centred on the isocentre covering table z in [z_lo, z_hi]."""
  if thickness_mm <= 0 or matrix <= 0 or fov_mm <= 0:
    raise ValueError(f"impossible series: thickness {thickness_mm} mm, matrix "
                     f"{matrix}, field of view {fov_mm} mm")
  if z_hi <= z_lo:
    raise ValueError(f"empty scan range [{z_lo}, {z_hi}] mm")
  tilt = math.radians(tilt_deg)
  pixel = fov_mm / matrix
  row_dir = np.array([1.0, 0.0, 0.0])
  # Positive tilt turns the top of the image plane towards the feet (the usual
  # orbitomeatal tilt); the column direction keeps a positive y component.
  col_dir = np.array([0.0, math.cos(tilt), -math.sin(tilt)])
  step = thickness_mm / math.cos(tilt)
  count = int(math.ceil((z_hi - z_lo) / step)) + 1
  z = z_lo + step * np.arange(count)
  half = (matrix - 1) / 2 * pixel
  corner = -half * row_dir - half * col_dir  # image centre on the table axis
  positions = np.stack([corner + np.array([0.0, 0.0, zk]) for zk in z])
  return SeriesGeometry(matrix=matrix, pixel_mm=pixel, thickness_mm=thickness_mm,
                        tilt_deg=tilt_deg, positions=positions,
                        row_dir=row_dir, col_dir=col_dir)


def pixel_points(geometry: SeriesGeometry) -> np.ndarray:
  """[slices, rows, cols, 3] patient coordinates of every pixel centre (float32)."""
  idx = np.arange(geometry.matrix) * geometry.pixel_mm
  plane = (idx[None, :, None] * geometry.row_dir
           + idx[:, None, None] * geometry.col_dir)        # [rows, cols, 3]
  return (geometry.positions[:, None, None, :] + plane[None]).astype(np.float32)


def affine_lps(geometry: SeriesGeometry) -> np.ndarray:
  """4x4 map from (col, row, slice) voxel indices to LPS mm (sheared if tilted)."""
  step = geometry.positions[1] - geometry.positions[0] if geometry.num_slices > 1 \
      else geometry.normal * geometry.thickness_mm
  affine = np.eye(4)
  affine[:3, 0] = geometry.row_dir * geometry.pixel_mm
  affine[:3, 1] = geometry.col_dir * geometry.pixel_mm
  affine[:3, 2] = step
  affine[:3, 3] = geometry.positions[0]
  return affine
