"""report.md and a self-contained report.html from a results structure.

Input: `results`, the plain JSON structure that `scanbias_jax.evaluate.results`
builds and documents (in short: results["groups"] = group values;
results["name_manufacturer"][cond], results["spheres"][difficulty][cond] and
results["segmentation"][cond] = Condition blocks with "selection", "validation",
"test"[test_set], "transfer"[other_group]; results["provenance"] = config, keys,
stages (wall time), optional environment). `samples` (optional, not JSON):
{group: {"without_sphere": HU 2-D, "with_sphere": HU 2-D, "brain_mask": 0/1 2-D,
...}} as `figures.sample_slices` takes.

Writes into `run_dir`: figures/roc.png, figures/samples.png (when samples are
given), report.md (figures linked) and report.html (figures embedded as base64
PNG, no external references). Secrets and PHI-like config fields are redacted.
"""
import base64
import html
import importlib.metadata
import json
import os
import platform
import re
import subprocess
from pathlib import Path

import jax

from scanbias_jax import files
from scanbias_jax.evaluate.results import to_jsonable
from scanbias_jax.models import conv
from scanbias_jax.report import figures, harm_table, summary, tables

MIXED = "mixed"
PACKAGES = ("jax", "jaxlib", "flax", "optax", "orbax-checkpoint", "numpy", "scipy",
            "scikit-learn", "matplotlib", "pydicom", "nibabel", "ml_collections",
            "absl-py")
# Config values that must never reach a report: secrets (the pseudonymisation key)
# always, and text under identity-like keys (a flag such as one_study_per_patient
# is kept: it names a rule, not a person).
_SECRET = re.compile(r"secret|password|passwd|token|credential", re.IGNORECASE)
_IDENTITY = re.compile(r"patient|birth|accession|physician|operator|name_of",
                       re.IGNORECASE)
STYLE = ("body{font-family:sans-serif;max-width:1200px;margin:2em auto;color:#222}"
          "table{border-collapse:collapse;font-size:12px;margin:0.5em 0}"
          "td,th{border:1px solid #ccc;padding:2px 6px;text-align:left}"
          "th{background:#eee}ul.notes{font-size:12px;color:#555}"
          "pre{background:#f6f6f6;padding:0.5em;font-size:11px;overflow-x:auto}"
          "img{max-width:100%}")


def reproducibility_note(environment: dict) -> str:
  """Which bits this report's numbers share with a rerun, in a sentence."""
  cpu = environment.get("cpu") or {}
  machine = f"{cpu.get('model', 'an unrecorded CPU')} (family {cpu.get('family', 'unknown')})"
  return (f"Computed on {machine}. The same config and key give these numbers bit for bit "
          "on a machine of the same CPU family (or on one GPU with "
          "train.exact_reproducibility); another family rounds differently, which can "
          "flip single test samples: the intervals, not the last digits, carry the "
          "conclusions (BUILD_NOTES, 'Reproducibility').")


def collect_environment() -> dict:
  """Package versions, git revision, devices and platform of this process."""
  versions = {}
  for name in PACKAGES:
    try:
      versions[name] = importlib.metadata.version(name)
    except importlib.metadata.PackageNotFoundError:
      versions[name] = "not installed"
  # XLA settings that choose kernels, hence last bits: the environment's flags and the
  # options the networks' programs are compiled with (models/conv.py).
  xla = dict(flags=os.environ.get("XLA_FLAGS", ""), network_options=conv.compiler_options())
  return dict(python=platform.python_version(), platform=platform.platform(),
              packages=versions, git=git_revision(), cpu=cpu_description(), xla=xla,
              processes=jax.process_count(), devices=[str(d) for d in jax.devices()],
              device_kinds=sorted({d.device_kind for d in jax.devices()}))


# The instruction sets XLA:CPU picks kernels by: a result's last bits can follow them.
ISA_FLAGS = ("sse4_2", "avx", "avx2", "fma", "avx512f", "avx512_bf16", "avx512_vnni",
             "amx_tile", "amx_bf16", "asimd", "sve")


# XLA:CPU's instruction-set levels (its --xla_cpu_max_isa values), highest first, each
# with the /proc/cpuinfo flag that marks it.
ISA_LEVELS = (("AMX", "amx_bf16"), ("AVX512_BF16", "avx512_bf16"),
              ("AVX512_VNNI", "avx512_vnni"), ("AVX512", "avx512f"), ("AVX2", "avx2"),
              ("AVX", "avx"), ("SSE4_2", "sse4_2"), ("SVE", "sve"), ("NEON", "asimd"))


def cpu_description(cpuinfo: str = "/proc/cpuinfo") -> dict:
  """The CPU model, the instruction sets among ISA_FLAGS it offers, and its family:
  "<vendor> <highest ISA_LEVELS entry>" (Linux; elsewhere the model from `platform`,
  no flags). Float results are pinned per family (tests/golden.py): one Sapphire
  Rapids Xeon ("GenuineIntel AMX") and one Zen 4 EPYC ("AuthenticAMD AVX512_BF16")
  round differently (BUILD_NOTES, "Reproducibility")."""
  try:
    with open(cpuinfo) as f:
      text = f.read()
  except OSError:
    machine = platform.processor() or platform.machine()
    return dict(model=machine, isa=[], family=f"{platform.machine()} unknown")
  fields = {}
  for line in text.splitlines():
    key, _, value = line.partition(":")
    fields.setdefault(key.strip().lower(), value.strip())
  flags = set((fields.get("flags") or fields.get("features") or "").split())
  model = fields.get("model name") or fields.get("cpu model") or platform.machine()
  vendor = fields.get("vendor_id") or fields.get("cpu implementer") or platform.machine()
  level = next((name for name, flag in ISA_LEVELS if flag in flags), "baseline")
  return dict(model=model, isa=[f for f in ISA_FLAGS if f in flags],
              family=f"{vendor} {level}")


def git_revision() -> str:
  """`git rev-parse HEAD` of the source tree (+ whether it has uncommitted edits)."""
  here = Path(__file__).resolve().parent
  try:
    head = subprocess.run(["git", "rev-parse", "HEAD"], cwd=here, capture_output=True,
                          text=True, timeout=10)
    if head.returncode:
      return f"n/a ({head.stderr.strip() or 'not a git checkout'})"
    dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"],
                           cwd=here, capture_output=True, text=True, timeout=10)
    return head.stdout.strip() + (" (with uncommitted changes)" if dirty.stdout.strip()
                                  else "")
  except (OSError, subprocess.SubprocessError) as error:
    return f"n/a ({type(error).__name__})"


def redact(value):
  """A copy with the values of secret or identity-like keys replaced."""
  if isinstance(value, dict):
    return {k: "<redacted>" if _SECRET.search(str(k)) or (
        _IDENTITY.search(str(k)) and not isinstance(v, (bool, int, float))) else redact(v)
            for k, v in value.items()}
  if isinstance(value, (list, tuple)):
    return [redact(v) for v in value]
  return value


def roc_curves(results: dict) -> dict[str, dict]:
  """Figure name -> {task: {condition: {test_set: roc}}}, selected members averaged.

  Spheres tasks make the Fig. 4 panel grid; Name the Manufacturer (trained on
  mixed only in the paper) gets its own figure so no panel is empty by design.
  """
  spheres = {f"spheres {difficulty}": {
      name: {test_set: split["averaged"]["selected"]["roc"]
             for test_set, split in condition["test"].items()}
      for name, condition in conditions.items()}
             for difficulty, conditions in results.get("spheres", {}).items()}
  naming = {"name the manufacturer": {
      name: {MIXED: condition["test"][MIXED]["averaged"]["selected"]["roc"]}
      if MIXED in condition["test"] else {}
      for name, condition in results.get("name_manufacturer", {}).items()}}
  figures_by_name = {}
  if spheres:
    figures_by_name["roc_spheres"] = spheres
  if naming["name the manufacturer"]:
    figures_by_name["roc_name_manufacturer"] = naming
  return figures_by_name


def _provenance(results: dict, environment: dict) -> dict:
  provenance = results.get("provenance", {})
  config = provenance.get("config", {})
  config = config.to_dict() if hasattr(config, "to_dict") else config  # ConfigDict
  return dict(config=redact(config), keys=provenance.get("keys", {}),
              stages=provenance.get("stages", {}), environment=environment)


def _stage_rows(stages: dict) -> list[list[str]]:
  rows = []
  for name, stage in stages.items():
    wall = stage.get("wall_s")
    rows.append([name, "n/a (not timed)" if wall is None else f"{float(wall):.1f}",
                 "yes" if stage.get("skipped") else "no"])
  return rows or [["n/a (no stages recorded)", "", ""]]


def embedded(path: Path, caption: str) -> str:
  encoded = base64.b64encode(Path(path).read_bytes()).decode("ascii")
  return (f"<figure><img alt='{html.escape(caption)}' src='data:image/png;base64,{encoded}'>"
          f"<figcaption>{html.escape(caption)}</figcaption></figure>")


def render_report(results: dict, run_dir, samples: dict | None = None,
                  environment: dict | None = None, title: str | None = None) -> dict:
  """Writes the report into `run_dir`; returns {name: path} of what it wrote."""
  if MIXED in results["groups"]:
    raise ValueError(f"'{MIXED}' names all groups together and cannot be a group value")
  run_dir = Path(run_dir)
  (run_dir / "figures").mkdir(parents=True, exist_ok=True)
  environment = (environment or results.get("provenance", {}).get("environment")
                 or collect_environment())
  title = title or results.get("title") or "Scanner bias study"
  written, figure_paths = {}, {}
  captions = dict(roc_spheres="Sphere classification: ROC of member-averaged outputs "
                  "per task and training condition (Fig. 4)",
                  roc_name_manufacturer="Name the Manufacturer: ROC of the member-averaged "
                  "output on the mixed test set")
  for name, curves in roc_curves(results).items():
    figure_paths[captions[name]] = figures.roc_curves(
        curves, run_dir / "figures" / f"{name}.png")
  if samples:
    figure_paths["Sample slices per group (Figs. 1-3)"] = figures.sample_slices(
        samples, run_dir / "figures" / "samples.png")
  forest = figures.forest_plot(harm_table.forest_panels(results),
                               run_dir / "figures" / "forest.png")
  forest_caption = ("Every cross-group difference (task x difficulty x training group) "
                    "with its 95% interval; grey band: +- the minimum detectable difference "
                    "at 80% power; red: interval excludes zero")
  first_lines = summary.headline(results)
  all_tables = tables.all_tables(results)
  stage_table = tables.Table("Wall time per stage", ["Stage", "Wall time (s)", "Skipped"],
                             _stage_rows(results.get("provenance", {}).get("stages", {})))
  answers = summary.summarise(results)
  provenance = json.dumps(to_jsonable(_provenance(results, environment)), indent=1,
                          sort_keys=False, default=str)
  groups = ", ".join(results["groups"])
  attribute = results.get("group_attribute", "group")
  missing_figures = [] if samples else ["Sample slices: n/a (no sample slices given)."]
  bits = reproducibility_note(environment)

  md = [f"# {title}", "", f"Groups ({attribute}): {groups}.", "", "## The answer", ""]
  md += [f"- {line}" for line in first_lines]
  md += ["", f"![{forest_caption}](figures/{forest.name})", "", f"*{forest_caption}*", "",
         "## Summary", ""]
  for question, lines in answers.items():
    md += [f"**{question}**", ""]
    for line in lines:
      md += ([tables.to_markdown(line)] if isinstance(line, tables.Table) else [f"- {line}"])
    md += [""]
  md += ["## Tables", ""] + [tables.to_markdown(t) for t in all_tables]
  md += ["## Figures", ""]
  for caption, path in figure_paths.items():
    md += [f"![{caption}](figures/{path.name})", "", f"*{caption}*", ""]
  md += missing_figures + ["", "## Provenance", "", bits, "", tables.to_markdown(stage_table),
                           "```json", provenance, "```", ""]
  files.write_text(run_dir / "report.md", "\n".join(md))
  written["report.md"] = run_dir / "report.md"

  body = [f"<h1>{html.escape(title)}</h1>",
          f"<p>Groups ({html.escape(attribute)}): {html.escape(groups)}.</p>",
          "<h2>The answer</h2><ul class='answer'>"
          + "".join(f"<li>{html.escape(line)}</li>" for line in first_lines) + "</ul>",
          embedded(forest, forest_caption),
          "<h2>Summary</h2>"]
  for question, lines in answers.items():
    texts = [line for line in lines if not isinstance(line, tables.Table)]
    body.append(f"<h4>{html.escape(question)}</h4><ul>"
                + "".join(f"<li>{html.escape(line)}</li>" for line in texts) + "</ul>")
    body += [tables.to_html(t) for t in lines if isinstance(t, tables.Table)]
  body += ["<h2>Tables</h2>"] + [tables.to_html(t) for t in all_tables]
  body.append("<h2>Figures</h2>")
  body += [embedded(path, caption) for caption, path in figure_paths.items()]
  body += [f"<p>{html.escape(m)}</p>" for m in missing_figures]
  body += ["<h2>Provenance</h2>", f"<p>{html.escape(bits)}</p>", tables.to_html(stage_table),
           f"<pre>{html.escape(provenance)}</pre>"]
  page = (f"<!DOCTYPE html><html><head><meta charset='utf-8'><title>{html.escape(title)}"
          f"</title><style>{STYLE}</style></head><body>{''.join(body)}</body></html>")
  files.write_text(run_dir / "report.html", page)
  written["report.html"] = run_dir / "report.html"
  written.update({f"figures/{p.name}": p for p in [forest, *figure_paths.values()]})
  return written
