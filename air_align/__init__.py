"""air-align: context-invariant alignment training with AIR (Anchor Invariance Regularization).

Paper: "Towards Context-Invariant Safety Alignment for Large Language Models", ICML 2026, arXiv 2605.20994.
The maths lives in :mod:`air_align.objectives`; the TRL integration in :mod:`air_align.training`.
"""

__version__ = "0.1.0"
