"""air_align.lab: the CPU-scale controlled testbed (docs/design.md §5, docs/lab.md).

- ``world``: intents with a known correct behaviour, anchors, wrapper families (ID / OOD), splits, schema rows;
- ``responses``: the response grammar and the completion reader; ``oracle``: correctness (the evaluation);
- ``judge``: the training rewards (noisy, hackable rule judge on a log-odds scale; anchors; format; stress test);
- ``tokenizer``: the word-level tokenizer; ``warmstart``: SFT warm start and its context dependence;
- ``reproduce``: the grids of ``air-align reproduce`` and ``air-align demo`` (the command line: ``air_align.cli.lab``);
- ``calibration``: each world's calibration table, ``air_align.calibration`` on the lab's own responses.
"""
