"""CPU threads: what a busy machine costs, and the one place that sets the thread count.

Measured (docs/performance.md, "Shared cores"): with OpenMP's default wait policy, a torch thread that reaches a
barrier first *spins* for its peer. When another job holds one of the cores, the peer is descheduled and the spinner
burns its time slice waiting: a 20-step tiny ``air-align train`` with 2 threads beside one busy loop took ~20× as long
as alone, while with ``OMP_WAIT_POLICY=PASSIVE`` (waiting threads sleep) it cost about what the lost core is worth.
OpenMP reads the policy once, when torch loads it, so :data:`WAIT_POLICY` is set (unless the user set one) by
``air_align/__init__.py``, before any of the package's modules imports torch; a program that imports torch before
air_align keeps OpenMP's default.

:func:`set_threads` is what every long-running command's ``--threads`` calls (and the lab's worker processes, with
one thread each): it sets torch's intra-op threads and the environment that child processes inherit.
"""

from __future__ import annotations

import os

WAIT_POLICY = "PASSIVE"
"""``OMP_WAIT_POLICY`` of every air-align process unless the environment already sets one."""
THREADS_ENV = "AIR_ALIGN_THREADS"
"""Environment variable read by :func:`set_threads` when ``--threads`` is not given."""


def use_passive_wait() -> None:
    """Set ``OMP_WAIT_POLICY=PASSIVE`` unless the environment names a policy; effective only before torch loads."""
    os.environ.setdefault("OMP_WAIT_POLICY", WAIT_POLICY)


def set_threads(threads: int | None = None) -> int:
    """Use ``threads`` torch CPU threads in this process and its children; returns the count in use.

    ``None`` reads ``$AIR_ALIGN_THREADS``, and without it keeps torch's default (one per physical core, or
    ``OMP_NUM_THREADS``). Raises ``ValueError`` for a count below 1.

    >>> set_threads() >= 1
    True
    """
    if threads is None and os.environ.get(THREADS_ENV, "").strip():
        raw = os.environ[THREADS_ENV].strip()
        if not raw.isdigit():
            raise ValueError(f"{THREADS_ENV}={raw!r}: expected a whole number of threads (e.g. 1)")
        threads = int(raw)
    import torch  # heavy: imported when a command is about to work, not when the CLI parses

    if threads is None:
        return torch.get_num_threads()
    if threads < 1:
        raise ValueError(f"--threads {threads}: use at least 1 thread (e.g. --threads 1 on a busy machine)")
    torch.set_num_threads(threads)
    for name in ("OMP_NUM_THREADS", "MKL_NUM_THREADS"):  # children (workers, accelerate) start with the same count
        os.environ[name] = str(threads)
    return threads


def add_threads_argument(parser) -> None:
    """The ``--threads N`` option of a long-running command (argparse only: no torch import here)."""
    parser.add_argument(
        "--threads",
        type=int,
        default=None,
        metavar="N",
        help=f"torch CPU threads (default: ${THREADS_ENV}, else one per core); waiting threads sleep "
        "(OMP_WAIT_POLICY=PASSIVE), so a busy machine costs about its lost cores",
    )
