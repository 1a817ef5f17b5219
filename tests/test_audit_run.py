"""The bias audit end to end on a small synthetic export (launch/audit.py's library)."""
import json
from pathlib import Path

import numpy as np
import pytest

import kill
from configs import audit as audit_config
from configs import smoke
from scanbias_jax.cohort import manifest
from scanbias_jax.evaluate import audit
from scanbias_jax.experiments import audit as audit_run
from scanbias_jax.synth import cohort


# The small export the fixture audits and the kill test relaunches (as flags): 1.95 mm
# pixels keep part of the vendors' texture.
SMALL = {"synth.num_studies": 40, "synth.matrix": 128, "ingest.paper_grid.in_plane": 128,
         "audit.min_group": 6, "audit.folds": 3, "audit.n_permutations": 200}


@pytest.fixture(scope="module")
def audited(tmp_path_factory):
  config = smoke.get_config()
  config.update_from_flattened_dict(SMALL)
  workdir = tmp_path_factory.mktemp("audit")
  said = []
  audit_run.run(config, workdir, None, None, lambda *a: None)
  # A label that follows the vendor (a site that scans its stroke patients on the GE):
  # the audit must flag the vendor as a shortcut for it.
  rows = manifest.from_csv((workdir / "cohort" / "manifest.csv").read_text())
  labels = workdir / "labels.csv"
  labels.write_text("study_id,stroke\n" + "".join(
      f"{r['study_id']},{int(r['vendor'] == 'GE')}\n" for r in rows))
  results = audit_run.run(config, workdir, None, str(labels), lambda *a: said.append(a))
  return config, workdir, results, said


def test_vendor_is_named_and_constant_tags_are_reported_untestable(audited):
  _, workdir, results, said = audited
  vendor = results["named"]["vendor"]
  assert vendor["testable"] and vendor["groups"] == ["GE", "Siemens"]
  assert vendor["permutation_p"] < 0.05 and vendor["ci"]["auroc"][0] > 0.5
  assert results["named"]["kvp"] == {"testable": False, "reason": "one group only (120)"}
  assert not results["named"]["recon_diameter_mm"]["testable"]
  on_disk = json.loads((workdir / "audit" / "results.json").read_text())
  assert on_disk["named"]["vendor"]["auroc"] == pytest.approx(vendor["auroc"])
  assert any(stage == "audit" and text.startswith("vendor:") for stage, text in said)
  report = (workdir / "audit" / "report.md").read_text()
  assert "## The answer" in report and "vendor" in report.split("## Tables")[0]


def test_a_label_that_follows_the_vendor_is_flagged_as_a_shortcut(audited):
  results = audited[2]
  assert results["label_columns"] == ["stroke"]
  assert any(line.startswith("vendor is nameable from the images") and "stroke" in line
             for line in results["shortcut_risks"]), results["shortcut_risks"]
  assert not any(line.startswith("institution") for line in results["shortcut_risks"])


def test_institution_drawn_at_random_is_not_named(audited):
  """The synthetic export draws each study's institution at random: a planted attribute
  with no image signal."""
  institution = audited[2]["named"]["institution"]
  assert institution["testable"]
  assert institution["permutation_p"] > 0.05
  low, high = institution["ci"]["balanced_accuracy"]
  assert low <= institution["chance_balanced_accuracy"] <= high


def test_no_site_name_or_patient_information_leaves_the_audit(audited):
  _, workdir, _, _ = audited
  # report.html is report.md's text around base64 figures, where any short string can occur.
  outputs = "".join(p.read_text(errors="ignore") for p in (workdir / "audit").rglob("*")
                    if p.suffix in (".json", ".md", ".csv"))
  outputs += (workdir / "cohort" / "manifest.csv").read_text()
  for name in (*cohort.INSTITUTIONS, *cohort.LAST, "MRN", "ACC"):
    assert name not in outputs, name


def test_audit_killed_anywhere_resumes_to_the_same_results(audited, tmp_path):
  """SIGKILL during synthesis, ingest, the features, the naming and the CNN's training:
  the resumed audit
  (the launcher, the fixture's config and labels) writes the fixture's results.json."""
  _, workdir, _, _ = audited
  flags = [f"--config.{name}={value}" for name, value in SMALL.items()]
  killed_on = kill.kill_at(
      ["-m", "launch.audit", "--config=configs/smoke.py", *flags, f"--workdir={tmp_path}",
       f"--labels={workdir / 'labels.csv'}"],
      [r"\[synthesize\] 1/", r"\[ingest\] 1/", r"\[audit features\] 1/", r"\[audit\] vendor:",
       r"\[train\] name_attribute/\w+ epoch 1/"])
  assert len(killed_on) == 5
  assert (json.loads((tmp_path / "audit" / "results.json").read_text())
          == json.loads((workdir / "audit" / "results.json").read_text()))


def test_the_cnn_names_the_probes_strongest_attribute_on_held_out_studies(audited):
  config, workdir, results, _ = audited
  named = results["named"]
  strongest = max((a for a, r in named.items() if r["testable"]), key=lambda a: named[a]["auroc"])
  assert list(results["cnn"]) == [strongest]
  found = results["cnn"][strongest]
  assert found["testable"] and found["groups"] == named[strongest]["groups"]
  assert sum(found["split"].values()) == named[strongest]["n"]
  assert found["members"] == config.train.num_members
  for by in ("cnn", "probe"):
    assert found[by]["n"] == found["split"]["test"]
    assert np.sum(found[by]["confusion"]) == found["split"]["test"]
    assert 0.0 <= found[by]["ci"]["auroc"][0] <= found[by]["auroc"] <= found[by]["ci"]["auroc"][1]
  history = (workdir / "audit" / "name_attribute" / strongest / "metrics.jsonl").read_text()
  assert "val_balanced_accuracy" in history
  report = (workdir / "audit" / "report.md").read_text()
  assert "ShallowCNN ensemble on held-out studies" in report
  assert f"The CNN names the {audit.ATTRIBUTES[strongest]}" in report.split("## Tables")[0]


def test_audit_of_pydicoms_test_files_runs_end_to_end(tmp_path, capfd):
  """pydicom's own test files (MR, ultrasound, secondary captures, compressed, truncated,
  a malformed IS value, not-DICOM files): one study or file broken in any way stops
  nothing, each reject says why, nothing about them floods the console."""
  from pydicom.data import get_testdata_file
  root = Path(get_testdata_file("CT_small.dcm")).parent
  config = smoke.get_config()
  said = []
  results = audit_run.run(config, tmp_path, str(root), None, lambda *a: said.append(a))
  assert results["n_studies"] == 0
  assert all(not named["testable"] and named["reason"].startswith("no study passed ingest")
             for named in results["named"].values())
  rejects = (tmp_path / "cohort" / "rejects.csv").read_text()
  assert "malformed header value in NumberOfFrames (ValueError)" in rejects  # badVR.dcm
  assert "not a DICOM file" in rejects and "truncated pixel data" in rejects
  assert (tmp_path / "audit" / "report.html").exists()
  console = capfd.readouterr()
  assert "pydicom" not in console.out + console.err


@pytest.fixture(scope="module")
def export_audit(tmp_path_factory):
  """configs/audit.py's export (`make audit`) at 96 studies."""
  config = audit_config.get_config()
  config.synth.num_studies = 96
  config.audit.update(min_group=8, folds=3, n_permutations=40,
                      cnn_attributes=(), cnn_strongest=0)  # the CNN: the smoke fixture's
  return audit_run.run(config, tmp_path_factory.mktemp("export_audit"), None, None,
                       lambda *a: None)


def test_the_synthetic_export_hides_signals_the_audit_finds(export_audit):
  """Vendor, kernel and site (a low-dose protocol) are in the images and named; the
  station, drawn at random, is the planted null and is not."""
  named = export_audit["named"]
  for attribute in ("vendor", "kernel", "institution"):
    result = named[attribute]
    assert result["testable"], (attribute, result)
    assert result["permutation_p"] < 0.05, (attribute, result["permutation_p"])
    assert result["ci"]["auroc"][0] > 0.5, (attribute, result["ci"])
  assert len(named["vendor"]["groups"]) == 4 and len(named["kernel"]["groups"]) == 8
  station = named["station"]
  assert station["testable"] and station["permutation_p"] > 0.05
  low, high = station["ci"]["balanced_accuracy"]
  assert low <= station["chance_balanced_accuracy"] <= high
