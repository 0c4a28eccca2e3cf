"""air_align.evaluation: Acc, Acc_group, ID/OOD slices, dispersion, reports and plots (DESIGN.md §3).

- ``scoring``: verdict functions (rule verifiers for anchors/maths, the ``oracle-label`` keyword heuristic, seams for
  LLM judges);
- ``metrics``: pure metric functions over per-prompt records (Acc, Acc_group, slices, bootstrap CIs, over-refusal);
- ``generate``: batched chat-template generation; ``dispersion``: intra-group representation dispersion;
- ``evaluate``: the pipeline (``evaluate(model, tokenizer, rows, verdict=...)``) and its outputs;
- ``report`` / ``plots``: report.md, the paper-style table, PNG plots; ``cli``: ``air-align eval`` and ``report``.

See docs/evaluation.md.
"""
