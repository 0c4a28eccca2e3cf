"""air-align: context-invariant alignment training with AIR (Anchor Invariance Regularization).

Paper: "Towards Context-Invariant Safety Alignment for Large Language Models", ICML 2026, arXiv 2605.20994.

>>> from air_align import AIRConfig, AIRTrainer  # doctest: +SKIP

The root re-exports the library's entry points and imports them on first use, so ``import air_align.files`` (or
``air-align --help``) does not pay for TRL. The maths is :mod:`air_align.objectives`; the TRL integration
:mod:`air_align.training`; the package map is docs/README.md.
"""

from air_align.threads import use_passive_wait
from air_align.version import __version__

# Before any module of the package imports torch: OpenMP threads that wait sleep instead of spinning, so another
# job on the machine's cores costs about its share instead of ~20× (air_align.threads, docs/performance.md).
use_passive_wait()

__all__ = ["AIRConfig", "AIRTrainer", "__version__"]
_LAZY = {"AIRConfig": "air_align.training.config", "AIRTrainer": "air_align.training.trainer"}


def __getattr__(name: str):
    """``air_align.AIRConfig`` / ``AIRTrainer``, imported on first use (PEP 562)."""
    if name not in _LAZY:
        raise AttributeError(f"module 'air_align' has no attribute {name!r}")
    import importlib

    value = getattr(importlib.import_module(_LAZY[name]), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
