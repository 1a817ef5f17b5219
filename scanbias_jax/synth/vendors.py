"""Vendor profiles: how each manufacturer's routine head CT looks and is stored.

A vendor is data. `PROFILES` holds the built-in four; a config can override any
field per vendor or add a vendor by copying one (`resolve`). Physics fields are
scaled by one knob, the signature strength: 0 gives every vendor the physics of
`NEUTRAL`, 1 the profile's own values, 2 twice the difference.

Sources for the physics values (order of magnitude, not fitted to one scanner):
- Noise texture: Solomon, Christianson & Samei, Med Phys 39(10), 2012
  (doi:10.1118/1.4752209) compared NPS across GE and Siemens kernels: FBP head and
  body kernels peak at 0.1-0.45 mm^-1, sharper kernels higher, and GE "Standard"
  matched Siemens "B43f" with GE "Soft" near "B35f". Head protocols use
  smooth-to-standard kernels, so peaks of 0.17-0.30 mm^-1 are used here.
- Resolution: MTF50 of standard head kernels is about 3-4 lp/cm (AAPM TG-233
  style measurements of commercial scanners); sharper kernel <-> higher NPS peak.
- Noise level: routine adult head CT (CTDIvol 50-60 mGy) gives 3-5 HU standard
  deviation in brain at 5 mm.
- Calibration: ACR accreditation requires water at 0 +- 7 HU; measured scanners sit
  within a few HU, and bone HU differ by a few percent with effective energy. Grey
  and white matter of normal head CT differ between scanners by 1-10 HU and
  1-7.5 HU (Oh et al., Am J Emerg Med 2019;37:680): the four profiles span 6.5 HU
  (grey) and 5 HU (white) with their water offsets, mid-range; which vendor reads
  higher is not published, so the signs are ours.
- Iterative reconstruction: every vendor's routine head protocol reconstructs with
  hybrid IR (GE ASiR-V, Siemens SAFIRE / ADMIRE, Philips iDose4, Canon AIDR 3D).
  ASiR-V removes 12-64 % of the FBP noise over 40-100 % (De Marco & Origgi, JACMP
  2018;19:275) and lowers the NPS peak (patients: FBP 0.23-0.27 /mm, ASIR 50 %
  0.13-0.14 /mm); iDose4 levels 1-7 are built to remove 11-55 % keeping the NPS shape,
  level 4 ~29 % (Philips white paper); SAFIRE keeps an FBP-like texture with a small
  peak shift and AIDR 3D shifts it further (Greffier et al., Phys Med 2023). noise_hu
  is the FBP noise at the routine dose; the image's is (1 - ir_noise_reduction) of it.
- Storage: GE writes signed 16-bit with PixelPaddingValue -2000 and intercept
  -1024; Siemens unsigned 12-bit, intercept -1024, zeros outside the field and no
  padding tag; Philips unsigned with intercept -1000; Canon/Toshiba signed with
  -2048 padding. These are the conventions seen in typical exports; real
  exports vary by software version, which is why ingest reads tags, never vendors.
"""
import dataclasses
from typing import Any, Mapping, NamedTuple


class Physics(NamedTuple):
  """What the scanner does to the true attenuation (image-domain model).

  A NamedTuple so it passes through jit as a pytree of scalars."""
  mtf50_per_mm: float    # in-plane spatial frequency where the kernel's MTF is 0.5
  nps_peak_per_mm: float  # peak of the radial noise power spectrum (FBP: ramp x apodisation)
  noise_hu: float        # noise std in brain at 5 mm slices and the reference dose
  water_offset_hu: float  # calibration error of water/soft tissue
  bone_scale: float      # relative error of HU above 100 (effective-energy difference)
  cupping_hu: float      # residual beam-hardening cupping: centre lower by this much
  ssp_ratio: float       # slice sensitivity profile FWHM / nominal slice thickness
  noise_nonuniformity: float  # 0 stationary noise; 1 variance ~ photons along the rays
  streak_hu: float       # beam-hardening error of rays through dense bone (0 = none)
  # Iterative reconstruction at the routine head setting (BUILD_NOTES, "Synthesizer"):
  ir_noise_reduction: float = 0.0  # fraction of the FBP noise std it removes
  ir_nps_shift: float = 0.0        # fraction by which it lowers the NPS peak frequency
  # Tissue calibration on top of the water offset: grey and white matter read this
  # many HU more (effective energy, beam-hardening correction; Oh et al. 2019).
  grey_offset_hu: float = 0.0
  white_offset_hu: float = 0.0


NEUTRAL = Physics(mtf50_per_mm=0.35, nps_peak_per_mm=0.24, noise_hu=4.0,
                  water_offset_hu=0.0, bone_scale=1.0, cupping_hu=0.0,
                  ssp_ratio=1.05, noise_nonuniformity=0.5, streak_hu=12.0,
                  ir_noise_reduction=0.25, ir_nps_shift=0.15,
                  grey_offset_hu=0.0, white_offset_hu=0.0)


@dataclasses.dataclass(frozen=True)
class Profile:
  """One vendor: its physics and its DICOM conventions."""
  name: str                 # normalised vendor name used downstream ("GE")
  manufacturer: str         # Manufacturer (0008,0070) as the vendor writes it
  models: tuple[str, ...]   # ManufacturerModelName values, one drawn per study
  kernel: tuple[str, ...]   # ConvolutionKernel (0018,1210), may be multi-valued
  description_5mm: str      # SeriesDescription templates; {t} = thickness in mm
  description_thin: str
  description_scout: str
  physics: Physics
  pixel_representation: int  # 0 unsigned, 1 two's complement
  bits_stored: int
  rescale_intercept: float
  rescale_slope: float
  outside_stored: int       # stored value outside the reconstruction circle
  padding_tag: bool         # whether PixelPaddingValue = outside_stored is written
  field_fraction: float     # reconstruction circle diameter / image width
  transfer_syntax: str      # "explicit" | "jpeg2000" | "rle"
  instance_order: str       # "superior_first" | "inferior_first" InstanceNumber 1
  # The routine iterative reconstruction as the export names it (BUILD_NOTES).
  iterative: str = ""
  # A second head kernel of the vendor's: (ConvolutionKernel, MTF50 /mm, NPS peak /mm);
  # `synth.second_kernel_fraction` of the studies are reconstructed with it.
  second_kernel: tuple = ()


PROFILES: dict[str, Profile] = {
    "GE": Profile(
        name="GE", manufacturer="GE MEDICAL SYSTEMS",
        models=("LightSpeed VCT", "Discovery CT750 HD", "Revolution CT",
                "Optima CT660"),
        kernel=("STANDARD",), description_5mm="{t:g}mm HEAD ASIR-V 40%",
        description_thin="{t:g}mm HEAD STD ASIR-V 40%", description_scout="Scout",
        # GE STANDARD: a slightly sharper, higher-peaked texture.
        physics=Physics(mtf50_per_mm=0.38, nps_peak_per_mm=0.29, noise_hu=4.4,
                        water_offset_hu=1.5, bone_scale=1.02, cupping_hu=1.5,
                        ssp_ratio=1.0,
                        noise_nonuniformity=0.55, streak_hu=14.0,
                        ir_noise_reduction=0.22, ir_nps_shift=0.35,
                        grey_offset_hu=0.5, white_offset_hu=0.5),
        iterative="ASIR-V 40%",
        pixel_representation=1, bits_stored=16, rescale_intercept=-1024.0,
        rescale_slope=1.0, outside_stored=-2000, padding_tag=True,
        field_fraction=1.0, transfer_syntax="explicit",
        instance_order="superior_first",
        second_kernel=("SOFT", 0.34, 0.24)),
    "Siemens": Profile(
        name="Siemens", manufacturer="SIEMENS",
        models=("SOMATOM Definition AS+", "SOMATOM Definition Flash",
                "SOMATOM Force", "SOMATOM go.Top"),
        kernel=("J40s", "3"), description_5mm="Head {t:.1f} J40s",
        description_thin="Head {t:.2f} J40s", description_scout="Topogram 0.6 T20s",
        # Siemens J40s/H40s head kernels: smoother texture, lower noise peak.
        physics=Physics(mtf50_per_mm=0.33, nps_peak_per_mm=0.21, noise_hu=3.7,
                        water_offset_hu=-1.0, bone_scale=0.98, cupping_hu=-1.0,
                        ssp_ratio=1.1,
                        noise_nonuniformity=0.45, streak_hu=10.0,
                        ir_noise_reduction=0.28, ir_nps_shift=0.10,
                        grey_offset_hu=-0.5, white_offset_hu=-0.5),
        iterative="SAFIRE 3",
        pixel_representation=0, bits_stored=12, rescale_intercept=-1024.0,
        rescale_slope=1.0, outside_stored=0, padding_tag=False,
        field_fraction=1.0, transfer_syntax="explicit",
        instance_order="inferior_first",
        second_kernel=("H31s", 0.31, 0.19)),
    "Philips": Profile(
        name="Philips", manufacturer="Philips",
        models=("Brilliance 64", "Ingenuity CT", "IQon - Spectral CT"),
        kernel=("UB",), description_5mm="Brain {t:g}mm iDose 4",
        description_thin="Brain {t:g}mm thin iDose 4", description_scout="Surview",
        physics=Physics(mtf50_per_mm=0.32, nps_peak_per_mm=0.20, noise_hu=4.1,
                        water_offset_hu=2.0, bone_scale=1.0, cupping_hu=2.5,
                        ssp_ratio=1.05,
                        noise_nonuniformity=0.5, streak_hu=12.0,
                        ir_noise_reduction=0.29, ir_nps_shift=0.05,
                        grey_offset_hu=1.0, white_offset_hu=1.5),
        iterative="iDose4 level 4",
        pixel_representation=0, bits_stored=12, rescale_intercept=-1000.0,
        rescale_slope=1.0, outside_stored=0, padding_tag=False,
        field_fraction=0.96, transfer_syntax="rle",
        instance_order="superior_first",
        second_kernel=("UC", 0.30, 0.18)),
    "Canon": Profile(
        name="Canon", manufacturer="TOSHIBA",
        models=("Aquilion ONE", "Aquilion PRIME", "Aquilion Lightning"),
        kernel=("FC26",), description_5mm="Brain {t:g}mm FC26 AIDR STD",
        description_thin="Brain {t:g}mm FC26 vol AIDR STD", description_scout="Scanogram",
        physics=Physics(mtf50_per_mm=0.30, nps_peak_per_mm=0.17, noise_hu=3.5,
                        water_offset_hu=-2.0, bone_scale=1.01, cupping_hu=0.5,
                        ssp_ratio=1.0,
                        noise_nonuniformity=0.5, streak_hu=11.0,
                        ir_noise_reduction=0.25, ir_nps_shift=0.20,
                        grey_offset_hu=-1.5, white_offset_hu=0.5),
        iterative="AIDR 3D STD",
        pixel_representation=1, bits_stored=16, rescale_intercept=-1024.0,
        rescale_slope=1.0, outside_stored=-2048, padding_tag=True,
        field_fraction=0.98, transfer_syntax="jpeg2000",
        instance_order="inferior_first",
        second_kernel=("FC21", 0.28, 0.15)),
}


def with_kernel(profile: Profile, kernel: str, strength: float) -> Profile:
  """The profile reconstructing with `kernel`: its own, or its second kernel (MTF50 and
  NPS peak from it, moved from NEUTRAL by `strength` like every physics field)."""
  if not kernel or kernel == profile.kernel[0]:
    return profile
  if not profile.second_kernel or profile.second_kernel[0] != kernel:
    raise ValueError(f"vendor {profile.name!r} has no kernel {kernel!r}")
  _, mtf50, peak = profile.second_kernel
  scaled = scale_physics(NEUTRAL._replace(mtf50_per_mm=mtf50, nps_peak_per_mm=peak), strength)
  physics = profile.physics._replace(mtf50_per_mm=scaled.mtf50_per_mm,
                                     nps_peak_per_mm=scaled.nps_peak_per_mm)
  # A kernel's further values (Siemens: the iterative strength) stay with the new one.
  return dataclasses.replace(profile, kernel=(kernel, *profile.kernel[1:]), physics=physics)


def scale_physics(physics: Physics, strength: float) -> Physics:
  """Moves every physics field from NEUTRAL towards the vendor's by `strength`."""
  return Physics(*[n + strength * (v - n) for v, n in zip(physics, NEUTRAL)])


def resolve(name: str, overrides: Mapping[str, Any] | None = None,
            strength: float = 1.0) -> Profile:
  """The named profile with config overrides applied and physics scaled.

  `overrides` may hold Profile fields, Physics fields (flat), and `base` naming
  a built-in profile to copy when `name` is a new vendor.
  """
  overrides = dict(overrides or {})
  base = overrides.pop("base", name)
  if base not in PROFILES:
    raise ValueError(f"unknown vendor {base!r}: built-in profiles are "
                     f"{sorted(PROFILES)}; add one with profile_overrides."
                     f"{name}.base=<built-in>")
  profile = PROFILES[base]
  physics_names = set(Physics._fields)
  profile_names = {f.name for f in dataclasses.fields(Profile)}
  unknown = set(overrides) - physics_names - profile_names
  if unknown:
    raise ValueError(f"vendor {name!r}: unknown profile fields {sorted(unknown)}")
  physics = profile.physics._replace(
      **{k: float(v) for k, v in overrides.items() if k in physics_names})
  top = {k: (tuple(v) if isinstance(v, list) else v)
         for k, v in overrides.items() if k in profile_names}
  top.setdefault("name", name)
  if strength < 0:
    raise ValueError(f"signature_strength must be >= 0, got {strength}")
  return dataclasses.replace(profile, physics=scale_physics(physics, strength), **top)


def configured(synth, name: str) -> Profile:
  """Vendor `name` as the synth config makes it: overrides, strength, and the planted
  harm of a positive control (`synth.planted_vendor`'s tissue calibration shifted by
  `synth.planted_tissue_hu`, on top of the strength: a known physical difference)."""
  profile = resolve(name, synth.profile_overrides.get(name), synth.signature_strength)
  planted = synth.planted_vendor
  if planted and planted not in synth.vendors:
    raise ValueError(f"synth.planted_vendor {planted!r} is not one of synth.vendors "
                     f"{tuple(synth.vendors)}")
  if name != planted:
    return profile
  shifted = profile.physics.water_offset_hu + float(synth.planted_tissue_hu)
  return dataclasses.replace(profile, physics=profile.physics._replace(water_offset_hu=shifted))

