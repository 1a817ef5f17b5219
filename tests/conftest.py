"""Shared fixtures: a small synthetic DICOM cohort written once per test worker."""
from pathlib import Path

import pytest

from configs import smoke
from scanbias_jax import keys
from scanbias_jax.synth import export


def smoke_synth(num_studies: int = 4, **overrides):
  """The smoke config's synth section, with overrides."""
  synth = smoke.get_config().synth
  synth.num_studies = num_studies
  synth.workers = 1
  for name, value in overrides.items():
    synth[name] = value
  return synth


def synth_key(seed: int = 0):
  return keys.stream(keys.root(seed), "synth")


@pytest.fixture(scope="package")
def smoke_cohort(tmp_path_factory) -> tuple[Path, list[dict]]:
  """Four smoke studies (GE/Siemens alternating; tilt and thin-only forced on two)."""
  out = tmp_path_factory.mktemp("cohort")
  synth = smoke_synth(4, tilt_fraction=0.5, thin_only_fraction=0.25)
  return out, export.write_cohort(synth_key(), synth, out)
