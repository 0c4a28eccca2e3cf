"""air_align.calibration: is a training reward AIR-ready? (docs/design.md §3; docs/calibration.md).

- ``references``: the reference responses (a correct and a wrong anchor answer, a refusal, a helpful answer, a
  non-answer, a hack, … per label) and the user's own file;
- ``check``: ``score_references`` and ``calibration_table``: expected reward and Δ per domain × label × role × kind,
  the verdict and the offsets b;
- ``report``: the table as Markdown, one plot, the terminal lines, and the files;
- ``run``: ``air-align calibrate``'s pipeline (the reward built as ``air-align train`` builds it, the rows, the
  scoring, the files).

The lab scores its worlds with this check (``air_align.lab.calibration``); the command is ``air_align.cli.calibrate``.
Nothing is imported here: import the submodule you need.
"""
