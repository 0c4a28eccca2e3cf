"""air-align: context-invariant alignment training with AIR (Anchor Invariance Regularization).

Paper: "Towards Context-Invariant Safety Alignment for Large Language Models", ICML 2026, arXiv 2605.20994.
The maths lives in :mod:`air_align.objectives`; the TRL integration in :mod:`air_align.training`.
"""

from air_align.threads import use_passive_wait

# Before any module of the package imports torch: OpenMP threads that wait sleep instead of spinning, so another
# job on the machine's cores costs about its share instead of ~20× (air_align.threads, docs/performance.md).
use_passive_wait()

__version__ = "0.1.0"
