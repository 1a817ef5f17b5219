"""The planted harms: the synthesizer's (synth.planted_*) and the in-study one
(experiments/planted.py) are the scanner model's own water-offset term."""
import ml_collections
import numpy as np
import pytest

from scanbias_jax.experiments import planted
from scanbias_jax.synth import scanner, vendors


def test_calibration_shift_is_the_scanners_water_offset_term():
  hu = np.array([-1024, -1000, -500, -100, 0, 35, 80, 700, 1500], np.int16)
  physics = vendors.NEUTRAL._replace(cupping_hu=0.0, bone_scale=1.0)
  shifted = scanner.calibrate(hu.astype(np.float32), np.zeros((hu.size, 2)),
                              physics._replace(water_offset_hu=10.0))
  base = scanner.calibrate(hu.astype(np.float32), np.zeros((hu.size, 2)), physics)
  np.testing.assert_array_equal(planted.calibration_shift(hu, 10.0),
                                np.round(hu + np.asarray(shifted) - np.asarray(base)))
  out = planted.calibration_shift(hu, 10.0)
  assert out.dtype == np.int16 and out[0] == -1024 and out[5] == 45   # air stays, brain +10


def _synth(**fields):
  synth = ml_collections.ConfigDict(dict(vendors=("GE", "Siemens"), signature_strength=1.0,
                                         profile_overrides=ml_collections.ConfigDict(),
                                         planted_vendor="", planted_tissue_hu=0.0))
  synth.update(fields)
  return synth


@pytest.mark.parametrize("strength", [0.0, 1.0])
def test_planted_vendor_reads_the_stated_hu_higher_at_any_strength(strength):
  plain = _synth(signature_strength=strength)
  shifted = _synth(signature_strength=strength, planted_vendor="Siemens",
                   planted_tissue_hu=10.0)
  for name in ("GE", "Siemens"):
    before = vendors.configured(plain, name).physics
    after = vendors.configured(shifted, name).physics
    moved = 10.0 if name == "Siemens" else 0.0
    assert after == before._replace(water_offset_hu=before.water_offset_hu + moved)
  with pytest.raises(ValueError, match="planted_vendor 'Canon'"):
    vendors.configured(_synth(planted_vendor="Canon", planted_tissue_hu=5.0), "GE")


def test_planted_hu_is_off_for_one_group():
  config = ml_collections.ConfigDict(dict(experiments=dict(planted_harm_hu=10.0)))
  assert planted.planted_hu(config, ["GE", "Siemens"]) == 10.0
  assert planted.planted_hu(config, ["GE"]) == 0.0
