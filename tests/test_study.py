"""The smoke study end to end: every stage, every table cell and figure, same bits twice.

The golden file pins the smoke study's key numbers; regenerate it only on purpose:
  python -m tests.golden --regenerate     (and say why in the commit message)
"""
import contextlib
import errno
import fcntl
import json
import math
import re
import shutil
import subprocess
import sys
import warnings
from pathlib import Path

import pydicom
import pytest

from configs import smoke
from scanbias_jax import files, processes
from scanbias_jax.experiments import study
import golden
import kill

STAGES = ("synth", "cohort", "prepared")


@pytest.fixture(scope="module")
def smoke_run(tmp_path_factory):
  """The smoke study, run once for the whole test run: pytest-xdist tears a module
  fixture down whenever a worker runs dry, and both workers take tests of this module,
  so it lives under the run's shared temporary root, built under a lock by whichever
  worker comes first. Tests copy it before they change anything."""
  workdir = tmp_path_factory.getbasetemp().parent / "smoke_study"
  with open(f"{workdir}.lock", "w") as lock:
    fcntl.flock(lock, fcntl.LOCK_EX)
    if not (workdir / "timings.json").exists():
      said = []
      timings = study.run(smoke.get_config(), workdir, say=lambda *line: said.append(line))
      (workdir / "console.json").write_text(json.dumps(said))
      (workdir / "timings.json").write_text(json.dumps(timings))
  return workdir, json.loads((workdir / "timings.json").read_text())


def _numbers(text: str):
  return re.findall(r"(?<![\w.])-?\d+\.\d+(?![\w.])", text)


def test_every_stage_leaves_its_outputs(smoke_run):
  workdir, timings = smoke_run
  assert list(timings) == ["synthesize", "ingest", "prepare", "train", "report"]
  for stage in STAGES:
    assert (workdir / stage / ".done").exists()
  for name in ("report.md", "report.html", "results.json", "figures/samples.png",
               "figures/roc_spheres.png", "figures/roc_name_manufacturer.png"):
    assert (workdir / name).stat().st_size > 0, name


def test_single_group_sphere_models_are_scored_on_the_planted_harm(smoke_run):
  workdir, _ = smoke_run
  results = json.loads((workdir / "results.json").read_text())
  for name, conditions in results["spheres"].items():
    if name not in ("easy", "medium", "hard"):   # beside: single groups, no planted control
      assert set(conditions) == set(results["groups"]) and name.endswith("_painted")
      assert all("planted" not in c and c["transfer"] for c in conditions.values())
      assert {c["test_set"]["insertion"] for c in conditions.values()} == {"painted"}
      continue
    assert "planted" not in conditions["mixed"]
    assert conditions["mixed"]["test_set"]["insertion"] == "acquired"
    for group in results["groups"]:
      others = set(results["groups"]) - {group}
      assert set(conditions[group]["planted"]) == others
      assert set(conditions[group]["planted"]) == set(conditions[group]["transfer"])
      for other in others:
        entry = conditions[group]["planted"][other]["accuracy"]
        assert {"difference", "ci", "p_value", "mdd"} <= set(entry)
  assert "Planted harm, same comparison" in (workdir / "report.md").read_text()


def _data_stages_of(workdir, into):
  """A copy of a finished study's synth/ and cohort/, to train again from."""
  for stage in ("synth", "cohort"):
    shutil.copytree(workdir / stage, into / stage)
  return into


def test_a_damaged_volume_is_named_and_its_study_redone(smoke_run, tmp_path):
  """One cohort volume truncated (a partial copy), prepared/ and train/ gone: the rerun
  names the file and the study, ingests that study again, and ends with the same
  results.json as the undamaged run."""
  workdir, _ = smoke_run
  copy = _data_stages_of(workdir, tmp_path / "run")
  volume = sorted((copy / "cohort" / "volumes").glob("*.nii.gz"))[0]
  volume.write_bytes(volume.read_bytes()[:3000])
  said = []
  study.run(smoke.get_config(), copy, say=lambda *line: said.append(" ".join(line)))
  assert any(str(volume) in line and f"(study {volume.name[:-7]})" in line
             and "redoing that study's ingest" in line for line in said), said
  assert (copy / "results.json").read_bytes() == (workdir / "results.json").read_bytes()


def test_a_full_disk_stops_the_stage_clearly_and_resumes(smoke_run, tmp_path, monkeypatch):
  """ENOSPC raised inside files.atomic_path partway through prepare: one error naming
  the stage and its directory, no half-written file left, and a resume that ends with
  the same results."""
  workdir, _ = smoke_run
  copy = _data_stages_of(workdir, tmp_path / "run")
  real, calls = files.atomic_path, []

  @contextlib.contextmanager
  def filling(path, sync=False):
    calls.append(path)
    with real(path, sync) as temporary:
      if len(calls) == 5:
        temporary.write_bytes(b"half a file")
        raise OSError(errno.ENOSPC, "No space left on device")
      yield temporary

  monkeypatch.setattr(files, "atomic_path", filling)
  with pytest.raises(study.StageFailed, match=r"the prepare stage stopped: no space left on "
                     r"the device that holds .*prepared .*rerun the same command"):
    study.run(smoke.get_config(), copy, say=lambda *line: None)
  monkeypatch.undo()
  assert not [p for p in copy.rglob("*") if ".tmp" in p.name]
  study.run(smoke.get_config(), copy, say=lambda *line: None)
  assert (copy / "results.json").read_bytes() == (workdir / "results.json").read_bytes()


def test_every_table_cell_is_produced_and_finite(smoke_run):
  workdir, _ = smoke_run
  report = (workdir / "report.md").read_text()
  for heading in ("Table 2.", "Table 3.", "Table 4.", "Table 5.", "Table 6."):
    assert heading in report
  lines = report.splitlines()
  rows = [line for line, following in zip(lines, lines[1:] + [""])
          if line.startswith("| ") and not line.startswith("|---")
          and not following.startswith("|---")                  # not a header row
          and not line.split("|")[1].strip().startswith("**")]  # not a section row
  assert sum("ours" in row for row in rows) > 60
  for row in rows:
    for cell in row.strip("|").split("|")[1:]:
      cell = cell.strip()
      assert "nan" not in cell.lower() and "inf" not in cell.lower(), row
      # Our cells hold a value or say why they have none.
      if "ours" in row.split("|")[1]:
        assert _numbers(cell) or "n/a (" in cell, row
  results = json.loads((workdir / "results.json").read_text())
  for difficulty in ("easy", "medium", "hard"):
    assert set(results["spheres"][difficulty]) == {"mixed", "GE", "Siemens"}
    # configs/smoke.py trains on the paired set (2 copies): 4 training studies x 4.
    training_set = results["spheres"][difficulty]["mixed"]["training_set"]
    assert training_set == dict(kind="paired", copies=2, samples=16, positives=8)
  assert report.count("Trained on the paired set") == 3     # a note under Tables 3-5
  assert set(results["segmentation"]) == {"mixed", "GE", "Siemens"}
  html = (workdir / "report.html").read_text()
  assert html.count("data:image/png;base64,") >= 3 and "src='figures/" not in html


def test_no_phi_in_any_study_output(smoke_run):
  workdir, _ = smoke_run
  phi = set()
  for path in sorted((workdir / "synth" / "dicom").rglob("*"))[:400]:
    if path.is_file():
      ds = pydicom.dcmread(path, stop_before_pixels=True)
      phi.update({str(ds.PatientName), ds.PatientID, ds.PatientBirthDate,
                  ds.AccessionNumber, ds.InstitutionName, ds.StudyInstanceUID})
  outputs = [workdir / "report.md", workdir / "report.html", workdir / "results.json"]
  outputs += [p for p in (workdir / "cohort").glob("*.csv")]
  outputs += [p for p in (workdir / "prepared").rglob("*") if p.suffix in (".csv", ".md", ".json")]
  for path in outputs:
    text = path.read_text(errors="ignore")
    for value in phi:
      assert value not in text, (path.name, value)


def test_each_data_stage_reports_its_progress(smoke_run):
  workdir, _ = smoke_run
  said = json.loads((workdir / "console.json").read_text())
  for stage, total in (("synthesize", 12), ("ingest", 12), ("prepare", 12)):
    counts = [text.split()[0] for s, text in said if s == stage and re.match(r"\d+/\d+ ", text)]
    assert counts[0] == f"1/{total}" and counts[-1] == f"{total}/{total}", said


def test_rerun_gives_identical_results_and_matches_golden(smoke_run, tmp_path):
  """Train + report again from the same prepared data, through the launcher started as a
  file, one condition at a time (the fixture trained the smoke config's two at once):
  the same bits, and a console a person can read."""
  workdir, _ = smoke_run
  for stage in STAGES:
    shutil.copytree(workdir / stage, tmp_path / stage)
  root = Path(__file__).resolve().parents[1]
  done = subprocess.run([sys.executable, str(root / "launch" / "study.py"),
                         "--config=configs/smoke.py", f"--workdir={tmp_path}",
                         "--config.experiments.concurrent_conditions=1"],
                        cwd=root, capture_output=True, text=True, timeout=900)
  assert done.returncode == 0, done.stderr[-3000:]
  console = done.stdout + done.stderr
  assert re.search(r"\[train\] spheres/easy/mixed epoch 2/2 members 2", console), console
  assert "done before" not in console and "[report]" in console
  for chatter in ("orbax", "Closing", "CheckpointManager", "libtpu", "member metrics"):
    assert chatter not in console, chatter
  timings = json.loads(re.search(r"stage seconds: (\{.*\})", console).group(1))
  assert timings["synthesize"] < 5 and timings["ingest"] < 5  # skipped: done before
  first = json.loads((workdir / "results.json").read_text())
  second = json.loads((tmp_path / "results.json").read_text())
  assert first == second
  expected = golden.load()
  if expected is None:  # the bits of a CPU family nobody pinned yet: shape only
    pinned = golden.load_all()
    assert all(set(numbers) == set(golden.key_numbers(first)) for numbers in pinned.values())
    warnings.warn(f"no golden smoke numbers for CPU family {golden.family()!r} (pinned: "
                  f"{sorted(pinned)}); `python -m tests.golden --regenerate` adds them")
    return
  for name, value in golden.key_numbers(first).items():
    want = expected[name]
    if not isinstance(value, float) or not isinstance(want, float):
      assert value == want, name       # selections, counts, undefined metrics
    else:
      assert math.isclose(value, want, rel_tol=1e-4, abs_tol=1e-6), (name, value, want)
  assert set(expected) == set(golden.key_numbers(first))


def test_user_dicom_root_skips_synthesis(smoke_run, tmp_path):
  """--dicom_root: the study starts at ingest on the given export."""
  workdir, _ = smoke_run
  config = smoke.get_config()
  config.experiments.tasks = ()
  timings = study.run(config, tmp_path, str(workdir / "synth" / "dicom"),
                      say=lambda *_: None)
  assert not (tmp_path / "synth").exists()
  assert (tmp_path / "cohort" / "manifest.csv").exists()
  assert "ingest" in timings


PRECOMPILE_CHECK = """
import json, logging, re, sys
import jax
from configs import smoke
from scanbias_jax import keys
from scanbias_jax.experiments import common, datasets, name_manufacturer, precompile
cache, prepared_dir, train_dir = sys.argv[1:]
common.use_compilation_cache(cache)
config = smoke.get_config()
config.experiments.tasks = ("name_manufacturer",)
seconds = precompile.compile_all(config)
compiled = []
class Compiles(logging.Handler):
  def emit(self, record):
    found = re.match(r"Compiling jit\\((\\w+)\\)", record.getMessage())
    if found:
      compiled.append(found.group(1))
logging.getLogger("jax").addHandler(Compiles())
jax.config.update("jax_log_compiles", True)
name_manufacturer.run(config, datasets.load_prepared(prepared_dir), keys.root(0), train_dir)
print(json.dumps(dict(programs=sorted(seconds), compiled=sorted(set(compiled)))))
"""


def test_precompiled_programs_are_those_training_runs(smoke_run, tmp_path):
  """Precompile, then train, in one fresh process: training lowers and compiles only
  the size-dependent bookkeeping programs, none of the precompiled ones."""
  workdir, _ = smoke_run
  done = subprocess.run(
      [sys.executable, "-c", PRECOMPILE_CHECK, str(tmp_path / "xla"),
       str(workdir / "prepared"), str(tmp_path / "train")],
      capture_output=True, text=True, timeout=600, check=False,
      cwd=Path(__file__).resolve().parents[1])
  assert done.returncode == 0, done.stderr[-3000:]
  result = json.loads(done.stdout.strip().splitlines()[-1])
  assert result["programs"] == [f"name_manufacturer/{p}" for p in ("eval", "init", "moments", "step")]
  assert "gather" in result["compiled"]  # the check sees training's compilations
  assert not {"counted_step", "init", "batch_moments", "eval_logits"} & set(result["compiled"])


def test_killed_anywhere_resumes_to_the_same_results(smoke_run, tmp_path):
  """SIGKILL during compilation and synthesis, ingest, prepare, at the first epoch any
  condition ends, in the spheres' second difficulty, when a task is done (the others
  still training, two conditions at once), and after the report: the resumed study
  ends with the uninterrupted fixture's results.json (issue 18 item 2); a second start
  while one runs is refused, and each resume takes the killed run's lock over. The tasks
  overlap, so the training patterns name events every resumed run reaches whatever
  the order."""
  workdir, _ = smoke_run
  launch = ["-m", "launch.study", "--config=configs/smoke.py", f"--workdir={tmp_path}"]

  def second_start_is_refused():  # a second study on the workdir in use (issue 40)
    done = subprocess.run([sys.executable, *launch], capture_output=True, text=True,
                          timeout=300, check=False, cwd=Path(__file__).resolve().parents[1])
    assert done.returncode == 1 and "is in use by" in done.stderr, done.stderr[-2000:]

  killed_on = kill.kill_at(
      launch,
      [r"\[synthesize\] 1/", r"\[ingest\] 1/", r"\[prepare\] 1/", r"\[train\] \S+ epoch 1/",
       r"\[train\] spheres/medium/\w+ epoch 1/", r"\[train\] \w+: done", r"\[report\]"],
      meanwhile={3: second_start_is_refused})
  assert len(killed_on) == 7
  assert (json.loads((tmp_path / "results.json").read_text())
          == json.loads((workdir / "results.json").read_text()))


def test_two_processes_killed_anywhere_give_one_processs_results(smoke_run, tmp_path):
  """`--processes=2` (jax.distributed, two local CPU processes; issue 18 item 1):
  process 0 runs the data stages while process 1 waits, each trains its block of
  every ensemble's members. Killed during synthesis (process 1 at its barrier) and in
  training (the child dies with its parent), then resumed: results.json equals one
  process's, bit for bit."""
  workdir, _ = smoke_run
  killed_on = kill.kill_at(
      ["-m", "launch.study", "--config=configs/smoke.py", f"--workdir={tmp_path}",
       "--processes=2"],
      [r"\[synthesize\] 1/", r"\[train\] \S+ members 0-0 epoch 1/"])
  assert len(killed_on) == 2
  assert (tmp_path / "results.json").read_bytes() == (workdir / "results.json").read_bytes()
  blocks = sorted(p.name for p in (tmp_path / "train" / "spheres" / "easy" / "mixed").iterdir())
  assert blocks == ["members_0-0", "members_1-1"]
  child = (tmp_path / "process_1.log").read_text()
  assert "(process 1 of 2)" in child and "Gloo" not in child  # gloo's C++ chatter


def test_members_are_cut_into_whole_chunks_one_block_a_process():
  assert processes.blocks(2, 1, 2) == [(0, 1), (1, 1)]
  assert processes.blocks(10, 1, 4) == [(0, 3), (3, 3), (6, 3), (9, 1)]
  assert processes.blocks(10, 4, 2) == [(0, 8), (8, 2)]    # 3 chunks of 4: two and one
  assert processes.blocks(3, 1, 5)[3:] == [(3, 0), (3, 0)]  # more processes than members
