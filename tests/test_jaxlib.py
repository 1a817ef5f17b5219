"""The pinned jaxlib computes right: jax-ml/jax#39103's reproducer (a vmapped
matrix-vector product followed by a reduction, miscompiled on CPU by jaxlib 0.10.2:
jit 1065369600 against eager 1073741824 in float32) fails on a jaxlib that has it."""
import jax.numpy as jnp

from benchmarks import jit_numerics


def test_vmapped_matvec_then_reduction_compiles_right():
  eager, jitted = jit_numerics.reproducer(jnp.float32, 32_769)
  assert eager == 32_768.0 ** 2
  assert jitted == eager, f"this jaxlib miscompiles jax-ml/jax#39103: jit {jitted:.0f}"


def test_the_projects_reductions_match_float64_references():
  import numpy as np  # pylint: disable=import-outside-toplevel
  for name, (value, reference) in jit_numerics.programs(np.random.default_rng(0)).items():
    np.testing.assert_allclose(np.asarray(value, np.float64), reference, rtol=2e-4, atol=2e-4,
                               err_msg=name)
