"""The paper's sizes, for a GPU: 782 studies, 512 x 512 DICOM, 50/50 GE/Siemens.

  python -m launch.study --config=configs/paper.py --workdir=runs/paper
"""
from configs import default


def get_config():
  config = default.get_config()
  config.synth.num_studies = 782
  config.synth.matrix = 512
  config.synth.plane_mm = 0.625      # SSP of 1.25 mm slices sampled at half their width
  config.ingest.workers = 8  # GPU hosts have 16 cores
  config.train.num_members = 10
  return config
