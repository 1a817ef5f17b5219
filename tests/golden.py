"""The smoke study's key numbers, pinned in tests/golden_smoke.json.

  python -m tests.golden --regenerate   # reruns the smoke study and rewrites the file

Regenerate only on purpose (a change meant to move the numbers), and say why in
the commit message; tests/test_study.py compares against this file.

The numbers are pinned per CPU family (`render.cpu_description()["family"]`: vendor
and XLA:CPU instruction-set level): the same family gives the same bits, another one
rounds differently and a small smoke test set can flip a sample (BUILD_NOTES,
"Reproducibility"). Regenerating writes this machine's family and keeps the others'; after a change
meant to move the numbers, drop the entries of families it could not be rerun on.
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


def family() -> str:
  from scanbias_jax.report import render  # pylint: disable=import-outside-toplevel
  return render.cpu_description()["family"]


def load_all() -> dict:
  """{family: key numbers}."""
  return json.loads(PATH.read_text())["families"]


def load(of_family: str | None = None) -> dict | None:
  """The key numbers pinned for `of_family` (default: this machine's), or None."""
  return load_all().get(of_family or family())


def regenerate(drop_others: bool = False) -> dict:
  from configs import smoke  # pylint: disable=import-outside-toplevel
  from scanbias_jax.experiments import study  # pylint: disable=import-outside-toplevel
  with tempfile.TemporaryDirectory() as tmp:
    study.run(smoke.get_config(), Path(tmp))
    numbers = key_numbers(json.loads((Path(tmp) / "results.json").read_text()))
  families = {} if drop_others or not PATH.exists() else load_all()
  families[family()] = numbers
  PATH.write_text(json.dumps(dict(families=families), indent=1, sort_keys=True) + "\n")
  return numbers


if __name__ == "__main__":
  parser = argparse.ArgumentParser(description=__doc__)
  parser.add_argument("--regenerate", action="store_true", required=True)
  parser.add_argument("--drop_other_families", action="store_true",
                      help="after a change meant to move the numbers everywhere")
  args = parser.parse_args()
  print(f"wrote {len(regenerate(args.drop_other_families))} numbers for {family()} to {PATH}")
