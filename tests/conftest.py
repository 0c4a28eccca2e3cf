"""Test configuration: this folder on ``sys.path`` so that test modules import the helper ``_toy`` (the toy
trainer) the way ``_dist_coefficients.py`` does when torchrun runs it as a script; and ``air_align`` imported before
any test module imports torch, so that the tests too run with OpenMP's passive wait (``air_align.threads``)."""

import sys
from pathlib import Path

import air_align  # noqa: F401  (sets OMP_WAIT_POLICY=PASSIVE unless the environment chose a policy)

sys.path.insert(0, str(Path(__file__).resolve().parent))
