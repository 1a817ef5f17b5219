"""Dose-response sweep: harm and nameability against signature strength and vendor mix.

  python -m launch.sweep --config=configs/sweep.py --workdir=runs/sweep
  python -m launch.sweep --config=configs/sweep.py:smoke --workdir=/tmp/sweep
  python -m launch.sweep --config=configs/sweep.py:paper --workdir=runs/sweep_paper  # a GPU

Any config field can be an axis: `sweep.axes` mirrors the config's structure, e.g.
  --config.sweep.axes.synth.signature_strength="(0.0, 1.0, 4.0)"
  --config.sweep.axes.sweep.majority="('GE', 'Siemens')"
A point's training set holds one acquisition of each training head (traveling heads),
`sweep.majority_share` of them on `sweep.majority`, the rest on the other vendor of
`sweep.vendors`: the size is fixed, only the composition moves (sweep/mix.py).
"""
import ml_collections

from configs import default, paper, smoke


def get_config(arg: str = "default") -> ml_collections.ConfigDict:
  bases = dict(default=default, smoke=smoke, paper=paper)
  if arg not in bases:
    raise ValueError(f"configs/sweep.py:<variant>: one of {sorted(bases)}, got {arg!r}")
  config = bases[arg].get_config()
  # Only the routine 5 mm series: the export paths (thin series, gantry tilt) are the
  # study's to test; here they would triple the rendering of every strength
  # (BUILD_NOTES, "Sweeps").
  config.synth.thin_series_fraction = 0.0
  config.synth.thin_only_fraction = 0.0
  config.synth.tilt_fraction = 0.0
  config.experiments.tasks = ("name_manufacturer", "spheres", "segmentation")
  if arg == "default":
    # Power: 84 traveling heads, 38 train / 4 validation / 42 test. The study's 70 heads
    # (28 test) left sphere MDDs of 8-12 points at strength >= 1; an MDD falls as
    # 1 / sqrt(test heads) (BUILD_NOTES, "Sweeps"). Training stays at 38 heads.
    config.synth.num_studies = 168
    config.cohort.split_fractions = (0.45, 0.05, 0.50)

  sweep = config.sweep = ml_collections.ConfigDict()
  sweep.title = "Vendor dose-response sweep"
  sweep.vendors = tuple(config.synth.vendors)
  sweep.majority = config.synth.vendors[0]
  sweep.majority_share = 0.5         # a point's value; an axis below
  # "name_manufacturer" (once per data key), "spheres/<difficulty>", "segmentation".
  sweep.tasks = ("name_manufacturer", "spheres/medium", "segmentation")
  axes = sweep.axes = ml_collections.ConfigDict()
  # Strength 4 puts GE and Siemens ~10 HU apart in grey-matter calibration, the top of
  # what real scanners differ by (Oh et al. 2019); 0 is the negative control.
  axes.synth = ml_collections.ConfigDict(dict(signature_strength=(0.0, 1.0, 2.0, 4.0)))
  axes.sweep = ml_collections.ConfigDict(dict(majority_share=(0.5, 0.75, 0.9, 1.0)))

  if arg == "smoke":
    axes.synth.signature_strength = (0.0, 1.0)
    axes.sweep.majority_share = (0.5, 1.0)
    config.synth.num_studies = 24
  if arg == "paper":
    # The sweep compares vendors on the same heads, with the paired sphere sets.
    config.synth.design = "traveling"
    config.experiments.spheres_train_copies = 2
    config.experiments.spheres_test = "paired"
    config.experiments.spheres_input = "brain"
    sweep.tasks = ("name_manufacturer", "spheres/easy", "spheres/medium", "spheres/hard",
                   "segmentation")
    axes.sweep.majority_share = (0.5, 0.6, 0.75, 0.9, 0.95, 1.0)
  return config
