"""Test configuration: this folder on ``sys.path`` so that test modules import the helper ``_toy`` (the toy
trainer) the way ``_dist_coefficients.py`` does when torchrun runs it as a script."""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
