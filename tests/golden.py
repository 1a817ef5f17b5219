"""The smoke study's key numbers, pinned in tests/golden_smoke.json.

  python -m tests.golden --regenerate   # reruns the smoke study and rewrites the file

Regenerate only on purpose (a change meant to move the numbers), and say why in
the commit message; tests/test_study.py compares against this file.
"""
import argparse
import json
import tempfile
from pathlib import Path

PATH = Path(__file__).with_name("golden_smoke.json")


def key_numbers(results: dict) -> dict:
  """Flat {name: value} of the member-averaged test metrics of every condition."""
  out = {}

  def add(prefix, condition):
    for split, data in condition["test"].items():
      for metric, value in data["averaged"]["selected"]["metrics"].items():
        if isinstance(value, (int, float)) or value is None:
          out[f"{prefix}/{split}/{metric}"] = value
    out[f"{prefix}/selected"] = condition["selection"]["selected"]

  for condition, data in results.get("name_manufacturer", {}).items():
    if isinstance(data, dict) and "test" in data:
      add(f"name_manufacturer/{condition}", data)
  for difficulty, conditions in results.get("spheres", {}).items():
    for condition, data in conditions.items():
      add(f"spheres/{difficulty}/{condition}", data)
  for condition, data in results.get("segmentation", {}).items():
    add(f"segmentation/{condition}", data)
  return out


def load() -> dict:
  return json.loads(PATH.read_text())


def regenerate() -> dict:
  from configs import smoke  # pylint: disable=import-outside-toplevel
  from scanbias_jax.experiments import study  # pylint: disable=import-outside-toplevel
  with tempfile.TemporaryDirectory() as tmp:
    study.run(smoke.get_config(), Path(tmp))
    numbers = key_numbers(json.loads((Path(tmp) / "results.json").read_text()))
  PATH.write_text(json.dumps(numbers, indent=1, sort_keys=True) + "\n")
  return numbers


if __name__ == "__main__":
  parser = argparse.ArgumentParser(description=__doc__)
  parser.add_argument("--regenerate", action="store_true", required=True)
  parser.parse_args()
  print(f"wrote {len(regenerate())} numbers to {PATH}")
