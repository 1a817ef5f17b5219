"""A synthetic head-CT cohort: who is scanned on which scanner, and how.

`plan_study(key, index, synth)` draws everything about study `index` from
fold_in(key, index) alone, so a study never changes when the cohort grows.
Two designs (synth.design):
  "paper"      every study its own patient; vendors assigned by a deterministic
               weighted round robin over the index, so any prefix of the cohort
               has the configured vendor mix up to one study;
  "traveling"  each anatomy acquired on every configured vendor: study i is
               anatomy i // V on vendor i % V, each acquisition its own patient
               and study in DICOM, the anatomy id in the truth.
`render_study` turns a plan into series of pixels (`render_group` renders one
anatomy once for all its acquisitions); `launch/synthesize.py` and
`write_cohort` put them on disk.
"""
import dataclasses
import datetime
import math

import jax
import numpy as np

from scanbias_jax import keys
from scanbias_jax.synth.dicom_write import StudyTags
from scanbias_jax.synth import geometry as geo
from scanbias_jax.synth import atlas_head, phantom, sampling, scanner, vendors
from scanbias_jax.synth import lesion as lesion_lib

ANATOMIES = {"atlas": atlas_head.draw_subject, "procedural": phantom.draw_subject}
DESIGNS = ("paper", "traveling")

FIRST = ("James", "Mary", "Robert", "Patricia", "John", "Jennifer", "Michael",
         "Linda", "David", "Elizabeth", "Wei", "Aisha", "Carlos", "Yuki", "Olga")
LAST = ("Smith", "Johnson", "Williams", "Brown", "Jones", "Garcia", "Miller",
        "Davis", "Rodriguez", "Martinez", "Nguyen", "Okafor", "Kowalski", "Tanaka")
INSTITUTIONS = ("Springfield General Hospital", "St. Elsewhere Medical Center",
                "Riverside University Hospital")
LAYOUTS = ("patient", "uid", "flat")


@dataclasses.dataclass(frozen=True)
class StudyPlan:
  index: int
  anatomy: int         # the head scanned (shared by a traveling head's acquisitions)
  vendor: str
  model: str
  age_years: int
  female: bool
  dose: float          # relative to the vendor's routine protocol
  thin_mm: float
  thin_only: bool      # exported without the 5 mm series
  tilt_deg: float      # gantry tilt of the axial acquisitions
  layout: str          # folder layout of the export
  tags: StudyTags      # DICOM study tags (fake PHI)
  with_thin: bool = True  # a thin series exported (always when thin_only)
  kernel: str = ""        # reconstruction kernel; "" = the vendor's first


def check(synth) -> None:
  """Fails fast, before any work, on a config that cannot be synthesized."""
  if synth.num_studies < 1:
    raise ValueError(f"synth.num_studies must be >= 1, got {synth.num_studies}")
  if len(synth.vendors) != len(synth.vendor_mix) or not synth.vendors:
    raise ValueError(f"synth.vendors {tuple(synth.vendors)} and synth.vendor_mix "
                     f"{tuple(synth.vendor_mix)} must be non-empty and of equal length")
  if min(synth.vendor_mix) < 0 or not math.isclose(sum(synth.vendor_mix), 1.0,
                                                   abs_tol=1e-6):
    raise ValueError(f"synth.vendor_mix must be >= 0 and sum to 1, got "
                     f"{tuple(synth.vendor_mix)}")
  for name in synth.vendors:
    vendors.configured(synth, name)
  if synth.anatomy not in ANATOMIES:
    raise ValueError(f"synth.anatomy must be one of {sorted(ANATOMIES)}, got "
                     f"{synth.anatomy!r}")
  if synth.design not in DESIGNS:
    raise ValueError(f"synth.design must be one of {DESIGNS}, got {synth.design!r}")
  if not 0 <= synth.lesions_in_anatomy <= 1:
    raise ValueError(f"synth.lesions_in_anatomy must be in [0, 1], got "
                     f"{synth.lesions_in_anatomy}")
  thick = (synth.slice_mm, *synth.thin_mm_choices)
  if min(thick) <= 0 or max(synth.thin_mm_choices) >= synth.slice_mm:
    raise ValueError(f"impossible slice thickness: slice_mm={synth.slice_mm}, "
                     f"thin_mm_choices={tuple(synth.thin_mm_choices)} (thin must be "
                     f"> 0 and thinner than slice_mm)")
  protocols = tuple(synth.site_protocols)
  if protocols and (len(protocols) != len(INSTITUTIONS)
                    or any(len(p) != 2 or float(p[0]) <= 0 for p in protocols)):
    raise ValueError(f"synth.site_protocols must hold one (dose factor > 0, kVp) per "
                     f"institution {INSTITUTIONS}, got {protocols}")
  for field in ("thin_only_fraction", "thin_series_fraction", "tilt_fraction",
                "female_fraction", "second_kernel_fraction"):
    if field not in synth:
      continue
    if not 0 <= synth[field] <= 1:
      raise ValueError(f"synth.{field} must be in [0, 1], got {synth[field]}")
  if not 0 <= synth.max_tilt_deg < 45:
    raise ValueError(f"synth.max_tilt_deg must be in [0, 45), got {synth.max_tilt_deg}")
  if synth.matrix < 16 or synth.fov_mm < 230:
    raise ValueError(f"synth.matrix must be >= 16 and synth.fov_mm >= 230 (a head "
                     f"fits), got {synth.matrix} and {synth.fov_mm}")


def vendor_sequence(count: int, mix) -> list[int]:
  """Weighted round robin: study i goes to the vendor furthest below its quota."""
  mix = np.asarray(mix, float)
  counts = np.zeros(len(mix))
  out = []
  for i in range(count):
    v = int(np.argmax(mix * (i + 1) - counts))
    counts[v] += 1
    out.append(v)
  return out


def profiles(synth) -> dict[str, vendors.Profile]:
  """Each configured vendor's profile with overrides, strength and synth.effects applied."""
  out = {}
  for name in synth.vendors:
    profile = vendors.configured(synth, name)
    effects = synth.effects
    physics = profile.physics._replace(
        noise_nonuniformity=profile.physics.noise_nonuniformity * effects.nonstationary_noise,
        streak_hu=profile.physics.streak_hu * effects.beam_hardening)
    field = profile.field_fraction if effects.recon_circle else 1.0
    out[name] = dataclasses.replace(profile, physics=physics, field_fraction=field)
  return out


def _age_sex(rng, synth) -> tuple[int, bool]:
  age = int(np.clip(round(rng.normal(synth.age_mean, synth.age_sd)),
                    synth.age_min, synth.age_max))
  return age, bool(rng.random() < synth.female_fraction)


def plan_study(key: jax.Array, index: int, synth, vendor_index: int,
               anatomy: int | None = None) -> StudyPlan:
  """Everything about study `index`, drawn from fold_in(key, index) alone (and, for
  a traveling head, its age and sex from fold_in(key, anatomy))."""
  rng = keys.numpy_rng(keys.item(keys.stream(key, "plan"), index))
  vendor = synth.vendors[vendor_index]
  profile = vendors.configured(synth, vendor)
  age, female = _age_sex(rng, synth)
  if anatomy is None:
    anatomy = index
  else:
    age, female = _age_sex(keys.numpy_rng(keys.item(keys.stream(key, "head"), anatomy)),
                           synth)
  dose = float(np.exp(rng.normal(0.0, 0.15)))  # protocol and tube-current variation
  tilt = float(rng.uniform(5.0, synth.max_tilt_deg)) \
      if rng.random() < synth.tilt_fraction and synth.max_tilt_deg >= 5 else 0.0
  study_day = datetime.date(2012, 1, 1) + datetime.timedelta(int(rng.integers(0, 3650)))
  birth = study_day - datetime.timedelta(days=int(365.25 * age + rng.integers(1, 360)))
  tags = StudyTags(
      uid_seed=f"scanbias-synth-{index}-{int(rng.integers(2**62))}",
      patient_name=f"{rng.choice(LAST)}^{rng.choice(FIRST)}",
      patient_id=f"MRN{int(rng.integers(10**7, 10**8))}",
      birth_date=birth.strftime("%Y%m%d"), age_years=age, sex="F" if female else "M",
      accession=f"ACC{int(rng.integers(10**8, 10**9))}",
      institution=str(rng.choice(INSTITUTIONS)),
      referring=f"{rng.choice(LAST)}^{rng.choice(FIRST)}^^Dr",
      study_date=study_day.strftime("%Y%m%d"),
      study_time=f"{int(rng.integers(0, 24)):02d}{int(rng.integers(0, 60)):02d}00",
      model=str(rng.choice(profile.models)), station=f"CT{int(rng.integers(1, 9))}",
      kvp=120.0, **_exposure(dose))
  thin_mm = float(rng.choice(synth.thin_mm_choices))
  thin_only = bool(rng.random() < synth.thin_only_fraction)
  layout = str(rng.choice(LAYOUTS))
  # Drawn last, and always: the draws above do not depend on the setting.
  with_thin = bool(rng.random() < synth.thin_series_fraction) or thin_only
  dose, tags = _site_protocol(synth, dose, tags)
  return StudyPlan(
      index=index, anatomy=anatomy, vendor=vendor, model=tags.model, age_years=age, female=female,
      dose=dose, thin_mm=thin_mm, thin_only=thin_only, tilt_deg=tilt, layout=layout, tags=tags,
      with_thin=with_thin, kernel=_kernel(key, index, synth, profile))


def _site_protocol(synth, dose: float, tags: StudyTags) -> tuple[float, StudyTags]:
  """synth.site_protocols[i] = (dose factor, kVp) of INSTITUTIONS[i]'s head protocol
  (a site that scans at lower dose has noisier images); () = every site the same."""
  if not synth.site_protocols:
    return dose, tags
  factor, kvp = synth.site_protocols[INSTITUTIONS.index(tags.institution)]
  dose = dose * float(factor)
  return dose, dataclasses.replace(tags, kvp=float(kvp), **_exposure(dose))


def _exposure(dose: float) -> dict:
  """The tube-current product and CTDIvol tags of a head scan at relative `dose`."""
  mas = 300.0 * dose
  return dict(mas=mas, ctdi_vol=0.19 * mas)


def _kernel(key, index: int, synth, profile: vendors.Profile) -> str:
  """The vendor's second kernel for synth.second_kernel_fraction of the studies (its own
  key stream: the plan's other draws do not depend on the setting), else ""."""
  if not synth.second_kernel_fraction or not profile.second_kernel:
    return ""
  rng = keys.numpy_rng(keys.item(keys.stream(key, "kernel"), index))
  return profile.second_kernel[0] if rng.random() < synth.second_kernel_fraction else ""


def plan_profile(plan: StudyPlan, synth, all_profiles: dict | None = None) -> vendors.Profile:
  """The profile a study is acquired and stored with: its vendor's (`profiles`), with
  the plan's kernel."""
  profile = (all_profiles or profiles(synth))[plan.vendor]
  return vendors.with_kernel(profile, plan.kernel, synth.signature_strength)


def plan_cohort(key: jax.Array, synth) -> list[StudyPlan]:
  check(synth)
  if synth.design == "traveling":
    count = len(synth.vendors)
    return [plan_study(key, i, synth, i % count, anatomy=i // count)
            for i in range(synth.num_studies)]
  order = vendor_sequence(synth.num_studies, synth.vendor_mix)
  return [plan_study(key, i, synth, v) for i, v in enumerate(order)]


@dataclasses.dataclass
class RenderedSeries:
  kind: str                       # "routine" | "thin"
  geometry: geo.SeriesGeometry
  acquired: scanner.Acquired
  lesion: object = None           # synth.lesion.Lesion placed before acquisition


def plane_spacing(thicknesses, finest_mm: float) -> float | None:
  """Half the thinnest slice but not below `finest_mm`, if every thickness is a
  whole number of it (else None: each series samples its own sub-planes)."""
  spacing = max(min(thicknesses) / 2, finest_mm)
  ratios = [t / spacing for t in thicknesses]
  return spacing if all(abs(r - round(r)) < 1e-6 for r in ratios) else None


def subject_of(key: jax.Array, plan: StudyPlan, synth):
  """The anatomy scanned in `plan` (the same for every acquisition of one head)."""
  head_key = keys.item(keys.stream(key, "anatomy"), plan.anatomy)
  return ANATOMIES[synth.anatomy](head_key, plan.age_years, plan.female)


def lesion_of(key: jax.Array, plan: StudyPlan, synth, subject):
  """A sphere placed in the anatomy before acquisition (synth.lesions_in_anatomy of
  the heads), or None. Drawn per anatomy: every scanner of a traveling head sees it."""
  head_key = keys.item(keys.stream(key, "lesion"), plan.anatomy)
  rng = keys.numpy_rng(head_key)
  if rng.random() >= synth.lesions_in_anatomy:
    return None
  return lesion_lib.place_in_subject(head_key, subject, small=bool(rng.random() < 0.5))


def _stack_spacing(geometries, synth) -> float | None:
  """Plane spacing of one study's untilted series: half its thinnest slice, at least
  synth.plane_mm (a routine-only study: 2.5 mm, where a 5 mm Gaussian slice profile
  passes under 3 % of the anatomy's z content; BUILD_NOTES, "Synthesizer"). A study's
  own series decide it, so it renders the same alone or with its head's other scans."""
  return plane_spacing([g.thickness_mm for g in geometries], synth.plane_mm)


def _stack_for(synth, geometries, factor, spacing):
  """(template, table z) of the plane stack, `spacing` apart along the normal, of
  series of one tilt. Its reach covers every configured vendor's slice profile, so
  one stack serves all acquisitions of a traveling head that share the spacing and
  tilt; planes are the slice plane moved along the table from the head's lowest z, on
  one lattice whatever the series (tilted: table steps of spacing / cos(tilt), so
  every slice is one of the planes)."""
  thick = [g.thickness_mm for g in geometries]
  if len({g.tilt_deg for g in geometries}) != 1:
    raise ValueError("a plane stack serves series of one tilt")
  cos_tilt = math.cos(math.radians(geometries[0].tilt_deg))
  # The first slice's table z: the head's lowest z (its corner's z, if tilted, added).
  z_lo = float(geometries[0].positions[0, 2])
  ssp = max(p.physics.ssp_ratio for p in profiles(synth).values())
  reach = max(thick + [synth.slice_mm]) * ssp / cos_tilt
  step = spacing / cos_tilt
  top = max(g.positions[-1, 2] for g in geometries)
  steps = np.arange(-math.ceil(reach / step), math.ceil((top - z_lo + reach) / step) + 1)
  return sampling.anatomy_grid(geometries[0], factor), z_lo + step * steps


def _render_stacks(subject, grids: dict, lesion) -> dict:
  """{stack key: PlaneStack} of {(tilt, spacing): (template, z)}. Stacks of one tilt
  lie on lattices from the same first slice, so a coarser one's planes are mostly
  a finer one's (2.5 mm steps are every other 1.25 mm step, exactly in floating
  point): each distinct plane is sampled once (a plane's pixels do not depend on
  which others are sampled with it, tested)."""
  stacks = {}
  for tilt in {k[0] for k in grids}:
    mine = {k: grid for k, grid in grids.items() if k[0] == tilt}
    template = next(iter(mine.values()))[0]
    every_z = sorted({float(z) for _, zs in mine.values() for z in zs})
    planes = sampling.render_planes(subject, template, np.array(every_z), lesion)
    row = {z: i for i, z in enumerate(every_z)}
    for k, (_, zs) in mine.items():
      if len(zs) == len(every_z):  # the only stack of its tilt, or the finest: all planes
        stacks[k] = planes
        continue
      rows = [row[float(z)] for z in zs]
      stacks[k] = planes._replace(z=np.asarray(zs, float), hu=planes.hu[rows],
                                  brain=planes.brain[rows])
  return stacks


def series_geometries(plan: StudyPlan, synth, z_range) -> dict[str, geo.SeriesGeometry]:
  routine, thin = ("routine", synth.slice_mm), ("thin", plan.thin_mm)
  kinds = (thin,) if plan.thin_only else (routine, thin) if plan.with_thin else (routine,)
  return {kind: geo.axial_series(synth.fov_mm, synth.matrix, thickness, *z_range,
                                 plan.tilt_deg) for kind, thickness in kinds}


def render_group(key: jax.Array, plans: list[StudyPlan], synth,
                 lesion=None) -> list[list[RenderedSeries]]:
  """The axial series of studies that share one anatomy (one study, or a traveling
  head's acquisitions): the anatomy is drawn and sampled once, each scanner's
  physics applied to it.

  Series are integrated from a stack of planes (half the study's thinnest slice
  apart along the normal, at least synth.plane_mm; acquisitions with the same spacing
  and tilt share one) sampled on every k-th pixel of the image grid, k the largest
  with k x pixel <= synth.anatomy_mm. A study whose thicknesses share no spacing
  samples synth.ssp_samples sub-planes a slice instead. `lesion`
  (synth.lesion.Lesion) overrides the head's own synth.lesions_in_anatomy draw.
  """
  return render_group_settings(key, plans, [synth], lesion)[0]


def render_group_settings(key: jax.Array, plans: list[StudyPlan], synths: list,
                          lesion=None) -> list[list[list[RenderedSeries]]]:
  """`render_group` under each of `synths` (settings that differ in scanner physics
  only, e.g. the signature strength; the first decides the anatomy and geometry): the
  anatomy is sampled once for all, on the union of their plane stacks, and each gets
  the pixels `render_group` gives it alone (a plane does not depend on the others
  sampled with it). [setting][plan] -> series."""
  if len({p.anatomy for p in plans}) != 1:
    raise ValueError("render_group renders studies of one anatomy")
  synth = synths[0]
  subject = subject_of(key, plans[0], synth)
  lesion = lesion if lesion is not None else lesion_of(key, plans[0], synth, subject)
  z_range = tuple(float(z) for z in subject.scan_range())
  factor = sampling.anatomy_factor(synth.matrix, synth.fov_mm / synth.matrix,
                                  synth.anatomy_mm)
  per_plan = [series_geometries(p, synth, z_range) for p in plans]
  stack_keys = [(p.tilt_deg, _stack_spacing(list(g.values()), synth))
                for p, g in zip(plans, per_plan)]
  grids = {}  # (tilt, spacing, setting): a setting's slice profiles reach its own planes
  for stack_key in sorted({k for k in stack_keys if k[1] is not None}):
    shared = [g for geoms, k in zip(per_plan, stack_keys) if k == stack_key
              for g in geoms.values()]
    for index, setting in enumerate(synths):
      grids[(*stack_key, index)] = _stack_for(setting, shared, factor, stack_key[1])
  stacks = _render_stacks(subject, grids, lesion)
  out = []
  for index, setting in enumerate(synths):
    all_profiles = profiles(setting)
    out.append([])
    for plan, geometries, stack_key in zip(plans, per_plan, stack_keys):
      study_key = keys.item(keys.stream(key, "study"), plan.index)
      profile = plan_profile(plan, setting, all_profiles)
      out[-1].append([RenderedSeries(kind, g, scanner.acquire(
          keys.stream(study_key, kind), subject, g, profile, plan.dose, setting.ssp_samples,
          stacks.get((*stack_key, index)), lesion, factor), lesion)
          for kind, g in geometries.items()])
  return out


def render_study(key: jax.Array, plan: StudyPlan, synth,
                 lesion=None) -> list[RenderedSeries]:
  """The axial series of one study (routine 5 mm unless thin-only, and thin); the
  same pixels as in `render_group` with the other acquisitions of its head."""
  return render_group(key, [plan], synth, lesion)[0]


def vendor_preview(key: jax.Array, synth, index: int = 0) -> dict[str, np.ndarray]:
  """A routine chunk of slices through the middle of study `index`'s head, as each
  vendor makes it: [slices, rows, cols] HU per vendor.

  Same anatomy and same white-noise draw for every vendor: the differences are
  the scanners' alone.
  """
  plan = plan_cohort(key, synth)[index]
  study_key = keys.item(keys.stream(key, "study"), plan.index)
  subject = subject_of(key, plan, synth)
  z_lo, z_hi = (float(z) for z in subject.scan_range())
  middle = z_lo + 0.6 * (z_hi - z_lo)
  # A whole chunk of slices: the shapes the cohort's series were compiled for.
  half = sampling.CHUNK // 2
  geometry = geo.axial_series(synth.fov_mm, synth.matrix, synth.slice_mm,
                              middle - half * synth.slice_mm,
                              middle + (half - 1.01) * synth.slice_mm)
  factor = sampling.anatomy_factor(synth.matrix, synth.fov_mm / synth.matrix,
                                  synth.anatomy_mm)
  return {name: scanner.acquire(keys.stream(study_key, "routine"), subject, geometry,
                                profile, plan.dose, synth.ssp_samples,
                                anatomy_factor=factor).hu
          for name, profile in profiles(synth).items()}
