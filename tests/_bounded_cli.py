"""Run several ``air-align`` command lines in one process under a memory cap; print each one's exit code and stderr.

``python tests/_bounded_cli.py EXTRA_MIB '[["train", "--config", "x.yaml"], …]'`` imports the heavy modules the
commands need, then caps the address space (``RLIMIT_AS``) at what the process already maps plus ``EXTRA_MIB``, so a
command that grows memory without bound dies with ``MemoryError`` instead of taking the machine; the caller bounds
the time with a subprocess timeout. One process for all the commands: torch and TRL are imported once.
Prints one JSON line: ``[{"argv": […], "rc": int, "stderr": str}, …]`` (a command that raised has rc ``"raised"``
and its exception in stderr).
"""

from __future__ import annotations

import contextlib
import io
import json
import resource
import sys


def mapped_bytes() -> int:
    with open("/proc/self/status") as f:
        return next(int(line.split()[1]) * 1024 for line in f if line.startswith("VmSize:"))


def main() -> None:
    extra_mib, commands = int(sys.argv[1]), json.loads(sys.argv[2])
    import air_align.calibration.run  # noqa: F401
    import air_align.data.build  # noqa: F401 - the heavy imports, before the cap
    import air_align.lab.reproduce  # noqa: F401
    import air_align.training.run  # noqa: F401
    from air_align.cli import main as cli_main

    cap = mapped_bytes() + extra_mib * 2**20
    resource.setrlimit(resource.RLIMIT_AS, (cap, resource.getrlimit(resource.RLIMIT_AS)[1]))
    results = []
    for argv in commands:
        err = io.StringIO()
        with contextlib.redirect_stderr(err), contextlib.redirect_stdout(io.StringIO()):
            try:
                rc = cli_main(argv)
            except BaseException as exc:  # MemoryError, RecursionError, SystemExit: what a user would have seen
                rc, err = "raised", io.StringIO(f"{type(exc).__name__}: {str(exc)[:300]}")
        results.append({"argv": argv, "rc": rc, "stderr": err.getvalue()[-2000:]})
    print(json.dumps(results))


if __name__ == "__main__":
    main()
