"""Kill a launcher with SIGKILL at chosen console lines, then let it finish.

The launcher's console tells where it is (`[synthesize] 1/40 studies`, `[train]
spheres/easy/mixed epoch 1/2 ...`); each pattern starts the launcher once more and
kills it at the first line that matches, so every kill lands in the stage it names.
A final run goes to the end. The resumed run must equal an uninterrupted one.
"""
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def kill_at(args: list[str], patterns: list[str], timeout: float = 900,
            meanwhile: dict | None = None) -> list[str]:
  """Runs `python <args>` from the repository root once per pattern, killing it at the
  first console line (stdout and stderr) that matches; then once to the end. Returns
  the lines each killed run died on. AssertionError if a run ends before its pattern
  (the stage it names did not run), fails, or the last run fails. `meanwhile[i]()` is
  called when pattern i matches, before the kill, while that run still runs."""
  env = dict(os.environ, PYTHONUNBUFFERED="1")
  killed_on = []
  for pattern in patterns:
    process = subprocess.Popen([sys.executable, *args], cwd=ROOT, env=env, text=True,
                               stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    deadline, seen = time.monotonic() + timeout, []
    for line in process.stdout:
      seen.append(line)
      if re.search(pattern, line):
        if (meanwhile or {}).get(len(killed_on)):
          meanwhile[len(killed_on)]()
        process.send_signal(signal.SIGKILL)
        killed_on.append(line.strip())
        break
      assert time.monotonic() < deadline, f"no line matched {pattern!r} in {timeout} s"
    process.stdout.close()
    code = process.wait()
    assert code == -signal.SIGKILL, (
        f"the run ended ({code}) before a line matched {pattern!r}:\n" + "".join(seen[-40:]))
  done = subprocess.run([sys.executable, *args], cwd=ROOT, env=env, text=True,
                        capture_output=True, timeout=timeout)
  assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-3000:]
  return killed_on
