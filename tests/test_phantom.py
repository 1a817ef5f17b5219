"""Physical invariants of the analytic head phantom."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy import ndimage

from scanbias_jax import keys
from scanbias_jax.synth import phantom

GRID_MM = 2.
_head_hu = jax.jit(phantom.head_hu)


def _hu(subject, pts, with_brain=False):
  """HU of any small batch of points, padded to one shape so that jit compiles once."""
  pts = np.asarray(pts, np.float32)
  flat = pts.reshape(-1, 3)
  n = max(4096, 1 << (len(flat) - 1).bit_length())
  out = _head_hu(subject, jnp.asarray(np.pad(flat, ((0, n - len(flat)), (0, 0)))))
  hu, brain = (np.asarray(a)[:len(flat)].reshape(pts.shape[:-1]) for a in out)
  return (hu, brain) if with_brain else hu


def _subject(seed=0, age=55., female=0):
  return phantom.draw_subject(keys.item(keys.root(seed), 0), age, female)


def _local(subject, q):
  """Patient coordinates of reference-frame points q[..., 3] (mm, head frame)."""
  q = jnp.asarray(q, jnp.float32)
  return (q * subject.scale) @ subject.rotation.T + subject.centre


def _volume(subject):
  """HU and mask on a 2 mm grid over the central 220 mm and the whole brain."""
  g = np.arange(-110., 110., GRID_MM) + 1.
  z = np.arange(-100., 100., GRID_MM) + 1. + np.round(float(subject.centre[2]))
  pts = np.stack(np.meshgrid(g, g, z, indexing="ij"), -1)
  hu, brain = _head_hu(subject, jnp.asarray(pts, jnp.float32))
  return np.asarray(hu), np.asarray(brain), (g, z)


@pytest.fixture(scope="module")
def volumes():
  return {age: _volume(_subject(age=age)) for age in (25., 50., 80.)}


def test_same_key_same_subject_and_bits():
  a, b = _subject(), _subject()
  for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b)):
    np.testing.assert_array_equal(x, y)
  pts = jnp.asarray(np.random.default_rng(0).uniform(-120, 120, (4, 32, 32, 3)), jnp.float32)
  np.testing.assert_array_equal(_hu(a, pts), _hu(b, pts))


def test_different_keys_different_subjects():
  a, b = _subject(0), _subject(1)
  assert not np.allclose(a.scale, b.scale)
  assert not np.allclose(a.fold_k, b.fold_k)
  pts = _local(a, [[x, 0., 35.] for x in np.linspace(-60, 60, 121)])
  assert np.any(_hu(a, pts) != _hu(b, pts))


def test_one_trace_for_many_subjects_and_batched_planes():
  traces = []

  def hu(subject, pts):
    traces.append(1)
    return phantom.head_hu(subject, pts)

  f = jax.jit(hu)
  pts = jnp.zeros((5, 16, 16, 3), jnp.float32)
  for seed in range(3):
    out, brain = f(_subject(seed, age=20. + 25 * seed, female=seed % 2), pts)
  assert len(traces) == 1
  assert out.shape == brain.shape == (5, 16, 16) and out.dtype == jnp.float32
  batch = jax.vmap(phantom.draw_subject)(jax.random.split(keys.root(0), 4),
                                         jnp.array([20., 40., 60., 80.]), jnp.array([0, 1, 0, 1]))
  assert batch.scale.shape == (4, 3)


def test_tissue_at_known_points():
  s = _subject()
  pts = _local(s, [[20., 0., 30.],                   # centrum semiovale
                   [13., 8., 18.]])                  # body of the lateral ventricle
  hu, brain = _hu(s, pts, with_brain=True)
  assert 20. <= hu[0] <= 50. and brain[0]
  assert 0. <= hu[1] <= 15. and brain[1]
  far = _hu(s, [[114., 0., 0.], [0., 0., float(s.centre[2]) + 200.]])
  np.testing.assert_array_equal(far, phantom.AIR)


@pytest.mark.parametrize("direction", [(0, 0, 1), (1, 0, .3), (-1, 0, .3), (0, -1, .3),
                                       (0, 1, .3)])
def test_ray_crosses_csf_skull_scalp_air(direction):
  """Out from the head centre: brain, then CSF, a 2.5-12 mm skull, soft tissue, air."""
  s = _subject(seed=2)
  u = np.asarray(direction, np.float32) / np.linalg.norm(direction)
  t = np.arange(0., 140., 0.1, dtype=np.float32)
  q = np.asarray([0., 0., 20.], np.float32) + t[:, None] * u
  hu = _hu(s, _local(s, q))
  bone = np.flatnonzero(hu > 400.)
  assert bone.size and np.all(np.diff(bone) == 1), "one contiguous skull segment"
  thickness = bone.size * 0.1 * float(jnp.prod(s.scale) ** (1 / 3))
  assert 2.5 <= thickness <= 12.
  assert np.any(hu[:bone[0]] < 15.)                  # subarachnoid CSF under the skull
  assert np.all(hu[bone[-1] + 1:bone[-1] + 10] < 100.) and np.any(hu[bone[-1] + 1:] > 30.)
  assert hu[-1] == phantom.AIR


def test_brain_mask_is_intracranial(volumes):
  hu, brain, _ = volumes[50.]
  litres = brain.sum() * GRID_MM ** 3 / 1e6
  assert 1.1 <= litres <= 1.7
  assert np.all(hu[brain] < 100.), "no bone inside the brain mask"
  assert ndimage.label(brain)[1] == 1
  # Classical skull stripping: the mask is enclosed by bone in every axial slice
  # above the skull base, so filling the holes of the bone mask recovers it.
  for k in range(brain.shape[2]):
    if brain[..., k].sum() > 2000:
      filled = ndimage.binary_fill_holes(hu[..., k] > 300.) & (hu[..., k] < 300.)
      assert (filled & brain[..., k]).sum() >= 0.97 * brain[..., k].sum()


def test_csf_and_ventricles_grow_with_age(volumes):
  total, central = [], []
  for age in (25., 50., 80.):
    hu, brain, _ = volumes[age]
    csf = brain & (hu < 15.)
    total.append(csf.sum())
    g, _ = volumes[age][2]
    box = (np.abs(g)[:, None] < 40.) & (np.abs(g)[None, :] < 50.)  # the ventricles
    central.append(csf[box].sum())
  assert total[0] < total[1] < total[2]
  assert central[0] < central[1] < central[2]
  assert 1.5 < central[2] / central[0]


def test_scan_range_covers_brain(volumes):
  s = _subject(age=50.)
  z_lo, z_hi = (float(v) for v in phantom.scan_range_mm(s))
  _, brain, (_, z) = volumes[50.]
  zb = z[np.flatnonzero(brain.any(axis=(0, 1)))]
  assert z_lo < zb.min() - 3. and zb.max() + 3. < z_hi
  assert 115. <= zb.max() - zb.min() <= 160.
  assert z_hi - z_lo <= 200.


def test_head_fits_230mm_circle():
  ks = jax.random.split(keys.root(7), 64)
  ages = jnp.linspace(18., 90., 64)
  batch = jax.vmap(phantom.draw_subject)(ks, ages, jnp.arange(64) % 2)
  # The largest heads pushed furthest off-centre are the hard cases.
  worst = np.argsort(-np.asarray(jnp.linalg.norm(batch.centre[:, :2], axis=-1)
                                 + 100. * batch.scale.max(axis=-1)))[:4]
  angle = np.linspace(0., 2 * np.pi, 360, endpoint=False)
  ring = np.stack([115. * np.cos(angle), 115. * np.sin(angle)], -1)
  for i in worst:
    s = jax.tree.map(lambda a: a[i], batch)
    z_lo, z_hi = (float(v) for v in phantom.scan_range_mm(s))
    z = np.linspace(z_lo, z_hi, 60)
    pts = np.concatenate([np.broadcast_to(ring, (60, 360, 2)),
                          np.broadcast_to(z[:, None, None], (60, 360, 1))], -1)
    hu = _hu(s, pts)
    assert np.all(hu == phantom.AIR)
