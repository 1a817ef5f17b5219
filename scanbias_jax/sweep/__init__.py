"""Dose-response sweeps: the study's networks trained at every point of a grid of config
fields (signature strength x vendor mix by default); launch/sweep.py runs them."""
