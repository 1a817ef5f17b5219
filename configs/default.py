"""Default study on a 2-core CPU (minutes): the paper's design at a reduced size.

  python -m launch.study --config=configs/default.py --workdir=runs/default
  python -m launch.synthesize --config=configs/default.py --out=runs/default/dicom
"""
import ml_collections


def get_config() -> ml_collections.ConfigDict:
  config = ml_collections.ConfigDict()
  config.seed = 0

  # Synthetic cohort (scanbias_jax/synth): what `launch/synthesize.py` writes.
  synth = config.synth = ml_collections.ConfigDict()
  synth.num_studies = 120
  synth.vendors = ("GE", "Siemens")  # names of profiles in synth/scanner.py
  synth.vendor_mix = (0.5, 0.5)      # share of studies per vendor, same order
  synth.signature_strength = 1.0     # 0 = identical scanner physics for all vendors
  synth.matrix = 128                 # in-plane pixels of the written images (paper: 512)
  synth.fov_mm = 250.0               # reconstruction (display) field of view
  synth.slice_mm = 5.0               # thickness of the routine axial series
  synth.thin_mm_choices = (1.25, 2.5)  # thickness of the thin axial series
  synth.thin_only_fraction = 0.1     # studies exported with no 5 mm series
  synth.tilt_fraction = 0.1          # studies acquired with gantry tilt
  synth.max_tilt_deg = 20.0
  synth.write_scout = True
  synth.age_mean = 58.0              # same age/sex law for every vendor (paper: matched)
  synth.age_sd = 18.0
  synth.age_min = 18
  synth.age_max = 95
  synth.female_fraction = 0.5
  # Per-vendor overrides of scanner profile fields, e.g. {"GE": {"noise_hu": 4.0}}.
  synth.profile_overrides = ml_collections.ConfigDict()
  return config
