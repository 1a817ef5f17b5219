"""What a person sees while a stage runs: whole lines that read the same in a terminal
and in a log file, and none of the libraries' INFO chatter.

  update = console.progress("synthesize")
  update(40, 120)   # prints "[synthesize] 40/120 studies, 2.10 s each, ~2.8 min left"

`setup()` (a launcher's main calls it) keeps absl's INFO records from this project
(training epochs, stage summaries) and drops other packages' (orbax's checkpoint
bookkeeping, JAX's backend probing), each line as "HH:MM:SS message"; warnings and
errors from anywhere still show. `--verbosity=1` shows everything in absl's own
format, per-member metrics included.
"""
import logging as std_logging
import os
import time
from typing import Callable

from absl import logging

_OWN_DIRS = tuple(os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), d)
                  + os.sep for d in ("scanbias_jax", "launch"))


def say(stage: str, text: str) -> None:
  print(f"[{stage}] {text}", flush=True)


def progress(stage: str, unit: str = "studies", every_s: float = 20.0,
             out: Callable[[str, str], None] = say) -> Callable[..., None]:
  """A `(done, total, detail="")` callback printing a line at the first item, then at most
  every `every_s` seconds, and at the last. The rate is measured from the first item on,
  so start-up (workers spawning, files indexed, programs compiled) does not inflate it."""
  first = []   # (time, done) of the first call
  last = [-float("inf")]

  def update(done: int, total: int, detail: str = "") -> None:
    now = time.perf_counter()
    if not first:
      first.append((now, done))
    if done not in (first[0][1], total) and now - last[0] < every_s:
      return
    last[0] = now
    line = f"{done}/{total} {unit}"
    if done > first[0][1]:
      each = (now - first[0][0]) / (done - first[0][1])
      line += f", {each:.2f} s each"
      if done < total:
        line += f", ~{(total - done) * each / 60:.1f} min left"
    out(stage, line + (f" ({detail})" if detail else ""))

  return update


def _own_or_important(record: std_logging.LogRecord) -> bool:
  return record.levelno >= std_logging.WARNING or record.pathname.startswith(_OWN_DIRS)


class _Short(std_logging.Formatter):
  def format(self, record: std_logging.LogRecord) -> str:
    text = record.getMessage()
    if record.levelno >= std_logging.WARNING:
      text = f"{record.levelname}: {text}"
    return f"{time.strftime('%H:%M:%S', time.localtime(record.created))} {text}"


def setup() -> None:
  """At the default verbosity, absl's handler shows this project's INFO lines only, short
  (call it in a launcher's main, after absl has set up its handler)."""
  if logging.get_verbosity() > logging.INFO:
    return
  handler = logging.get_absl_handler()
  if _own_or_important not in handler.filters:
    handler.addFilter(_own_or_important)
  handler.setFormatter(_Short())
