"""Smoke study for the tests: the whole pipeline in seconds.

  python -m launch.study --config=configs/smoke.py --workdir=/tmp/smoke
"""
from configs import default


def get_config():
  config = default.get_config()
  # 12 studies: 3 per group x label stratum, split 1/1/1 so every split of every
  # training condition has both labels.
  config.synth.num_studies = 12
  config.synth.matrix = 64
  config.synth.thin_mm_choices = (2.5,)
  config.synth.thin_only_fraction = 0.25
  config.synth.thin_series_fraction = 1.0  # every export path in 12 studies
  config.synth.tilt_fraction = 0.25
  # One process per stage: a spawned worker spends seconds importing JAX and
  # compiling the renderer again, more than 12 small studies take.
  config.synth.workers = 1
  config.ingest.workers = 1
  config.prepare.workers = 1
  config.ingest.paper_grid.in_plane = 64  # the smoke DICOM is 64 x 64: no upsampling
  config.prepare.match = False  # 12 studies: exact matching would leave too few
  config.cohort.split_fractions = (1 / 3, 1 / 3, 1 / 3)
  config.train.num_members = 2
  config.train.num_epochs = 2
  config.train.batch_size = 2
  config.train.eval_batch_size = 4
  config.models.name_manufacturer.model_kwargs = dict(widths=(4, 8, 8), head="mean")
  config.models.spheres.model_kwargs = dict(widths=(4, 8, 8), stem_width=4, hidden=16)
  config.models.segmentation.model_kwargs = dict(widths=(2, 4, 8))
  config.models.segmentation.num_members = 2
  config.models.segmentation.num_epochs = 2
  config.models.segmentation.batch_size = 2
  config.models.spheres.num_epochs = 2
  config.models.name_manufacturer.num_epochs = 2
  config.experiments.select_k = 1
  config.experiments.crop_size = 16
  config.experiments.train_crops_per_study = 4
  config.experiments.eval_crops_per_study = 2
  config.experiments.bootstrap_resamples = 100
  config.experiments.spheres_shape = (32, 32, 16)
  config.experiments.spheres_eval_copies = 2
  config.experiments.segmentation_shape = (32, 32, 16)
  return config
