"""The console: progress lines a log file can hold, libraries' INFO records kept out."""
import logging as std_logging
import os

from absl import logging

from scanbias_jax import console


def lines(every_s, total=5):
  out = []
  update = console.progress("prepare", every_s=every_s, out=lambda *line: out.append(line))
  for done in range(1, total + 1):
    update(done, total)
  return out


def test_progress_prints_the_first_and_last_item_and_throttles_between():
  throttled = lines(every_s=3600)
  assert [text.split(",")[0] for _, text in throttled] == ["1/5 studies", "5/5 studies"]
  assert all(stage == "prepare" for stage, _ in throttled)
  assert throttled[0][1] == "1/5 studies"   # no rate before a second item
  assert "s each" in throttled[1][1] and "min left" not in throttled[1][1]
  middle = lines(every_s=0)[2][1]
  assert "s each" in middle and "min left" in middle
  assert "\r" not in "".join(text for _, text in throttled)   # whole lines, log-friendly
  assert [text.split(",")[0] for _, text in lines(every_s=0)] == [
      f"{i}/5 studies" for i in range(1, 6)]


def record(path, level=std_logging.INFO):
  return std_logging.LogRecord("absl", level, path, 1, "message", None, None)


def test_setup_keeps_this_projects_info_and_everyones_warnings():
  root = os.path.dirname(os.path.dirname(os.path.abspath(console.__file__)))
  handler = logging.get_absl_handler()
  formatter = handler.python_handler.formatter
  try:
    console.setup()
    assert handler.filter(record(os.path.join(root, "scanbias_jax", "train", "loop.py")))
    assert handler.filter(record(os.path.join(root, "launch", "study.py")))
    orbax = "/venv/site-packages/orbax/checkpoint/checkpoint_manager.py"
    assert not handler.filter(record(orbax))
    assert handler.filter(record(orbax, std_logging.WARNING))
    text = handler.format(record(orbax, std_logging.WARNING))
    assert text.endswith(" WARNING: message") and len(text.split()[0]) == 8   # HH:MM:SS
  finally:
    handler.removeFilter(console._own_or_important)
    handler.setFormatter(formatter)
