"""The in-study positive control: a planted harm of known physical size.

Every model trained on one group is also scored on the other groups' test studies with
their soft-tissue calibration shifted by `experiments.planted_harm_hu` HU, the water
offset term of the scanner model (synth/scanner.calibrate: + offset x the attenuation
fraction, 0 in air, 1 from water up), applied to the reconstructed volume before the
spheres are painted at their absolute HU (the paper's method): what the study sees when
the other group's scanner reads the tissue that much higher, the sphere's contrast with
the brain included (a lesion acquired through the scanner, synth.lesions_in_anatomy,
would shift with the tissue). The comparison is the cross-group one, computed the same
way (evaluate/harm.py): the harm this design detects when it is known to be there.
Scanners differ by 1-10 HU in grey matter (Oh et al., Am J Emerg Med 2019;37:680); a
study-level control that acquires the shift in the synthesizer is
`synth.planted_vendor` / `synth.planted_tissue_hu`.
"""
import numpy as np


def calibration_shift(volumes, tissue_hu: float) -> np.ndarray:
  """int16 HU volumes with `tissue_hu` added in proportion to the attenuation fraction
  (scanner.calibrate's water-offset term): air unchanged, water and denser + tissue_hu."""
  hu = np.asarray(volumes, np.float32)
  matter = np.clip((hu + 1000.0) / 1000.0, 0.0, 1.0)
  return np.round(hu + np.float32(tissue_hu) * matter).astype(np.int16)


def planted_hu(config, group_values) -> float:
  """The shift of this run's in-study control, 0 where it is off or one group alone."""
  shift = float(config.experiments.planted_harm_hu)
  return shift if len(group_values) > 1 else 0.0
