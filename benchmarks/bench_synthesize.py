"""Synthesis throughput: studies per second with DICOM write, default and paper sizes.

  python -m benchmarks.bench_synthesize [--studies=4] [--paper_studies=1]

Each size is timed after one warm-up study (compilation excluded) and split into
rendering (anatomy + scanner) and writing (DICOM encode + disk). Ratios are against
the default-size study measured in the same run. Last, the whole-cohort wall time
(process start and compilation included) with 1 and 2 worker processes.
"""
import tempfile
import time
from pathlib import Path

import jax
from absl import app, flags

from configs import default, paper
from scanbias_jax import keys
from scanbias_jax.synth import cohort, export

_STUDIES = flags.DEFINE_integer("studies", 4, "Timed studies at the default size.")
_PAPER_STUDIES = flags.DEFINE_integer("paper_studies", 1, "Timed studies at paper size.")
_POOL_STUDIES = flags.DEFINE_integer("pool_studies", 8,
                                     "Studies for the whole-cohort wall time, 1 vs 2 workers.")


def measure(synth, count: int) -> dict:
  key = keys.stream(keys.root(0), "bench")
  synth.num_studies = count + 1
  plans = cohort.plan_cohort(key, synth)
  render = write = 0.0
  pixels = 0
  with tempfile.TemporaryDirectory() as tmp:
    for i, plan in enumerate(plans):
      t0 = time.perf_counter()
      rendered = cohort.render_study(key, plan, synth)
      t1 = time.perf_counter()
      export.write_study(Path(tmp), plan, rendered, synth)
      t2 = time.perf_counter()
      if i:  # the first study compiles
        render += t1 - t0
        write += t2 - t1
        pixels += sum(s.acquired.stored.size for s in rendered)
  total = render + write
  return dict(studies_per_s=count / total, s_per_study=total / count,
              render_share=render / total, mpixels_per_s=pixels / total / 1e6)


def cohort_wall(synth, count: int, workers: int) -> float:
  """Wall time of write_cohort (spawn, compilation and all) for `count` studies."""
  synth.num_studies, synth.workers = count, workers
  with tempfile.TemporaryDirectory() as tmp:
    start = time.perf_counter()
    export.write_cohort(keys.stream(keys.root(0), "bench"), synth, Path(tmp))
    return time.perf_counter() - start


def main(argv):
  del argv
  print(f"devices: {jax.devices()}")
  rows = {"default (128^2)": measure(default.get_config().synth, _STUDIES.value),
          "paper (512^2)": measure(paper.get_config().synth, _PAPER_STUDIES.value)}
  base = rows["default (128^2)"]["s_per_study"]
  for name, r in rows.items():
    print(f"{name:16s} {r['studies_per_s']:.3f} studies/s  {r['s_per_study']:.2f} s/study "
          f"(x{r['s_per_study'] / base:.1f} of default)  render {r['render_share']:.0%}  "
          f"{r['mpixels_per_s']:.2f} Mpixel/s written")
  n = _POOL_STUDIES.value
  serial = cohort_wall(default.get_config().synth, n, 1)
  parallel = cohort_wall(default.get_config().synth, n, 2)
  print(f"write_cohort, {n} default studies: 1 worker {serial:.1f} s, 2 workers "
        f"{parallel:.1f} s (x{serial / parallel:.2f})")


if __name__ == "__main__":
  app.run(main)
