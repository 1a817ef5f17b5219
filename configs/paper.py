"""The paper's sizes, for a GPU: 782 studies, 512 x 512 DICOM, 50/50 GE/Siemens.

  python -m launch.study --config=configs/paper.py --workdir=runs/paper
"""
import ml_collections

from configs import default


def get_config():
  config = default.get_config()
  config.synth.num_studies = 782
  config.synth.design = "paper"                 # a patient per study
  config.cohort.split_fractions = (0.70, 0.09, 0.21)  # the paper's
  config.synth.matrix = 512
  config.synth.thin_series_fraction = 1.0  # every study with its thin series
  config.synth.plane_mm = 0.625      # SSP of 1.25 mm slices sampled at half their width
  config.ingest.workers = 8  # GPU hosts have 16 cores
  config.train.num_members = 10
  config.train.num_epochs = 30
  config.train.batch_size = 32
  config.train.checkpoint_every_epochs = 1
  config.train.bn_stats = "ema"      # 500+ training studies: the running averages keep up
  config.experiments.spheres_train_copies = 0  # the paper's sphere training set
  config.experiments.spheres_test = "paper"      # and its test set
  config.experiments.spheres_input = "head"      # and its input: the whole head
  # The paper's learning rates (section 3.3); default.py's are for its small nets.
  config.models.name_manufacturer.learning_rate = 5e-3
  config.models.spheres.learning_rate = 5e-5
  config.models.segmentation.learning_rate = 1e-4
  config.ingest.paper_grid.in_plane = 256
  config.ingest.paper_grid.slice_resampling = "linear"  # "thinner series linearly interpolated"
  config.experiments.select_k = 6
  config.experiments.manufacturer_input = "slices"  # whole 256 x 256 slices
  config.experiments.spheres_shape = (256, 256, 35)
  config.experiments.spheres_crop_mm = ()  # the whole volume
  config.experiments.segmentation_shape = (256, 256, 32)
  config.models.name_manufacturer.model_kwargs = ml_collections.ConfigDict()  # paper's
  config.models.name_manufacturer.num_epochs = 30
  config.models.spheres.model_kwargs = ml_collections.ConfigDict()       # paper widths
  config.models.spheres.num_epochs = 30
  config.models.segmentation.model_kwargs = ml_collections.ConfigDict()
  config.models.spheres.num_members = 10
  config.models.segmentation.num_members = 10
  config.models.segmentation.num_epochs = 30
  config.models.segmentation.batch_size = 32  # the paper's (default.py: 4)
  config.experiments.spheres_flip = False     # the paper: no augmentation
  # One condition at a time: a paper-size ensemble fills the accelerator on its own,
  # and two would hold two sets of 256 x 256 x 35 activations.
  config.experiments.concurrent_conditions = 1
  return config
