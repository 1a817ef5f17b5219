"""Seed-ensemble training: pure member program, vmapped and sharded ensemble, run loop."""
from scanbias_jax.train.ensemble import (Ensemble, best, last, make_ensemble, make_mesh,
                                        make_train, plan)
from scanbias_jax.train.member import make_member, make_member_train
