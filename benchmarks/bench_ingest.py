"""Ingest throughput (studies/s) against a naive single-process pydicom baseline.

  python -m benchmarks.bench_ingest [--studies=16] [--dicom_root=DIR] [--workers=2]

Writes the default synthetic cohort (configs/default.py, `--studies` of them) unless
--dicom_root is given, then times, in the same run and on the same files:
  naive:  one process; read every file whole with pydicom, group by series, pick the
          series by description/thickness, sort by InstanceNumber, rescale, zoom to
          256 x 256, write NIfTI (what a quick script does; no tilt, gap or
          padding handling, no resume);
  ingest: scanbias_jax.cohort.ingest.ingest_tree at 1 worker and at --workers.
Each timing starts with a cold output directory; the OS file cache is warm for all.
"""
import collections
import os
import resource
import tempfile
import time
from pathlib import Path

import nibabel as nib
import numpy as np
import pydicom
from absl import app, flags
from scipy import ndimage

from configs import default
from scanbias_jax.cohort import ingest  # no JAX here: spawned workers re-import this module

_STUDIES = flags.DEFINE_integer("studies", 16, "Synthetic studies to write and ingest.")
_DICOM_ROOT = flags.DEFINE_string("dicom_root", None, "Use this tree instead.")
_WORKERS = flags.DEFINE_integer("workers", 2, "Processes for the parallel run.")


def naive_ingest(dicom_root, out_dir) -> int:
  studies = collections.defaultdict(lambda: collections.defaultdict(list))
  for path in ingest.list_files(dicom_root):
    try:
      ds = pydicom.dcmread(path)
    except Exception:  # pylint: disable=broad-except
      continue
    studies[ds.StudyInstanceUID][ds.SeriesInstanceUID].append(ds)
  for index, series in enumerate(studies.values()):
    axial = [s for s in series.values() if "LOCALIZER" not in s[0].ImageType]
    five = [s for s in axial if "5" in s[0].SeriesDescription.split("mm")[0][-3:]]
    chosen = five[0] if five else min(axial, key=lambda s: float(s[0].SliceThickness))
    chosen.sort(key=lambda ds: int(ds.InstanceNumber))
    hu = np.stack([ds.pixel_array * float(ds.RescaleSlope) + float(ds.RescaleIntercept)
                   for ds in chosen], axis=-1)
    hu = ndimage.zoom(hu, (256 / hu.shape[0], 256 / hu.shape[1], 1), order=1)
    nib.save(nib.Nifti1Image(hu.astype(np.int16), np.eye(4)),
             os.path.join(out_dir, f"{index}.nii.gz"))
  return len(studies)


def _cpu_seconds():
  return sum(resource.getrusage(who).ru_utime + resource.getrusage(who).ru_stime
             for who in (resource.RUSAGE_SELF, resource.RUSAGE_CHILDREN))


def timed(function, *args):
  """(result, wall seconds, CPU seconds of this process and its finished children)."""
  start, cpu = time.perf_counter(), _cpu_seconds()
  result = function(*args)
  return result, time.perf_counter() - start, _cpu_seconds() - cpu


def main(argv):
  del argv
  config = default.get_config()
  config.ingest.secret = "benchmark"
  with tempfile.TemporaryDirectory() as tmp:
    root = _DICOM_ROOT.value
    if root is None:
      from scanbias_jax import keys  # pylint: disable=g-import-not-at-top
      from scanbias_jax.synth import export  # pylint: disable=g-import-not-at-top
      config.synth.num_studies = _STUDIES.value
      export.write_cohort(keys.stream(keys.root(config.seed), "synth"), config.synth,
                          Path(tmp) / "synth")
      root = str(Path(tmp) / "synth" / "dicom")
    files = len(ingest.list_files(root))
    os.makedirs(Path(tmp) / "naive")
    count, naive_s, naive_cpu = timed(naive_ingest, root, str(Path(tmp) / "naive"))
    results = {"naive (1 process)": (naive_s, naive_cpu)}
    for workers in sorted({1, _WORKERS.value}):
      config.ingest.workers = workers
      summary, seconds, cpu = timed(ingest.ingest_tree, root,
                                    str(Path(tmp) / f"ours{workers}"), config)
      assert summary["studies_ok"] == count, summary
      results[f"ingest ({workers} worker{'s' * (workers > 1)})"] = (seconds, cpu)
  print(f"{count} studies, {files} files, matrix {config.synth.matrix}, grid paper "
        f"({config.ingest.paper_grid.in_plane}^2 x {config.ingest.paper_grid.n_slices})")
  print(f"load average (1 min) after the runs: {os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs")
  for name, (seconds, cpu) in results.items():
    print(f"{name:<22} {seconds:7.2f} s wall {cpu:7.2f} s CPU  {count / seconds:6.2f} studies/s"
          f"  ratio vs naive {naive_s / seconds:5.2f}x")


if __name__ == "__main__":
  app.run(main)
