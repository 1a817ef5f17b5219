"""The bias audit's synthetic default (`make audit`): an export with something to find.

  python -m launch.audit --config=configs/audit.py --workdir=runs/audit

Four vendors (GE, Siemens, Philips, Canon), two scanner models and two head kernels
each, three sites of which one scans heads at a lower dose and 100 kVp (a site
protocol the images carry), and one planted null: the station name, drawn at random
for every study, with no image signal. The audit must find vendor, kernel and site
and report the station as not nameable (tests/test_audit_run.py). The CNN names the
vendor (the paper's question, four vendors here) and the probe's strongest attribute.
"""
from configs import default


def get_config():
  config = default.get_config()
  synth = config.synth
  synth.design = "paper"                 # an export: a different patient in every study
  synth.vendors = ("GE", "Siemens", "Philips", "Canon")
  synth.vendor_mix = (0.25, 0.25, 0.25, 0.25)
  synth.second_kernel_fraction = 0.5
  synth.site_protocols = ((1.0, 120), (1.0, 120), (0.6, 100))
  synth.profile_overrides = {
      "GE": {"models": ("Discovery CT750 HD", "Revolution CT")},
      "Siemens": {"models": ("SOMATOM Definition AS+", "SOMATOM Force")},
      "Philips": {"models": ("Brilliance 64", "Ingenuity CT")},
      "Canon": {"models": ("Aquilion ONE", "Aquilion PRIME")}}
  config.cohort.split_fractions = (0.7, 0.09, 0.21)
  config.audit.cnn_attributes = ("vendor",)  # the paper's question, by CNN, beside the strongest
  return config
