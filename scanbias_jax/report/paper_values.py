"""The paper's published numbers (`paper.txt`, Section 4), typed in as reference data.

Values are (mean, std) in the paper's own units, std None where the paper gives
none. Column keys: "validation" (the condition's own validation set), "mixed"
(all vendors' test studies, the paper's "Test - Mixed" / "Full Test Set") and the
vendor names "GE" / "Siemens" (test studies of that vendor). These are the only
numbers in the library that do not come from a run; the report shows them beside
ours and never in place of ours.
"""

# Table 2 (Section 4.1, "Name the Manufacturer!"): two ensembles ("groups") of five
# models each. Accuracy columns in percent; AUROC as a fraction. The "Siemens" and
# "GE" columns are accuracy on that vendor's test studies ("not a single image
# coming from a Siemens machine was misclassified").
TABLE2 = {
    "Group 1": {"accuracy": (98.11, 0.65), "auroc": (0.99, 0.01),
                "Siemens": (100.0, None), "GE": (96.21, 1.31)},
    "Group 2": {"accuracy": (98.86, 1.25), "auroc": (0.99, 0.01),
                "Siemens": (100.0, None), "GE": (97.72, 2.21)},
}


def _rows(validation, mixed, ge, siemens):
  """One metric row of Tables 3-5: (mean, std) per column, None where not reported."""
  return {"validation": validation, "mixed": mixed, "GE": ge, "Siemens": siemens}


# Table 3 (Section 4.2): six models trained on mixed-vendor Spheres data, percent
# (AUROC too). Columns: Validation - Mixed, Test - Mixed, Test on GE, Test on Siemens.
TABLE3 = {
    "easy": {
        "accuracy": _rows((98.8, 0.0), (99.0, 0.0), (99.6, 0.0), (98.4, 0.0)),
        "specificity": _rows((98.5, 0.0), (98.1, 0.0), (99.6, 0.0), (96.6, 0.1)),
        "sensitivity": _rows((99.0, 0.0), (99.8, 0.0), (99.6, 0.0), (100.0, 0.0)),
        "auroc": _rows((99.9, 0.0), (99.6, 0.0), (100.0, 0.0), (99.2, 0.0)),
    },
    "medium": {
        "accuracy": _rows((85.3, 0.1), (84.1, 0.1), (86.6, 0.1), (81.5, 0.1)),
        "specificity": _rows((89.7, 0.9), (88.1, 0.6), (90.8, 0.5), (85.4, 0.8)),
        "sensitivity": _rows((80.9, 0.4), (80.8, 0.2), (82.5, 0.1), (77.6, 0.3)),
        "auroc": _rows((90.0, 0.0), (88.7, 0.0), (91.4, 0.0), (85.8, 0.1)),
    },
    "hard": {
        "accuracy": _rows((70.6, 1.8), (68.2, 1.5), (69.1, 1.8), (67.1, 1.3)),
        "specificity": _rows((77.4, 10.7), (76.5, 8.9), (77.5, 8.4), (75.4, 9.6)),
        "sensitivity": _rows((73.7, 9.9), (60.2, 8.2), (61.0, 7.9), (59.4, 8.6)),
        "auroc": _rows((76.3, 1.8), (77.9, 1.5), (80.1, 1.7), (75.8, 1.3)),
    },
}

# Table 4 (Section 4.2): models trained on Spheres_GE, percent. Columns: Validation
# GE, Test GE, Test Siemens; the paper has no mixed test column here.
TABLE4 = {
    "easy": {
        "accuracy": _rows((99.5, 0.0), None, (98.6, 0.0), (83.3, 0.5)),
        "specificity": _rows((100.0, 0.0), None, (97.9, 0.0), (66.3, 2.0)),
        "sensitivity": _rows((99.1, 0.0), None, (99.2, 0.0), (100.0, 0.0)),
        "auroc": _rows((99.8, 0.0), None, (98.7, 0.0), (91.9, 0.1)),
    },
    "medium": {
        "accuracy": _rows((95.7, 0.1), None, (92.5, 0.1), (70.0, 0.7)),
        "specificity": _rows((98.0, 0.0), None, (92.1, 0.4), (47.9, 3.4)),
        "sensitivity": _rows((93.5, 0.2), None, (93.1, 0.1), (91.5, 1.5)),
        "auroc": _rows((98.2, 0.0), None, (97.4, 0.0), (82.6, 1.0)),
    },
    "hard": {
        "accuracy": _rows((92.9, 0.3), None, (88.1, 1.0), (67.9, 0.5)),
        "specificity": _rows((91.2, 1.2), None, (83.3, 3.0), (45.8, 6.9)),
        "sensitivity": _rows((94.4, 0.0), None, (92.7, 0.4), (89.4, 4.2)),
        "auroc": _rows((96.1, 0.0), None, (95.7, 0.2), (78.4, 0.7)),
    },
}

# Table 5 (Section 4.2): models trained on Spheres_Si, percent. Columns: Validation
# Siemens, Test GE, Test Siemens.
TABLE5 = {
    "easy": {
        "accuracy": _rows((97.5, 0.2), None, (95.7, 0.7), (95.9, 0.6)),
        "specificity": _rows((97.1, 0.2), None, (98.3, 0.1), (97.1, 0.2)),
        "sensitivity": _rows((97.9, 0.2), None, (93.1, 1.5), (94.7, 1.2)),
        "auroc": _rows((99.1, 0.0), None, (97.5, 0.3), (96.9, 0.3)),
    },
    "medium": {
        "accuracy": _rows((84.3, 0.5), None, (84.0, 0.2), (78.0, 0.2)),
        "specificity": _rows((88.2, 2.6), None, (95.0, 0.5), (88.3, 1.0)),
        "sensitivity": _rows((80.2, 1.2), None, (73.2, 0.8), (67.9, 0.8)),
        "auroc": _rows((90.1, 0.3), None, (89.0, 0.1), (84.4, 0.5)),
    },
    "hard": {
        "accuracy": _rows((65.6, 0.5), None, (58.2, 0.6), (65.2, 0.4)),
        "specificity": _rows((73.5, 3.8), None, (90.0, 2.8), (88.3, 0.9)),
        "sensitivity": _rows((57.3, 1.4), None, (27.2, 6.9), (42.7, 2.9)),
        "auroc": _rows((73.1, 0.5), None, (71.7, 1.0), (77.2, 0.3)),
    },
}

# Spheres tables by training condition ("mixed" or the vendor trained on).
SPHERES = {"mixed": ("Table 3", TABLE3), "GE": ("Table 4", TABLE4),
           "Siemens": ("Table 5", TABLE5)}

# Table 6 (Section 4.3): mean Dice (no std given) of models trained on Skull,
# Skull_GE, Skull_Si. The paper prints "-" for the full test set of single-vendor
# models (not reported).
TABLE6 = {
    "mixed": {"validation": (0.9848, None), "GE": (0.9859, None),
              "Siemens": (0.9704, None), "mixed": (0.9784, None)},
    "GE": {"validation": (0.9712, None), "GE": (0.9689, None),
           "Siemens": (0.9664, None), "mixed": None},
    "Siemens": {"validation": (0.9702, None), "GE": (0.9564, None),
                "Siemens": (0.9715, None), "mixed": None},
}

PAPER_GROUPS = ("GE", "Siemens")
