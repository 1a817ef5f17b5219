"""Smoke study for the tests: the whole pipeline in seconds.

  python -m launch.study --config=configs/smoke.py --workdir=/tmp/smoke
"""
from configs import default


def get_config():
  config = default.get_config()
  config.synth.num_studies = 8
  config.synth.matrix = 64
  config.synth.thin_mm_choices = (2.5,)
  config.synth.thin_only_fraction = 0.25
  config.synth.tilt_fraction = 0.25
  config.ingest.paper_grid.in_plane = 64  # the smoke DICOM is 64 x 64: no upsampling
  config.prepare.match = False  # 8 studies: exact matching would leave too few
  return config
