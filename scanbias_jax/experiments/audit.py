"""The bias audit of a DICOM export (launch/audit.py): ingest as the study does, then
for every acquisition attribute "Name the X" from the images (the noise-texture probe;
a ShallowCNN ensemble too for the attributes the config names, experiments/audit_cnn.py),
the attributes' associations with each other, with age and sex and with any label
columns the user brings, and a report that flags the shortcut risks.

  <workdir>/synth/     the embedded synthetic default, when no export is given
  <workdir>/cohort/    ingest (manifest.csv with the acquisition columns, volumes)
  <workdir>/audit/     features.csv, results.json, report.md, report.html, figures/,
                       name_attribute/<attribute>/ (the CNN's training runs)
The statistics are evaluate/audit.py's; the brain of each volume is found by
thresholds (probe.brain_mask), as an export has no prepared masks.
"""
import dataclasses
from pathlib import Path

import joblib
import numpy as np

from scanbias_jax import console, files, keys, run_lock
from scanbias_jax.cohort import manifest
from scanbias_jax.evaluate import audit, probe
from scanbias_jax.experiments import audit_cnn, datasets, study
from scanbias_jax.report import audit_report

DEMOGRAPHICS = {"age_years": True, "sex": False}  # column -> numeric


def settings(config) -> audit.Settings:
  fields = {f.name for f in dataclasses.fields(audit.Settings)}
  return audit.Settings(**{k: v for k, v in config.audit.to_dict().items() if k in fields})


def features_of(path) -> tuple:
  """(probe features of one ingested volume, None) or (None, why it has none)."""
  volume, spacing = datasets.read_nifti(path)
  volume = np.asarray(volume, np.float32)
  try:
    return probe.texture_features(volume, probe.brain_mask(volume, float(spacing[0])),
                                  float(spacing[0])), None
  except ValueError as error:
    return None, str(error)


def study_features(cohort_dir: Path, rows, workers: int = 1,
                   progress=None) -> tuple[list, list[str]]:
  """Probe features of each ok study's volume (None where no brain texture fits) and
  the reasons of those without, in `workers` processes (joblib), in the rows' order."""
  table, skipped = [], []
  if not rows:
    return table, skipped
  results = joblib.Parallel(n_jobs=workers, return_as="generator")(
      joblib.delayed(features_of)(cohort_dir / row["path"]) for row in rows)
  for done, (row, (features, why)) in enumerate(zip(rows, results), start=1):
    table.append(features)
    if why:
      skipped.append(f"study {row['study_id']}: {why}")
    if progress:
      progress(done, len(rows))
  return table, skipped


def read_labels(path: str | None, study_ids) -> tuple[dict, list[str]]:
  """{column: [value per study]} of a user CSV keyed by `study_id` (the pseudonymised
  id of manifest.csv); missing studies get ""."""
  if not path:
    return {}, []
  rows = manifest.from_csv(Path(path).read_text())
  if not rows or "study_id" not in rows[0]:
    raise ValueError(f"{path}: a labels CSV needs a study_id column (manifest.csv's ids)")
  by_id = {r["study_id"]: r for r in rows}
  columns = [c for c in rows[0] if c != "study_id"]
  return {c: [by_id.get(s, {}).get(c, "") for s in study_ids] for c in columns}, columns


def associations(columns: dict, numeric: set) -> dict:
  """{(a, b): association}: every unordered pair of categorical columns once (Cramer's V
  is symmetric), and every categorical column with each numeric one (eta)."""
  names = list(columns)
  out = {}
  for i, a in enumerate(names):
    if a in numeric:
      continue
    for b in names[i + 1:] + [n for n in names[:i] if n in numeric]:
      out[(a, b)] = audit.association(columns[a], columns[b], numeric_b=b in numeric)
  return out


def cnn_named(config, chosen: audit.Settings, named: dict, rows, features, patients,
              cohort_dir: Path, out: Path, say) -> dict:
  """{attribute: audit_cnn.name_attribute(...)} for the attributes the CNN names."""
  attributes = audit_cnn.chosen(chosen, named)
  if not attributes:
    return {}
  key = keys.stream(keys.root(config.seed), "audit/cnn")
  say("audit", f"CNN: brain crops of {len(rows)} studies for {', '.join(attributes)}")
  crops, skipped = audit_cnn.study_crops(config, cohort_dir, rows, key, chosen.workers)
  found = {}
  for attribute in attributes:
    result = found[attribute] = audit_cnn.name_attribute(
        config, chosen, [r.get(attribute, "") for r in rows], patients, crops, features,
        keys.stream(key, attribute), str(out / audit_cnn.TASK / attribute))
    result["skipped"] = skipped
    if not result["testable"]:
      say("audit", f"{attribute} by CNN: not tested: {result['reason']}")
      continue
    cnn, beside = result["cnn"], result["probe"]
    say("audit", f"{attribute} by CNN on {result['split']['test']} held-out studies: "
        f"balanced accuracy {cnn['balanced_accuracy']:.2f}, AUROC {cnn['auroc']:.2f} "
        f"[{cnn['ci']['auroc'][0]:.2f}, {cnn['ci']['auroc'][1]:.2f}], "
        f"p = {cnn['permutation_p']:.3g} (probe on the same studies: AUROC "
        f"{beside['auroc']:.2f})")
  return found


def run(config, workdir: Path, dicom_root: str | None = None, labels_csv: str | None = None,
        say=console.say) -> dict:
  """Runs the audit, holding the workdir (run_lock); returns results.json's content."""
  with run_lock.held(workdir):
    return _run(config, workdir, dicom_root, labels_csv, say)


def _run(config, workdir: Path, dicom_root, labels_csv, say) -> dict:
  workdir.mkdir(parents=True, exist_ok=True)
  source = "dicom" if dicom_root else "synthetic"
  if not dicom_root:
    study.use_synthetic_secret(config)
    dicom_root = study.synthesize(config, workdir, say) / "dicom"
  cohort_dir = study.ingest(config, Path(dicom_root), workdir, say)
  rows = [r for r in manifest.from_csv((cohort_dir / "manifest.csv").read_text())
          if r["status"] == "ok"]
  out = workdir / "audit"
  chosen = settings(config)
  features, skipped = study_features(cohort_dir, rows, chosen.workers,
                                     console.progress("audit features", out=say))
  kept = [i for i, f in enumerate(features) if f is not None]
  rows = [rows[i] for i in kept]
  x = np.array([features[i] for i in kept])
  files.write_text(out / "features.csv", manifest.to_csv(
      [dict(study_id=r["study_id"], **dict(zip(probe.feature_names(), map(float, f))))
       for r, f in zip(rows, x)], ("study_id", *probe.feature_names())))
  patients = [r["patient_id"] or r["study_id"] for r in rows]
  named = {}
  for attribute in audit.ATTRIBUTES:
    values = [r.get(attribute, "") for r in rows]
    named[attribute] = audit.name_attribute(x, values, patients, chosen, seed=config.seed)
    result = named[attribute]
    say("audit", f"{attribute}: " + (
        f"balanced accuracy {result['balanced_accuracy']:.2f} (chance "
        f"{result['chance_balanced_accuracy']:.2f}), AUROC {result['auroc']:.2f} "
        f"[{result['ci']['auroc'][0]:.2f}, {result['ci']['auroc'][1]:.2f}], "
        f"p = {result['permutation_p']:.3g}" if result["testable"]
        else f"not tested: {result['reason']}"))
  labels, label_columns = read_labels(labels_csv, [r["study_id"] for r in rows])
  columns = {a: [r.get(a, "") for r in rows] for a in (*audit.ATTRIBUTES, *DEMOGRAPHICS)}
  columns.update(labels)
  found = associations(columns, {c for c, numeric in DEMOGRAPHICS.items() if numeric})
  audit.add_q_values(named.values(), "permutation_p", "permutation_q")
  audit.add_q_values(found.values(), "p", "q")
  risks = audit.shortcut_risks(named, found, label_columns + list(DEMOGRAPHICS))
  by_cnn = cnn_named(config, chosen, named, rows, x, patients, cohort_dir, out, say)
  results = dict(source=source, n_studies=len(rows), skipped=skipped,
                 settings=dataclasses.asdict(chosen), features=probe.feature_names(),
                 named=named, cnn=by_cnn, label_columns=label_columns,
                 associations=[dict(a=a, b=b, **v) for (a, b), v in found.items()],
                 shortcut_risks=risks)
  files.write_json(out / "results.json", results, indent=1)
  written = audit_report.render_audit(results, out)
  say("audit", f"{written['report.md']} and {written['report.html']}")
  return results

