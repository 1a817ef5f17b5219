"""One study on several processes (jax.distributed): local CPU processes or GPU hosts.

Every process runs the same launcher with the same flags and work directory (a file
system they share). Process 0 runs the data stages and writes every output; the
others wait for it at a barrier. Training is where the work is split: each
ensemble's members are cut into one contiguous block a process (`blocks`), each
process trains its block in a run directory of its own (train/loop.py), then reads
the other blocks' final checkpoints, so that every process holds the whole ensemble
and evaluates it as one process would. A member's key is its index and each member
trains in its own compiled program (`train.members_per_device` fixed), so the bits
are one process's (tests/test_study.py).
"""
import contextlib
import ctypes
import os
import signal
import socket
import subprocess
import sys
import time
from typing import Callable

import jax

POLL_SECONDS = 0.5
WAIT_SECONDS = 24 * 3600.0  # for another process's work (a study's data stages, a block)


def initialize(coordinator_address: str, num_processes: int, process_id: int) -> None:
  """jax.distributed over `num_processes` processes (CPU ones talk over gloo); call
  before anything else uses JAX."""
  jax.config.update("jax_cpu_collectives_implementation", "gloo")
  jax.distributed.initialize(coordinator_address, num_processes=num_processes,
                             process_id=process_id)


def count() -> int:
  return jax.process_count()


def index() -> int:
  return jax.process_index()


def writes() -> bool:
  """Whether this process writes the study's shared outputs (process 0 does)."""
  return index() == 0


def barrier(name: str, timeout: float = WAIT_SECONDS) -> None:
  """Every process waits here until all have arrived (a no-op for one process).

  The coordination service's barrier, not a collective: the others wait here while
  process 0 runs the data stages for minutes, and a first collective gives up after
  30 s (gloo's context set-up: "GetKeyValue() timed out", found by CI on a loaded
  machine). The public `multihost_utils.sync_global_devices` is such a collective;
  jax's own array serialization waits on the client the same way."""
  if count() > 1:
    from jax._src import distributed  # pylint: disable=g-import-not-at-top
    distributed.global_state.client.wait_at_barrier(name, timeout_in_ms=int(timeout * 1000))


def blocks(num_members: int, chunk: int, processes: int) -> list[tuple[int, int]]:
  """(first member, members) of each process's block: whole chunks of `chunk` members
  (the members one compiled program trains together), as even as they go, in order;
  a process left without a chunk gets (first, 0)."""
  chunks = -(-num_members // chunk)
  per_process = -(-chunks // processes)
  out = []
  for p in range(processes):
    first = min(p * per_process * chunk, num_members)
    out.append((first, min((p + 1) * per_process * chunk, num_members) - first))
  return out


def wait_until(done: Callable[[], bool], what: str, timeout: float = WAIT_SECONDS) -> None:
  """Polls `done` until it holds (another process's work shows on the file system)."""
  deadline = time.monotonic() + timeout
  while not done():
    if time.monotonic() > deadline:
      raise TimeoutError(f"waited {timeout:.0f} s for {what}")
    time.sleep(POLL_SECONDS)


def free_port() -> int:
  with contextlib.closing(socket.socket(socket.AF_INET, socket.SOCK_STREAM)) as s:
    s.bind(("localhost", 0))
    return s.getsockname()[1]


def _die_with_parent() -> None:
  """In a child, before exec: SIGKILL it when the parent dies (Linux prctl), so a
  killed study leaves no process behind to write into the run directory."""
  with contextlib.suppress(OSError, AttributeError):
    ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG


def spawn_local(argv: list[str], num_processes: int, logs: str) -> tuple[str, list]:
  """Starts processes 1 .. num_processes - 1 of a local cluster: `python argv` with the
  cluster flags added, each logging to `<logs>/process_<i>.log`. Returns the
  coordinator address (this process is 0) and the children."""
  address = f"localhost:{free_port()}"
  os.makedirs(logs, exist_ok=True)
  children = []
  for process_id in range(1, num_processes):
    with open(os.path.join(logs, f"process_{process_id}.log"), "w") as log:  # pylint: disable=unspecified-encoding
      children.append(subprocess.Popen(  # the child keeps its own copy of the log
          [sys.executable, *argv, f"--coordinator_address={address}",
           f"--num_processes={num_processes}", f"--process_id={process_id}"],
          stdout=log, stderr=subprocess.STDOUT, preexec_fn=_die_with_parent))
  return address, children
