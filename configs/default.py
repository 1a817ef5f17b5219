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
  synth.num_studies = 140
  synth.vendors = ("GE", "Siemens")  # names of profiles in synth/vendors.py
  synth.vendor_mix = (0.5, 0.5)      # share of studies per vendor, same order
  synth.signature_strength = 1.0     # 0 = identical scanner physics for all vendors
  synth.matrix = 256                 # in-plane pixels of the written images (paper: 512);
                                     # ~1 mm keeps the kernels' NPS below Nyquist
  synth.anatomy = "atlas"            # "atlas" (MNI152 brain, synth/atlas.py) or "procedural"
  synth.anatomy_mm = 1.0             # anatomy sampled on every k-th pixel, k x pixel <= this
  # "traveling" (each anatomy acquired on every vendor: vendors compared on the same
  # heads, matched by construction, so ingest's age/sex matching keeps every study) or
  # "paper" (a patient per study; matching kept 90 of 120). BUILD_NOTES, "Synthesizer".
  synth.design = "traveling"
  synth.lesions_in_anatomy = 0.0     # share of heads with a sphere placed before acquisition
  # Scanner effects, each a multiplier of the vendors' own values (0 = off, 1 = as profiled).
  synth.effects = ml_collections.ConfigDict(dict(
      nonstationary_noise=1.0,       # noise rising with the attenuation along the rays
      beam_hardening=1.0,            # dark bands between dense bones (skull base)
      recon_circle=True))            # False: the whole image inside the reconstruction field
  synth.fov_mm = 250.0               # reconstruction (display) field of view
  synth.slice_mm = 5.0               # thickness of the routine axial series
  synth.thin_mm_choices = (1.25, 2.5)  # thickness of the thin axial series
  synth.thin_only_fraction = 0.1     # studies exported with no 5 mm series
  synth.thin_series_fraction = 0.3   # of the others, exported with a thin series as well
                                     # (1.0: all; a thin series is ~3/4 of a study's render)
  synth.tilt_fraction = 0.1          # studies acquired with gantry tilt
  synth.max_tilt_deg = 20.0
  synth.write_scout = True
  synth.ssp_samples = 5              # sub-planes per slice integrating the SSP (tilted series)
  synth.plane_mm = 1.25              # finest spacing of the shared plane stack (untilted)
  synth.workers = 1                  # processes rendering studies in parallel; 1 renders
                                     # (XLA, both cores) while a thread writes the last
                                     # study: 0.88 s a study here against 1.05 with 2
  synth.age_mean = 58.0              # same age/sex law for every vendor (paper: matched)
  synth.age_sd = 18.0
  synth.age_min = 18
  synth.age_max = 95
  synth.female_fraction = 0.5
  # Acquisition variety an export has (configs/audit.py turns them on; 0 / () = none):
  synth.second_kernel_fraction = 0.0  # studies reconstructed with the vendor's second
                                      # head kernel (synth/vendors.py: SOFT, H31s, UC, FC21)
  synth.site_protocols = ()          # per institution of synth/cohort.INSTITUTIONS:
                                     # (dose factor, kVp) of its head protocol
  # Per-vendor overrides of scanner profile fields, e.g. {"GE": {"noise_hu": 4.0}}.
  synth.profile_overrides = ml_collections.ConfigDict()
  # Positive control: a planted harm of known physical size. This vendor's soft-tissue
  # calibration shifted by this many HU on top of its profile (not scaled by the
  # strength); scanners differ by 1-10 HU in grey matter (Oh et al., Am J Emerg Med
  # 2019;37:680). README gives the command and its measured drop.
  synth.planted_vendor = ""
  synth.planted_tissue_hu = 0.0
  # DICOM ingestion (scanbias_jax/dicom, preprocess/resample, launch/ingest.py).
  ingest = config.ingest = ml_collections.ConfigDict()
  ingest.grid = "paper"              # "paper" (below) or "native": the series as assembled
  ingest.workers = 2                 # processes; each study is one task
  ingest.secret = ""                 # pseudonym key; "" = generated once into <out>/.secret
  ingest.reveal_paths = False        # rejects name files by keyed hash (paths may hold PHI)
  selection = ingest.selection = ml_collections.ConfigDict()
  selection.preferred_mm = 5.0       # the paper's axial 5 mm series
  selection.thickness_tolerance_mm = 0.5
  selection.thin_max_mm = 3.0        # fallback: thinnest axial series up to this (paper 1.25-2.5)
  selection.min_slices = 10
  selection.preferred_description_regex = r"(?i)(^|[^\d.])5(\.0+)?\s*mm|\b5\.0\b"
  # Words, not parts of words: Philips names its routine series "... iDose 4" and Canon
  # "... AIDR 3D" (their iterative reconstructions); "dose" and "3d" alone mark dose
  # reports and 3D reformats.
  selection.exclude_description_regex = (
      r"(?i)scout|topo|locali[sz]er|surview|\bdose\b|report|bone|lung|mip|mpr|\bcor|\bsag"
      r"|(?<!aidr )\b3d\b|vrt|angio|cta\b|perfusion")
  volume = ingest.volume = ml_collections.ConfigDict()
  volume.gaps = "resample"           # missing slices / uneven spacing: "resample" or "reject"
  volume.spacing_tolerance_mm = 0.1
  volume.max_filled_slices = 2       # more missing slices than this: rejected anyway
  volume.tilt = "correct"            # gantry tilt: "correct" (resample) or "reject"
  volume.tilt_tolerance_deg = 0.5
  volume.missing_rescale = "reject"  # no RescaleSlope/Intercept: "reject" or "identity"
  volume.air_hu = -1024.0            # padding and out-of-field pixels become this
  grid = ingest.paper_grid = ml_collections.ConfigDict()
  grid.in_plane = 256                # the paper's; 128 (1.95 mm) aliases the kernels' NPS
  grid.n_slices = 35
  grid.slice_mm = 5.0
  grid.slice_tolerance_mm = 0.25     # a series this close to 5 mm keeps its own slices
  grid.slice_resampling = "average"  # thinner series -> 5 mm: slab mean (a thick reformat,
                                     # 5 mm noise) or "linear" (the paper's interpolation)
  grid.brain_hu = (0.0, 80.0)        # soft tissue counted when choosing the 35 slices

  # Cohort building from the manifest (scanbias_jax/cohort/balance.py).
  cohort = config.cohort = ml_collections.ConfigDict()
  cohort.size = 0                    # studies in the matched cohort; 0 = largest balanced
  cohort.group = "vendor"            # manifest column balanced over
  # Exact matching on sex x age bin (<= 0: sex only). The synthetic cohort is
  # matched in distribution by construction; wide bins keep most of it.
  cohort.age_bin_years = 10.0
  # Heads, not studies, are split (a head's acquisitions stay together). 70 heads: 38
  # train, 4 validation, 28 test (the stratified rounding), so each vendor's paired
  # sphere test holds 28 heads (20 left per-vendor intervals up to +-9 points; the
  # paper's 0.70 / 0.09 / 0.21 left 10 test studies a vendor; BUILD_NOTES, "Experiments").
  cohort.split_fractions = (0.52, 0.06, 0.42)
  cohort.one_study_per_patient = True
  # Experiment data sets (skull stripping, spheres, splits): launch/prepare.py.
  prepare = config.prepare = ml_collections.ConfigDict()
  prepare.match = True               # use the age/sex-matched cohort (cohort.csv / cohort.*)
  prepare.workers = 2                # processes; each study is one task
  prepare.overlays = 2               # overlay PNGs per group value
  prepare.stack_slices = 3           # Name the Manufacturer: random slices per sample
  prepare.original_window = (40.0, 400.0)  # (level, width) HU -> [-1, 1]
  prepare.spheres_window = (50.0, 100.0)   # (level, width) HU -> [0, 1]
  prepare.skull_slices = 32          # Skull set: 35 -> 32 slices along z
  strip = prepare.skullstrip = ml_collections.ConfigDict()
  strip.bone_hu = 180.0              # smoothed HU above this is bone (partial volume included)
  strip.smooth_mm = 1.0
  strip.tissue_hu = (-30.0, 130.0)   # intracranial content
  strip.close_mm = 8.0               # bridges skull gaps up to ~2x this
  strip.open_mm = 4.0                # cuts bridges to extracranial tissue
  strip.edge_mm = 4.0                # partial-volume rim at the inner table ...
  strip.edge_hu = 700.0              # ... re-admitted below this HU
  sph = prepare.spheres = ml_collections.ConfigDict()
  sph.positive_fraction = 0.5        # of each group's studies
  sph.large_radius_mm = (21.0, 26.0)
  sph.large_hu = (50.0, 2.0)         # (mean, std) of the voxel values
  sph.small_radius_mm = (13.0, 17.0)
  sph.small_hu = (40.0, 2.0)
  sph.small_fraction = ml_collections.ConfigDict(dict(easy=0.0, medium=0.20, hard=0.35))
  # Seed-ensemble training (scanbias_jax/train). An experiment trains with
  # train.member.task_config(config, "<task>"): this section plus config.models.<task>.
  train = config.train = ml_collections.ConfigDict()
  train.num_members = 3              # paper: 10 per condition
  train.members_per_device = 1       # vmap width per device; 0 = all members in one call.
                                     # Same bits on any device count while it is fixed;
                                     # on CPU a vmap of 10 ties with 1 and compiles 2-4x
                                     # longer (benchmarks/bench_member_axis.py).
  train.num_devices = 0              # 0 = every visible device
  train.batch_size = 16              # paper: 32; a single-group condition of the default
                                     # cohort has ~31 training studies
  train.eval_batch_size = 32
  train.num_epochs = 15
  # BatchNorm statistics for evaluation: "ema" (running averages, as trained) or
  # "precise" (recomputed after each epoch's steps over its batches with the final
  # weights, one forward pass more). With ~100 steps the running averages lag the
  # weights and eval-mode outputs lose their calibration (BUILD_NOTES.md).
  train.bn_stats = "precise"
  # ... from the epoch's first this many batches (0 = every batch): a forward pass over
  # every batch added a third to each step (each task of default.py uses 4: 64 crops,
  # 64 or 16 volumes; BUILD_NOTES, "Experiments").
  train.bn_stats_batches = 0
  train.compute_dtype = "float32"    # or "bfloat16" (parameters stay float32)
  train.checkpoint_every_epochs = 5   # an orbax save (~0.6 s) outlasts a default epoch
  train.keep_checkpoints = 2
  train.exact_reproducibility = True  # GPU: deterministic XLA flags (train/loop.py)
  train.parallel = "dispatch"        # or "shard_map" (one SPMD program; multi-host)
  train.scan_unroll = "never"        # pure-path loops: lax.scan ("always": unrolled)
  train.first_member = 0             # index of the first member (an ensemble grown later)
  models = config.models = ml_collections.ConfigDict()
  # On 48 x 48 brain crops: global-average head (texture anywhere in the crop counts
  # the same), half the paper's widths and 8 epochs; validation accuracy reaches
  # 0.94-1.0 by epoch 2 on the default cohort (BUILD_NOTES.md).
  models.name_manufacturer = ml_collections.ConfigDict(dict(
      model="shallow_cnn", model_kwargs=ml_collections.ConfigDict(dict(
          widths=(16, 32, 64), head="mean")), loss="sigmoid_cross_entropy",
      learning_rate=3e-4, select_metric="val_accuracy", num_epochs=8, bn_stats_batches=4))
  # Spheres at 3e-3 (was 1e-3): with 72-144 training studies a condition has 72-144 Adam
  # steps, and at 1e-3 one member in three had not started to learn by the last epoch
  # (validation only; BUILD_NOTES, "Experiments"). Two members a condition:
  # nine conditions of three kept the study over its 10 minutes (BUILD_NOTES, "Experiments").
  models.spheres = ml_collections.ConfigDict(dict(
      model="resnet3d", model_kwargs=ml_collections.ConfigDict(), loss="sigmoid_cross_entropy",
      learning_rate=3e-3, select_metric="val_accuracy", num_epochs=8, bn_stats_batches=4,
      num_members=2))
  models.segmentation = ml_collections.ConfigDict(dict(
      model="unet3d", model_kwargs=ml_collections.ConfigDict(), loss="soft_dice",
      learning_rate=3e-3, select_metric="val_dice", batch_size=4, num_epochs=10,
      bn_stats_batches=4))
  # The experiments (scanbias_jax/experiments) and their report.
  exp = config.experiments = ml_collections.ConfigDict()
  exp.title = "Scanner bias study"
  exp.tasks = ("name_manufacturer", "spheres", "segmentation")
  exp.difficulties = ("easy", "medium", "hard")
  exp.select_k = 3                   # best members by validation accuracy + AUROC (paper: 6 of 10)
  exp.bootstrap_resamples = 1000
  # In-study positive control (experiments/planted.py): single-group sphere models also
  # scored on the other groups' test studies with their tissue calibration shifted by
  # this many HU, the top of what scanners differ by (grey matter 1-10 HU, Oh et al.,
  # Am J Emerg Med 2019;37:680); 0 = off.
  exp.planted_harm_hu = 10.0
  # Name the Manufacturer's input: "crops" (brain squares at the ingest grid's own
  # resolution, experiments/brain_crops.py) or "slices" (the paper's whole slices).
  exp.manufacturer_input = "crops"
  exp.crop_size = 48                 # pixels (~47 mm at 256 over 250 mm)
  exp.train_crops_per_study = 16     # stacks per training study, fixed, flipped per epoch
  exp.eval_crops_per_study = 8       # stacks per evaluated study, probabilities averaged
  exp.in_plane = 0                   # "slices": slice size; 0 = the ingest grid's
  # Compile the training programs in a background thread during the data stages
  # (experiments/precompile.py); False compiles each when training first calls it.
  exp.precompile = True
  # Conditions trained and evaluated at once, each in a thread (experiments/common.py):
  # one small-network fit keeps ~1.5 of the 2 cores busy, two fill both (GE + Siemens
  # spheres: 54 -> 41 s, same bits). 1 = one after another.
  exp.concurrent_conditions = 2
  exp.spheres_shape = (32, 32, 16)   # ResNet3D input on CPU (paper: 256 x 256 x 35)
  # "brain": air outside each study's brain mask; "head": the whole head (the paper's).
  # At 5.9 mm voxels a sphere touching the inner table merges with the bone: the misses
  # of "head" were those (BUILD_NOTES, "Experiments").
  exp.spheres_input = "brain"
  # How a sphere gets into a study: "acquired" (through the study's scanner: its slice
  # profile, MTF and calibration, its noise kept, lesions/spheres.insert_acquired; what a
  # real lesion looks like), "painted" (the paper's: voxels replaced by N(mean, std)),
  # "auto" (acquired where the synthesizer's truth gives every study's scanner, painted
  # on an export without it). BUILD_NOTES, "Experiments".
  exp.spheres_insertion = "auto"
  exp.spheres_beside = ("medium",)   # also run with the other insertion ("medium_painted"),
                                     # single-group conditions: the cross-group harm
  # Cut to a box of these mm about each study's brain before the resize (() = the whole
  # volume, the paper's): 188 mm holds the widest brain of the default cohort (190 mm),
  # so the network's voxels are 5.9 mm, not 7.8 (BUILD_NOTES, "Experiments").
  exp.spheres_crop_mm = (188.0, 188.0, 157.0)
  # Sphere training set: 0 = the paper's (each study with its own label); c > 0 =
  # paired: every training study c times without a sphere and c times with one, so
  # its anatomy says nothing about the label (60 studies are too few otherwise).
  exp.spheres_train_copies = 2
  exp.spheres_flip = True            # training inputs mirrored left-right at random
  # Sphere validation and test sets: "paired" (every study once with and once without a
  # sphere; intervals resample whole studies) or "paper" (each study once, its own label).
  exp.spheres_test = "paired"
  # Sphere positions per paired validation and test study (c with, c without a sphere).
  # One left 16 validation samples of 4 heads: accuracy tied at 1.0 from epoch 2-3 and
  # the earliest tie, an under-trained member, was kept; 8 positions give 128 validation
  # samples and measure each test head's detection rate (BUILD_NOTES, "Experiments").
  exp.spheres_eval_copies = 8
  exp.segmentation_shape = (32, 32, 16)  # UNet3D input (paper: 256 x 256 x 32)
  # Narrow networks at 32 x 32 x 16 on CPU: the paper-width ResNet3D trains at ~16
  # volumes/s at 64 x 64 x 16 here, this one at ~500 (BUILD_NOTES.md, performance).
  # Learning rates and epochs: chosen on the default cohort's validation loss so
  # the small networks learn at all in 15 epochs (BUILD_NOTES.md); paper.py keeps
  # its own.
  # Three scales, not four: at 32 x 32 x 16 a fourth would run on 1 x 1 x 1 voxels,
  # where BatchNorm sees one value per sample.
  # The paper's stem (7^3, stride 2, then a max-pool) shrinks 32 x 32 x 16 to 8 x 8 x 4
  # before any block, a 5-voxel sphere to about one: a 3^3 stride-1 stem keeps 16 x 16 x 8
  # (3.4x the time an epoch; on validation all members learn by epoch 5-7 where the
  # paper stem learned late or not at all; BUILD_NOTES, "Experiments").
  config.models.spheres.model_kwargs = ml_collections.ConfigDict(
      dict(widths=(8, 16, 32), stem_width=8, hidden=64, stem_kernel=3, stem_strides=1))

  config.models.segmentation.model_kwargs = ml_collections.ConfigDict(
      dict(widths=(4, 8, 16, 32)))
  config.models.segmentation.num_members = 2

  # Bias audit of an export (launch/audit.py, scanbias_jax/experiments/audit.py).
  config.audit = ml_collections.ConfigDict(dict(
      min_group=10,                  # studies a group needs for its attribute to be tested
      folds=5,                       # cross-fitting folds, grouped by patient
      n_permutations=200,            # label shuffles, each redoing the cross-fitting;
                                     # p-values and intervals both come from them
      workers=2,                     # processes for features and permutation refits
      # "Name the X" by a ShallowCNN ensemble too (experiments/audit_cnn.py): these
      # attributes, and this many more, the probe's strongest.
      cnn_attributes=(),
      cnn_strongest=1))
  return config
