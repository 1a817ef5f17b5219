"""The options and start-up of a job on several processes or hosts (jax.distributed;
scanbias_jax/processes.py), shared by launch/study.py and launch/sweep.py.

`--processes=N` starts a local cluster of N CPU processes (the others log to
<workdir>/process_<i>.log); on several hosts, or one process a GPU, run the same
command on each with `--coordinator_address=host0:port --num_processes=N
--process_id=i` and a shared --workdir.
"""
import sys
from pathlib import Path

from absl import flags

from scanbias_jax import processes, run_lock

PROCESSES = flags.DEFINE_integer("processes", 1, "Local CPU processes to run on.")
COORDINATOR = flags.DEFINE_string("coordinator_address", None,
                                  "host:port of process 0 (several hosts or processes).")
NUM_PROCESSES = flags.DEFINE_integer("num_processes", 1, "Processes in the cluster.")
PROCESS_ID = flags.DEFINE_integer("process_id", 0, "This process's index in the cluster.")


def start(module: str, workdir: Path, as_file: bool) -> int:
  """Refuses a workdir in use (process 0), spawns the local processes of --processes or
  joins the cluster given; returns the number of processes. `module` ("launch.study")
  is how the children are started, unless the job was run as a file (`as_file`)."""
  address, num_processes = COORDINATOR.value, NUM_PROCESSES.value
  try:
    if PROCESS_ID.value == 0:
      run_lock.refuse_if_busy(workdir)
  except run_lock.WorkdirBusy as busy:
    sys.exit(f"error: {busy}")
  if PROCESSES.value > 1 and not address:
    argv = [a for a in sys.argv if not a.startswith("--processes")]
    launcher = [argv[0]] if as_file else ["-m", module]
    address, _ = processes.spawn_local(launcher + argv[1:], PROCESSES.value, str(workdir))
    num_processes = PROCESSES.value
  if address:
    processes.initialize(address, num_processes, PROCESS_ID.value)
  return num_processes
