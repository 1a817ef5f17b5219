"""One run per workdir (scanbias_jax/run_lock.py)."""
import json
import os
import signal
import subprocess
import sys
import time

import pytest

from scanbias_jax import run_lock

HOLD = """
import sys, time
from scanbias_jax import run_lock
with run_lock.held(sys.argv[1], command="holder"):
  print("held", flush=True)
  time.sleep(60)
"""


def _holder(workdir):
  process = subprocess.Popen([sys.executable, "-c", HOLD, str(workdir)], text=True,
                             stdout=subprocess.PIPE)
  assert process.stdout.readline().strip() == "held"
  return process


def test_a_second_run_is_refused_with_who_holds_it(tmp_path):
  process = _holder(tmp_path)
  try:
    with pytest.raises(run_lock.WorkdirBusy) as refused:
      with run_lock.held(tmp_path):
        pass
    message = str(refused.value)
    assert f"pid {process.pid}" in message and "holder" in message and "host" in message
    assert "another --workdir" in message
  finally:
    process.kill()
    process.wait()


def test_a_killed_runs_lock_is_taken_over(tmp_path):
  process = _holder(tmp_path)
  process.send_signal(signal.SIGKILL)
  process.wait()
  assert json.loads((tmp_path / ".lock").read_text())["pid"] == process.pid  # left behind
  with run_lock.held(tmp_path, command="resume") as record:
    assert record["pid"] == os.getpid()
    assert json.loads((tmp_path / ".lock").read_text())["command"] == "resume"


def test_other_processes_of_one_run_take_nothing_and_the_lock_is_released(tmp_path):
  with run_lock.held(tmp_path):
    with run_lock.held(tmp_path, holds=False):   # process 1 of the same run
      pass
  with run_lock.held(tmp_path):                  # released at the end of the block
    pass


def test_the_study_launcher_refuses_at_once(tmp_path):
  process = _holder(tmp_path)
  try:
    started = time.monotonic()
    done = subprocess.run([sys.executable, "-m", "launch.study", "--config=configs/smoke.py",
                           f"--workdir={tmp_path}"], capture_output=True, text=True,
                          timeout=300, cwd=os.path.dirname(os.path.dirname(__file__)))
    assert done.returncode == 1 and "is in use by holder" in done.stderr
    assert time.monotonic() - started < 60 and not (tmp_path / "synth").exists()
  finally:
    process.kill()
    process.wait()
