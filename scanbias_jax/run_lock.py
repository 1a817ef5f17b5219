"""One run per workdir: a study, audit or sweep holds `<workdir>/.lock` while it runs.

The lock is an advisory `flock` on that file, which the kernel drops when the holding
process dies however it dies (SIGKILL, a crash; a power loss takes the process and the
lock with it), so a lock left by a killed run is stale by construction and the next run
takes it over: kill-and-resume works as before. The file also records who holds it (host,
pid, start time, command), for the message a second run gets. Under jax.distributed the
processes of one run share process 0's lock: the others never take it.
"""
import contextlib
import errno
import fcntl
import json
import os
import socket
import sys
import time
from pathlib import Path

NAME = ".lock"


class WorkdirBusy(RuntimeError):
  """Another run holds the workdir."""


def _holder(path: Path) -> dict:
  try:
    return json.loads(path.read_text() or "{}")
  except (OSError, ValueError):
    return {}


def busy_message(workdir: Path, holder: dict) -> str:
  who = (f"{holder.get('command', 'another run')} (host {holder.get('host', '?')}, pid "
         f"{holder.get('pid', '?')}, started {holder.get('started', '?')})")
  return (f"{workdir} is in use by {who}. Wait for that run to finish, or give this one "
          f"another --workdir; a run that is killed or crashes frees the workdir by itself, "
          f"and rerunning the same command then resumes where it stopped.")


@contextlib.contextmanager
def held(workdir, command: str | None = None, holds: bool = True):
  """Holds the workdir's lock for the block; WorkdirBusy at once if another run holds
  it. `holds=False` (the other processes of a jax.distributed run) takes nothing."""
  if not holds:
    yield
    return
  workdir = Path(workdir)
  workdir.mkdir(parents=True, exist_ok=True)
  path = workdir / NAME
  descriptor = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)  # not inherited by children
  try:
    try:
      fcntl.flock(descriptor, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError as error:
      if error.errno not in (errno.EWOULDBLOCK, errno.EAGAIN, errno.EACCES):
        raise OSError(error.errno, f"cannot lock {path} ({error.strerror}): this filesystem "
                      "offers no file locks; run from a workdir on one that does") from error
      raise WorkdirBusy(busy_message(workdir, _holder(path))) from None
    record = dict(host=socket.gethostname(), pid=os.getpid(),
                  started=time.strftime("%Y-%m-%d %H:%M:%S %Z"),
                  command=command or " ".join([Path(sys.argv[0]).name, *sys.argv[1:]]))
    os.ftruncate(descriptor, 0)
    os.pwrite(descriptor, json.dumps(record).encode(), 0)
    yield record
  finally:
    os.close(descriptor)  # closing drops the flock


def refuse_if_busy(workdir) -> None:
  """WorkdirBusy now if another run holds the workdir: a launcher checks before it
  starts helper processes that a refused run would leave waiting."""
  with held(workdir, command="a check"):
    pass

