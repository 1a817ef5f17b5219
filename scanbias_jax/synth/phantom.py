"""Analytic head anatomy in true HU: a per-subject parametric phantom for head CT.

Lengths are mm. Anatomy is written in a reference head frame (x left, y posterior,
z superior; origin at the centre of the supratentorial cavity, adult male size) and
mapped per subject by scale, rotation and placement. Tissue values are true
attenuation at ~120 kVp, before any scanner effect; ranges from standard CT HU
tables (e.g. Hounsfield unit tables in Buzug, "Computed Tomography", 2008; Lev &
Gonzalez, "CT angiography and CT perfusion imaging", 2002, for brain parenchyma).
"""
import flax.struct
import jax
import jax.numpy as jnp
import numpy as np

from scanbias_jax import keys

AIR = -1000.
FAT = -90.          # subcutaneous / orbital fat: -50 .. -150
SOFT = 40.          # skin, muscle, galea: +35 .. +60
CSF = 7.            # 0 .. 15
GREY = 41.          # cortex: 37 .. 45
WHITE = 28.         # 25 .. 32
DEEP_GREY = 39.     # basal ganglia, thalami: 38 .. 42
BRAINSTEM = 32.     # mostly white matter tracts
FALX = 60.          # dura is slightly hyperdense to brain
CORTICAL = 1800.    # inner/outer tables: 1500 .. 1900
DIPLOE = 700.       # cancellous bone between the tables: 500 .. 900
PETROUS = 1950.     # otic capsule, densest bone of the skull
EYE = 12.           # vitreous: 0 .. 20

A_REF = (68., 84., 62.)        # supratentorial cavity semi-axes, adult male
PF_C, PF_A = (0., 36., -46.), (54., 42., 32.)   # posterior fossa ellipsoid
Z_FM = -78.                    # foramen magnum: the brain mask stops here
TABLE = 1.5                    # thickness of each cortical table
SKULL_R0 = 70.                 # the skull thickness field lives on a sphere this size
BEND = 0.8                     # how far sulci follow the inner-table normal (1 = straight)
N_FOLD, N_DEPTH, N_SKULL = 24, 6, 6
N_WAVES = N_FOLD + N_DEPTH + N_SKULL
FOV_RADIUS = 115.              # the head must fit a 230 mm circle


@flax.struct.dataclass
class Subject:
  """All anatomy parameters of one subject; every leaf a fixed-shape float32 array."""
  centre: jax.Array            # [3] patient LPS mm of the head-frame origin
  rotation: jax.Array          # [3, 3] head frame -> patient axes
  angles_deg: jax.Array        # [3] yaw, pitch, roll (for reporting)
  scale: jax.Array             # [3] head size relative to A_REF
  age: jax.Array
  female: jax.Array
  skull_mm: jax.Array          # mean skull thickness before regional factors
  skull_k: jax.Array           # [N_SKULL, 3] thickness field wave vectors
  skull_phase: jax.Array       # [N_SKULL]
  scalp_mm: jax.Array
  csf_mm: jax.Array            # subarachnoid CSF between brain and inner table
  sulcus_mm: jax.Array         # CSF width of a sulcus
  cortex_mm: jax.Array         # grey matter thickness
  sulcus_depth_mm: jax.Array
  fold_k: jax.Array            # [N_FOLD, 3] folding field wave vectors (rad/mm)
  fold_phase: jax.Array        # [N_FOLD]
  depth_k: jax.Array           # [N_DEPTH, 3] sulcal depth field
  depth_phase: jax.Array       # [N_DEPTH]
  ventricle_scale: jax.Array
  frontal_sinus: jax.Array     # 0/1
  mastoid_air: jax.Array       # 0/1

  def hu_and_brain(self, points_mm):
    return head_hu(self, points_mm)

  def scan_range(self):
    return scan_range_mm(self)


def rotation_matrix(yaw, pitch, roll):
  """Head frame -> patient axes: yaw about z, then roll about y, then pitch about x."""
  cy, sy, cp, sp, cr, sr = (f(a) for a in (yaw, pitch, roll) for f in (jnp.cos, jnp.sin))
  rz = jnp.array([[cy, -sy, 0.], [sy, cy, 0.], [0., 0., 1.]])
  rx = jnp.array([[1., 0., 0.], [0., cp, -sp], [0., sp, cp]])
  ry = jnp.array([[cr, 0., sr], [0., 1., 0.], [-sr, 0., cr]])
  return rz @ ry @ rx


def _waves(key):
  """Random plane waves (wave vectors [N_WAVES, 3], phases) of the three fields."""
  direction = jax.random.normal(keys.stream(key, "direction"), (N_WAVES, 3))
  u = jax.random.uniform(keys.stream(key, "wave"), (N_WAVES, 2))
  # Wavelengths (mm): gyri 10-25, sulcal depth 40-90, skull thickness 80-160.
  lo, hi = (np.repeat(v, (N_FOLD, N_DEPTH, N_SKULL)) for v in ((10., 40., 80.), (25., 90., 160.)))
  k = direction / jnp.linalg.norm(direction, axis=-1, keepdims=True)
  k *= (2 * jnp.pi / (lo + (hi - lo) * u[:, 0]))[:, None]
  return k, 2 * jnp.pi * u[:, 1]


def _cos_field(p, k, phase, with_grad=False):
  """Unit-variance sum of cosines at p[..., 3]; unrolled so XLA fuses it per point."""
  norm = (2. / k.shape[0]) ** 0.5
  f, g = 0., [0., 0., 0.]
  for i in range(k.shape[0]):
    arg = p[..., 0] * k[i, 0] + p[..., 1] * k[i, 1] + p[..., 2] * k[i, 2] + phase[i]
    f = f + jnp.cos(arg)
    if with_grad:
      s = jnp.sin(arg)
      g = [g[j] - s * k[i, j] for j in range(3)]
  return (norm * f, [norm * gj for gj in g]) if with_grad else norm * f


def _surface_points(axes, centre=(0., 0., 0.), n=400):
  """Fibonacci points on an ellipsoid surface, [n, 3]."""
  i = np.arange(n) + 0.5
  z = 1 - 2 * i / n
  phi = np.pi * (1 + 5 ** 0.5) * i
  u = np.stack([np.sqrt(1 - z * z) * np.cos(phi), np.sqrt(1 - z * z) * np.sin(phi), z], -1)
  return jnp.asarray(u * np.asarray(axes) + np.asarray(centre), jnp.float32)


def _outline_points():
  """Points bounding the outer head surface in the reference frame (skin included)."""
  cranium = _surface_points(np.add(A_REF, 22.))  # max skull + scalp + sinus bulge
  t = np.linspace(0, 2 * np.pi, 64, endpoint=False)
  rings = [np.stack([66 * np.cos(t), -6 + 92 * np.sin(t), np.full_like(t, -60.)], -1)]
  return jnp.concatenate([cranium, jnp.asarray(np.concatenate(rings), jnp.float32)])


def _to_patient(subject, q_ref):
  return (q_ref * subject.scale) @ subject.rotation.T + subject.centre


@jax.jit
def draw_subject(key: jax.Array, age_years, female) -> Subject:
  """Draws one subject; age and sex enter deterministically after the random draws."""
  age = jnp.asarray(age_years, jnp.float32)
  female = jnp.asarray(female, jnp.float32)
  # Few, batched draws: every threefry call costs compile time.
  n = jax.random.normal(keys.stream(key, "shape"), (16,))
  flags = jax.random.uniform(keys.stream(key, "sinus"), (2,))
  k, phase = _waves(key)
  f, d = N_FOLD, N_FOLD + N_DEPTH
  old = jnp.maximum(age - 20., 0.)

  # Mean intracranial volume ~1.45 L in men; ~10-12 % smaller in women (linear 0.96).
  size = 0.965 * (1. - 0.04 * female) * jnp.exp(0.035 * n[0])
  scale = jnp.clip(size * jnp.exp(0.025 * n[1:4]), 0.84, 1.08)
  yaw, roll = jnp.deg2rad(3.) * n[4], jnp.deg2rad(2.5) * n[5]
  pitch = jnp.deg2rad(12.) * jnp.tanh(0.5 * n[6])
  rotation = rotation_matrix(yaw, pitch, roll)
  # Keep the head inside the FOV circle: shrink the in-plane offset if needed.
  outline = (_outline_points() * scale) @ rotation.T
  reach = jnp.max(jnp.linalg.norm(outline[:, :2], axis=-1))
  offset = 6. * n[7:9]
  room = jnp.clip(FOV_RADIUS - 2. - reach, 0., 15.)
  offset *= jnp.minimum(1., room / (jnp.linalg.norm(offset) + 1e-6))
  centre = jnp.concatenate([offset, 5. * n[9:10]])

  return Subject(
      centre=centre, rotation=rotation,
      angles_deg=jnp.rad2deg(jnp.stack([yaw, pitch, roll])), scale=scale,
      age=age, female=female,
      skull_mm=jnp.clip(6.3 + 0.7 * n[10], 4.8, 8.),
      skull_k=k[d:], skull_phase=phase[d:],
      scalp_mm=jnp.clip(5. + 0.8 * n[11], 3.5, 7.),
      # Atrophy: subarachnoid space, sulci widen and cortex thins with age.
      csf_mm=(0.8 + 0.04 * old) * jnp.exp(0.2 * n[12]),
      sulcus_mm=(0.5 + 0.025 * old) * jnp.exp(0.2 * n[13]),
      cortex_mm=(3. - 0.006 * old) * jnp.exp(0.05 * n[14]),
      sulcus_depth_mm=jnp.asarray(14., jnp.float32),
      fold_k=k[:f], fold_phase=phase[:f], depth_k=k[f:d], depth_phase=phase[f:d],
      # Ventricular volume roughly doubles from 20 to 80 years (volume ~ scale^1.75).
      ventricle_scale=jnp.exp(0.008 * old + 0.12 * n[15]),
      frontal_sinus=(flags[0] < 0.8).astype(jnp.float32),
      mastoid_air=(flags[1] < 0.8).astype(jnp.float32))


@jax.jit
def scan_range_mm(subject: Subject) -> tuple[jax.Array, jax.Array]:
  """(z_lo, z_hi): ~10 mm below the foramen magnum to a few mm above the vertex."""
  pf = _surface_points(PF_A, PF_C)
  brain = jnp.concatenate([_surface_points(A_REF), pf])
  brain = jnp.where(brain[:, 2:] < Z_FM, brain.at[:, 2].set(Z_FM), brain)
  z_lo = jnp.min(_to_patient(subject, brain)[:, 2]) - 10.
  z_hi = jnp.max(_to_patient(subject, _surface_points(np.add(A_REF, 14.)))[:, 2]) + 2.
  return z_lo, z_hi


def _radial(q, axes, centre=(0., 0., 0.)):
  """Approximate signed distance (mm) to an ellipsoid, measured along the ray to its centre."""
  p = [q[..., i] - centre[i] for i in range(3)]
  r = jnp.sqrt(p[0] ** 2 + p[1] ** 2 + p[2] ** 2 + 1e-6)
  s = jnp.sqrt(sum((p[i] / axes[i]) ** 2 for i in range(3)) + 1e-9)
  return r - r / s


def _inside(x, y, z, centre, axes, yaw=0., pitch=0.):
  """Ellipsoid membership after rotating by yaw (about z) then pitch (about x'), degrees."""
  cy, sy = np.cos(np.deg2rad(yaw)), np.sin(np.deg2rad(yaw))
  cp, sp = np.cos(np.deg2rad(pitch)), np.sin(np.deg2rad(pitch))
  dx, dy, dz = x - centre[0], y - centre[1], z - centre[2]
  u, v = cy * dx + sy * dy, -sy * dx + cy * dy
  v, w = cp * v + sp * dz, -sp * v + cp * dz
  return (u / axes[0]) ** 2 + (v / axes[1]) ** 2 + (w / axes[2]) ** 2 < 1.


def _tentorium(x_abs, y):
  """z of the tentorium: highest at the incisura, sloping down to back and sides."""
  return -14. - 0.3 * jax.nn.relu(y - 10.) - 0.004 * x_abs ** 2


def _cavity(x, x_abs, y, z):
  """Signed distance-like value to the inner table (negative inside), and its parts."""
  # Orbital roofs dome up laterally, the cribriform plate dips at the midline.
  front = -29. + 7. * jnp.exp(-((x_abs - 26.) / 13.) ** 2) - 4. * jnp.exp(-(x_abs / 7.) ** 2)
  front += 0.15 * (y + 38.)
  anterior = jax.nn.sigmoid((-38. - y) / 4.)
  # The tentorium is the floor only where the posterior fossa reaches up to it; this
  # leaves the notch open for the midbrain and puts the petrous ridges where they meet.
  h = 1. - (x_abs / PF_A[0]) ** 2 - ((y - PF_C[1]) / PF_A[1]) ** 2
  fossa_top = PF_C[2] + PF_A[2] * jnp.sqrt(jnp.maximum(h, 1e-6)) - 99. * (h <= 0.)
  posterior = jax.nn.sigmoid(fossa_top - _tentorium(x_abs, y) - 2.)
  # Middle fossa: a bowl under the temporal lobes; sella and clivus medially.
  bowl = jnp.minimum(-52. + 0.008 * (y + 10.) ** 2 + 0.008 * (x_abs - 36.) ** 2, -30.)
  middle = -36. + (bowl + 36.) * jax.nn.sigmoid((x_abs - 18.) / 3.)
  floor = _tentorium(x_abs, y) * posterior + middle * (1. - posterior)
  floor = anterior * front + (1. - anterior) * floor
  q = jnp.stack([x, y, z], -1)
  supra = jnp.maximum(_radial(q, A_REF), floor - z)
  fossa = _radial(q, PF_A, PF_C)
  canal = jnp.maximum(jnp.sqrt((x / 9.) ** 2 + ((y - 28.) / 10.) ** 2 + 1e-6) * 9.5 - 9.5, z + 60.)
  return jnp.minimum(jnp.minimum(supra, fossa), canal), fossa


def _skull(subject, u, x_abs, y, z):
  """Skull thickness (mm) by direction `u` (unit vector from the head centre) and the
  frontal sinus weight; x_abs is |x|, for structures mirrored left-right."""
  front, back = jax.nn.relu(-u[1]) ** 2, jax.nn.relu(u[1]) ** 2
  temporal = u[0] ** 2 * jnp.exp(-((u[2] + 0.15) / 0.35) ** 2)
  # Frontal and occipital bone are thickest, squamous temporal bone thinnest (~3-4 mm).
  shape = 1. + 0.2 * front + 0.35 * back - 0.45 * temporal
  noise = _cos_field(SKULL_R0 * jnp.stack(u, -1), subject.skull_k, subject.skull_phase)
  sinus = subject.frontal_sinus * jnp.exp(-(x_abs / 13.) ** 2 - ((z + 14.) / 9.) ** 2)
  sinus *= jax.nn.sigmoid((-50. - y) / 4.)
  thickness = jnp.maximum(subject.skull_mm * shape + 0.8 * noise, 2.5) + 7. * sinus
  return thickness, temporal, sinus


def _face(hu, x, x_abs, y, z, subject):
  """Orbits, paranasal sinuses, nasopharynx and mastoids, below the cranial cavity."""
  hu = jnp.where(_inside(x_abs, y, z, (30., -58., -45.), (15., 22., 14.)), FAT, hu)
  hu = jnp.where(_inside(x_abs, y, z, (32., -70., -45.), (12., 12., 12.)), EYE, hu)
  for c, a, mirror in (((0., -66., -72.), (8., 22., 22.), False),    # nasal cavity
                       ((28., -55., -78.), (14., 17., 17.), True),    # maxillary sinus
                       ((0., -20., -52.), (10., 12., 9.), False),     # sphenoid sinus
                       ((0., -16., -90.), (13., 7., 12.), False)):    # nasopharynx
    wall = _inside(x_abs if mirror else x, y, z, c, tuple(ai + 1.5 for ai in a))  # thin bony wall
    hu = jnp.where(_inside(x_abs if mirror else x, y, z, c, a), AIR, jnp.where(wall, CORTICAL, hu))
  mastoid = _inside(x_abs, y, z, (47., 24., -58.), (11., 13., 13.))
  cells = jnp.cos(1.3 * x) + jnp.cos(1.3 * y) + jnp.cos(1.3 * z) > 0.6
  cells &= _inside(x_abs, y, z, (47., 24., -58.), (9., 11., 11.)) & (subject.mastoid_air > 0.5)
  return jnp.where(mastoid, jnp.where(cells, AIR, 1000.), hu)


def _skin_depth(d, thickness, scalp, x, y, z, mm):
  """Depth (mm) below the skin: cranium over the skull, face and neck below it."""
  cranium = thickness + scalp - d
  face = jax.nn.sigmoid((z + 105.) / 8.)
  cy = -6. * face + 14. * (1 - face)
  ax, ay = 66. * face + 52. * (1 - face), 92. * face + 58. * (1 - face)
  rho = jnp.sqrt((x / ax) ** 2 + ((y - cy) / ay) ** 2)
  lower = jnp.minimum(jnp.minimum((1. - rho) * 0.5 * (ax + ay), -22. - z), z + 240.) * mm
  return jnp.maximum(cranium, lower)


def _fissures(x, x_abs, y, z, mm, width):
  """Signed distances (mm) of the interhemispheric and Sylvian fissures, and the CC roof."""
  roof = 32. - 0.012 * y ** 2
  interhemispheric = jnp.maximum(x_abs * mm - 0.5 * width - 0.5, (roof - z) * mm)
  zr = z - (-8. + 0.15 * y)
  insula = 38. - 0.006 * (y + 2.) ** 2
  # The lateral sulcus runs out from the insula as a near-vertical sheet.
  stem = jnp.maximum(jnp.maximum(jnp.abs(y + 2. + 0.3 * (x_abs - 38.)) * mm - 0.5 * width,
                                 (insula - x_abs) * mm), (jnp.abs(zr) - 9.) * mm)
  cleft = jnp.maximum(jnp.maximum(jnp.abs(x_abs - insula) * mm - 0.5 * width,
                                  (jnp.abs(zr) - 11.) * mm),
                      (jnp.abs(y + 2.) - 20.) * mm)
  return interhemispheric, jnp.minimum(stem, cleft), roof


def _cerebrum(subject, q, d_ref, normal, depth, mm):
  """Grey/white/CSF of the folded cerebral mantle."""
  # The folding field is sampled at q moved a share b of the way out to the inner table
  # along its normal: b = 1 makes sulci exactly perpendicular to the surface (straight
  # spokes in axial slices), b < 1 lets them bend with depth.
  p = q - BEND * d_ref[..., None] * normal
  f, g = _cos_field(p, subject.fold_k, subject.fold_phase, True)
  along = sum(g[i] * normal[..., i] for i in range(3))
  slope = jnp.sqrt(sum((g[i] - BEND * along * normal[..., i]) ** 2 for i in range(3)))
  # Distance to the sulcal mid-surface: field value over its slope. The slope floor keeps
  # flat stretches of the field (near its extrema) out of the sulci.
  delta = jnp.abs(f) / jnp.maximum(slope, 0.25) * mm
  sulc_depth = subject.sulcus_depth_mm + 4. * _cos_field(p, subject.depth_k, subject.depth_phase)
  half, cortex = 0.5 * subject.sulcus_mm, subject.cortex_mm
  x, y, z = q[..., 0], q[..., 1], q[..., 2]
  inter, sylvian, roof = _fissures(x, jnp.abs(x), y, z, mm, subject.sulcus_mm + 1.)
  fissure = jnp.minimum(inter, sylvian)
  csf = ((delta < half) & (depth < sulc_depth)) | (fissure < 0.)
  grey = (depth < cortex) | ((delta < half + cortex) & (depth < sulc_depth + cortex))
  grey |= fissure < cortex
  hu = jnp.where(csf, CSF, jnp.where(grey, GREY, WHITE))
  return jnp.where((inter < 0.) & (jnp.abs(x) * mm < 0.6) & (z > roof + 4.), FALX, hu)


def _cerebellum(x, y, z, depth, sulcus_mm):
  """Cortex with concentric folia around the fourth ventricle, white matter core."""
  rho = jnp.sqrt(x ** 2 + (y - 14.) ** 2 + (z + 44.) ** 2)
  rho += 1.5 * jnp.cos(0.23 * x + 0.11 * z) * jnp.cos(0.17 * y)  # break the perfect rings
  folium = jnp.abs(jnp.mod(rho, 5.) - 2.5) > 2.5 - (0.2 + 0.25 * sulcus_mm)
  hu = jnp.where(depth < 7., 38., 31.)
  hu = jnp.where(folium & (depth < 5.), CSF, hu)
  # Vallecula / cisterna magna between the hemispheres, behind the vermis.
  return jnp.where((jnp.abs(x) < 1. + 0.5 * sulcus_mm) & (y > 50.), CSF, hu)


def _deep(hu, x, x_abs, y, z, ventricle_scale):
  """Basal cisterns, deep grey nuclei, ventricles and brainstem (reference frame)."""
  hu = jnp.where(_inside(x, y, z, (0., -8., -26.), (11., 10., 6.)), CSF, hu)
  caudate = _inside(x_abs, y, z, (15., -15., 8.), (5., 10., 8.))
  nuclei = (caudate | _inside(x_abs, y, z, (24., -2., -2.), (6., 15., 10.), yaw=10.)
            | _inside(x_abs, y, z, (9., 12., 0.), (8., 14., 9.)))
  hu = jnp.where(nuclei, DEEP_GREY, hu)
  s = (ventricle_scale, ventricle_scale ** 0.25, ventricle_scale ** 0.5)  # ventricles widen more than they lengthen
  lateral = False
  for c, a, yaw, pitch in (((10., -20., 12.), (5., 15., 8.), 15., 0.),   # frontal horn
                           ((13., 8., 18.), (5., 20., 6.), -8., 0.),     # body
                           ((20., 32., 10.), (8., 12., 9.), -30., 0.),   # atrium
                           ((20., 48., 5.), (4., 12., 5.), 10., 0.),     # occipital horn
                           ((28., 4., -16.), (3., 16., 4.), 10., 25.)):  # temporal horn
    lateral |= _inside(x_abs, y, z, c, tuple(ai * si for ai, si in zip(a, s)), yaw, pitch)
  third = _inside(x, y, z, (0., 4., -4.), (1.2 * ventricle_scale ** 1.5, 13., 10.))
  hu = jnp.where((lateral & ~caudate & (x_abs > 0.8)) | third, CSF, hu)
  low = jax.nn.sigmoid((z + 68.) / 4.)  # medulla and cord are narrower than the pons
  stem = (x / (7. + 5. * low)) ** 2 + ((y - 14.) / (6. + 4. * low)) ** 2 < 1.
  cistern = (x / (9. + 5. * low)) ** 2 + ((y - 13.) / (8. + 5. * low)) ** 2 < 1.
  hu = jnp.where(cistern & (y < 16.) & (z < -12.), CSF, hu)  # prepontine, ambient
  hu = jnp.where(stem & (z < -12.), BRAINSTEM, hu)
  fourth = _inside(x, y, z, (0., 25., -46.), (5. * ventricle_scale ** 0.5, 3.5, 7.))
  return jnp.where(fourth, CSF, hu)


def head_hu(subject: Subject, points_mm: jax.Array) -> tuple[jax.Array, jax.Array]:
  """True HU and brain (intracranial) mask at patient LPS points [..., 3] in mm."""
  p = jnp.asarray(points_mm, jnp.float32)
  q = ((p - subject.centre) @ subject.rotation) / subject.scale   # head-frame mm
  x, y, z = q[..., 0], q[..., 1], q[..., 2]
  x_abs = jnp.abs(x)
  mm = jnp.prod(subject.scale) ** (1. / 3.)  # reference mm -> subject mm
  u = q / jnp.maximum(jnp.linalg.norm(q, axis=-1, keepdims=True), 1e-3)  # unit direction
  # Forward-mode derivatives of the cavity give the inner-table normal at every point.
  d_ref, tangent, fossa = jax.linearize(lambda *v: _cavity(v[0], jnp.abs(v[0]), *v[1:]),
                                        x, y, z, has_aux=True)
  normal = jnp.stack([tangent(*(jnp.full_like(x, float(i == j)) for j in range(3)))
                      for i in range(3)], -1)
  normal /= jnp.maximum(jnp.linalg.norm(normal, axis=-1, keepdims=True), 1e-6)
  d = d_ref * mm
  thickness, temporal, sinus = _skull(subject, (u[..., 0], u[..., 1], u[..., 2]), x_abs, y, z)
  skin = _skin_depth(d, thickness, subject.scalp_mm + 7. * temporal, x, y, z, mm)
  hu = jnp.where(skin < 0., AIR, jnp.where((skin > 1.5) & (skin < 3.), FAT, SOFT))
  hu = jnp.where(skin > 3., _face(hu, x, x_abs, y, z, subject), hu)

  table = (d < TABLE) | (d > thickness - TABLE)
  # The sinus keeps a 2.5 mm posterior wall so the cranial vault stays closed.
  bone = jnp.where(table, CORTICAL, jnp.where((sinus > 0.35) & (d > 2.5), AIR, DIPLOE))
  hu = jnp.where((d >= 0.) & (d < thickness), bone, hu)
  # Petrous ridges: dense bone wedged between the middle and posterior fossae.
  petrous = _inside(x_abs, y, z, (28., 9., -51.), (7., 22., 7.), yaw=-51., pitch=-14.)
  hu = jnp.where(petrous & (d >= 0.), PETROUS, hu)

  depth = -d - subject.csf_mm
  cerebellum = (fossa < 0.) & (z < _tentorium(x_abs, y)) & (y > 6.)
  brain_hu = jnp.where(cerebellum, _cerebellum(x, y, z, depth, subject.sulcus_mm),
                       _cerebrum(subject, q, d_ref, normal, depth, mm))
  inside = jnp.where(depth >= 0., brain_hu, CSF)
  inside = _deep(inside, x, x_abs, y, z, subject.ventricle_scale)
  hu = jnp.where(d < 0., inside, hu)
  return hu.astype(jnp.float32), (d < 0.) & (z > Z_FM)
