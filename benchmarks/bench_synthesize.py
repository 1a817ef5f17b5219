"""Synthesis throughput, against the pre-atlas implementation measured in the same run.

  python -m benchmarks.bench_synthesize [--studies=3] [--paper_studies=1]
      [--cohort_studies=20] [--baseline=c2d2add]

Each size is timed after one warm-up study (compilation excluded) and split into
rendering (anatomy + scanner) and writing (DICOM encode + disk), on one process
pinned to one core, each study rendered alone. Two last lines time the default
cohort as `make study` writes it (`export.write_cohort`: a traveling head's anatomy
sampled once for its acquisitions; with two cores or more, a thread writing study i
while study i + 1 renders): on one core against the baseline's own default cohort
(one patient a study, no traveling heads) at the same 256^2, and on every core.
The baseline is the package at git revision --baseline (the analytic phantom,
sampled per series at full resolution), extracted to a temporary folder and run
in a subprocess with the same configs' sizes; the ratio baseline / now is printed.
"""
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from absl import app, flags

_STUDIES = flags.DEFINE_integer("studies", 3, "Timed studies at the default size.")
_PAPER_STUDIES = flags.DEFINE_integer("paper_studies", 1, "Timed studies at paper size.")
_COHORT = flags.DEFINE_integer("cohort_studies", 20, "Timed studies of the default cohort.")
_BASELINE = flags.DEFINE_string("baseline", "c2d2add", "git revision of the baseline.")
_WORKER = flags.DEFINE_string("worker", "", "internal: run one measurement, print JSON")

ROOT = Path(__file__).resolve().parents[1]
SIZES = {"default (256^2)": ("default", 256), "paper (512^2)": ("paper", 512)}


def measure(config_name: str, matrix: int, count: int) -> dict:
  import importlib  # pylint: disable=g-import-not-at-top
  from scanbias_jax import keys  # pylint: disable=g-import-not-at-top
  from scanbias_jax.synth import cohort, export  # pylint: disable=g-import-not-at-top
  synth = importlib.import_module(f"configs.{config_name}").get_config().synth
  synth.matrix, synth.num_studies, synth.workers = matrix, count + 1, 1
  key = keys.stream(keys.root(0), "bench")
  render = write = 0.0
  with tempfile.TemporaryDirectory() as tmp:
    for i, plan in enumerate(cohort.plan_cohort(key, synth)):
      t0 = time.perf_counter()
      rendered = cohort.render_study(key, plan, synth)
      t1 = time.perf_counter()
      export.write_study(Path(tmp), plan, rendered, synth)
      t2 = time.perf_counter()
      if i:  # the first study compiles
        render += t1 - t0
        write += t2 - t1
  peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
  return dict(s_per_study=(render + write) / count, render_share=render / (render + write),
              peak_rss_mb=peak_mb)


def measure_cohort(count: int, matrix: int = 0, workers: int = 0) -> dict:
  """Seconds a study of the default cohort through `export.write_cohort`, after a
  two-study warm-up (compilation) of the same config; `matrix`, `workers`: overrides."""
  from configs import default  # pylint: disable=g-import-not-at-top
  from scanbias_jax import keys  # pylint: disable=g-import-not-at-top
  from scanbias_jax.synth import export  # pylint: disable=g-import-not-at-top
  key = keys.stream(keys.root(0), "bench")

  def synth_of(studies):
    synth = default.get_config().synth
    synth.num_studies = studies
    if matrix:
      synth.matrix = matrix
    if workers:
      synth.workers = workers
    return synth

  with tempfile.TemporaryDirectory() as tmp:
    export.write_cohort(key, synth_of(2), Path(tmp) / "warm")
    synth = synth_of(count)
    started = time.perf_counter()
    export.write_cohort(key, synth, Path(tmp) / "cohort")
    seconds = time.perf_counter() - started
  return dict(s_per_study=seconds / count,
              peak_rss_mb=resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024)


def run_worker(root: Path, config_name: str, matrix: int, count: int,
               one_core: bool = True, call: str = "") -> dict:
  env = dict(os.environ, PYTHONPATH=str(root), JAX_PLATFORMS="cpu")
  if one_core:
    env["XLA_FLAGS"] = "--xla_cpu_multi_thread_eigen=false"
  call = call or f"measure({config_name!r}, {matrix}, {count})"
  script = (f"import json, sys; sys.path.insert(0, {str(ROOT)!r}); "
            f"from benchmarks.bench_synthesize import measure, measure_cohort; "
            f"print(json.dumps({call}))")
  # taskset: one core, as the issue asks; the baseline's package shadows ours first.
  pin = ["taskset", "-c", "0"] if one_core else []
  command = pin + [sys.executable, "-c",
             script.replace(f"sys.path.insert(0, {str(ROOT)!r})",
                            f"sys.path.insert(0, {str(ROOT)!r}); sys.path.insert(0, {str(root)!r})")]
  out = subprocess.run(command, env=env, capture_output=True, text=True, cwd=root)
  if out.returncode:
    raise RuntimeError(out.stderr[-2000:])
  return json.loads(out.stdout.strip().splitlines()[-1])


def _against(now: dict, old: dict) -> str:
  return (f"peak RSS {now['peak_rss_mb']:.0f} MB)  baseline {_BASELINE.value} "
          f"{old['s_per_study']:6.2f} s/study  ratio x{old['s_per_study'] / now['s_per_study']:.1f}")


def main(argv):
  del argv
  with tempfile.TemporaryDirectory() as tmp:
    base = Path(tmp) / "baseline"
    base.mkdir()
    archive = subprocess.run(["git", "-C", str(ROOT), "archive", _BASELINE.value,
                              "scanbias_jax", "configs"], capture_output=True, check=True)
    subprocess.run(["tar", "-x", "-C", str(base)], input=archive.stdout, check=True)
    for name, (config_name, matrix) in SIZES.items():
      count = _STUDIES.value if config_name == "default" else _PAPER_STUDIES.value
      now = run_worker(ROOT, config_name, matrix, count)
      old = run_worker(base, config_name, matrix, count)
      print(f"{name:16s} now {now['s_per_study']:6.2f} s/study (render "
            f"{now['render_share']:.0%}, {_against(now, old)}", flush=True)
    # The default cohort as each version's configs/default.py writes it (the baseline's
    # without traveling heads, one process, at today's 256^2), one core.
    call = f"measure_cohort({_COHORT.value}, matrix=256, workers=1)"
    now = run_worker(ROOT, "default", 256, 0, True, call)
    old = run_worker(base, "default", 256, 0, True, call)
    print(f"default cohort ({_COHORT.value} studies, write_cohort, one core) now "
          f"{now['s_per_study']:6.2f} s/study ({_against(now, old)}", flush=True)
  now = run_worker(ROOT, "default", 256, 0, False, f"measure_cohort({_COHORT.value})")
  print(f"default cohort ({_COHORT.value} studies, write_cohort, {os.cpu_count()} cores) now "
        f"{now['s_per_study']:6.2f} s/study (peak RSS {now['peak_rss_mb']:.0f} MB)", flush=True)


if __name__ == "__main__":
  app.run(main)
