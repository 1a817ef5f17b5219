"""The paper's sizes, for a GPU: 782 studies, 512 x 512 DICOM, 50/50 GE/Siemens.

  python -m launch.study --config=configs/paper.py --workdir=runs/paper
"""
from configs import default


def get_config():
  config = default.get_config()
  config.synth.num_studies = 782
  config.synth.matrix = 512
  config.ingest.workers = 8  # GPU hosts have 16 cores
  return config
