"""A sweep's points: the grid of `sweep.axes`, each point's config, and what it shares.

`sweep.axes` mirrors the config's own structure: `sweep.axes.synth.signature_strength
= (0, 1, 2, 4)` sweeps that field, so any field can be an axis and the command line
overrides an axis as it does any field (`--config.sweep.axes.synth.signature_strength
="(0.0, 1.0)"`). Points are the product of the axes, in the order the axes are
listed, the last varying fastest.

Two fingerprints decide what a point can share:
  - `data_key`: the fields the data stages read (seed, synth, ingest, cohort, prepare).
    Points with one data key share one synthetic export, ingest and preparation.
  - `nameability_key`: all but the sweep section: Name the Manufacturer is trained
    once for the points that differ only in their mix.
  - `point_key`: the whole point config but the axes themselves, so a grown sweep finds
    the points it already finished, and a point computed under another setting is
    never taken for this one.
"""
import copy
import hashlib
import itertools
import json

import ml_collections

DATA_SECTIONS = ("seed", "synth", "ingest", "cohort", "prepare")


def axes(config) -> dict[str, tuple]:
  """{dotted field: its values} of `sweep.axes`, in the order they are listed."""
  found = {}

  def walk(node, prefix):
    for name, value in node.items():
      path = f"{prefix}{name}"
      if isinstance(value, (dict, ml_collections.ConfigDict)):
        walk(value, f"{path}.")
      else:
        values = tuple(value) if isinstance(value, (list, tuple)) else (value,)
        if not values:
          raise ValueError(f"sweep axis {path} has no values")
        found[path] = values
  walk(config.sweep.axes, "")
  for path in found:
    _lookup(config, path)  # every axis names an existing field
  return found


def _lookup(config, path: str):
  node = config
  parts = path.split(".")
  for part in parts[:-1]:
    if part not in node:
      raise ValueError(f"sweep axis {path}: the config has no section {part!r}")
    node = node[part]
  if parts[-1] not in node:
    raise ValueError(f"sweep axis {path}: the config has no field {parts[-1]!r}")
  return node, parts[-1]


def points(config) -> list[dict]:
  """[{field: value}] of every point of the grid."""
  grid = axes(config)
  return [dict(zip(grid, values)) for values in itertools.product(*grid.values())]


def point_config(config, point: dict):
  """A copy of `config` with the point's values set (types as the fields')."""
  out = copy.deepcopy(config)
  with out.unlocked():
    for path, value in point.items():
      node, name = _lookup(out, path)
      current = node[name]
      node[name] = type(current)(value) if isinstance(current, (int, float)) \
          and not isinstance(current, bool) else value
  return out


def _digest(value) -> str:
  text = json.dumps(value, sort_keys=True, default=str)
  return hashlib.blake2b(text.encode(), digest_size=8).hexdigest()


def data_key(config) -> str:
  """Fingerprint of what the data stages read."""
  settings = config.to_dict()
  return _digest({name: settings[name] for name in DATA_SECTIONS})


SCANNER_ONLY = ("synth", "signature_strength")  # changes the physics, not the anatomy


def render_key(config) -> str:
  """Fingerprint of the data settings but the signature strength: data keys that share
  it share each head's anatomy, sampled once for all of them."""
  settings = config.to_dict()
  data = {name: settings[name] for name in DATA_SECTIONS}
  data[SCANNER_ONLY[0]] = {k: v for k, v in data[SCANNER_ONLY[0]].items()
                           if k != SCANNER_ONLY[1]}
  return _digest(data)


def nameability_key(config) -> str:
  """Fingerprint of what Name the Manufacturer reads: everything but the sweep section
  (it trains on every training study, whatever the point's mix)."""
  settings = config.to_dict()
  settings.pop("sweep", None)
  return _digest(settings)


def point_key(config) -> str:
  """Fingerprint of the point's whole config but the axes (and the runtime knobs that
  change no bits)."""
  settings = config.to_dict()
  settings["sweep"] = {k: v for k, v in settings["sweep"].items() if k != "axes"}
  return _digest(settings)


def label(point: dict) -> str:
  """'signature_strength=1, majority_share=0.9': a point in words (last field names)."""
  return ", ".join(f"{path.rsplit('.', 1)[-1]}={value:g}" if isinstance(value, float)
                   else f"{path.rsplit('.', 1)[-1]}={value}" for path, value in point.items())
