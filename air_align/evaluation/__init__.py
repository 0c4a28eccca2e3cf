"""air_align.evaluation: Acc, Acc_group, ID/OOD slices, dispersion, reports and plots (docs/design.md §4).

- ``scoring``: verdict functions (rule verifiers for anchors/maths, reading answers as the training reward does but
  without requiring the tag; the ``oracle-label`` keyword heuristic; the judge selection of ``--judge``);
- ``judge``: the LLM evaluation judge (``--judge model:NAME``);
- ``metrics``: pure metric functions over per-prompt records (Acc, Acc_group, slices, bootstrap CIs, over-refusal);
- ``generate``: batched chat-template generation; ``dispersion``: intra-group representation dispersion;
- ``evaluate``: the pipeline (``evaluate(model, tokenizer, rows, verdict=...) -> Evaluation``) and its outputs;
- ``report`` / ``plots``: report.md, the paper-style table, PNG plots;
- the audit of a model's context invariance per family, built on this package, is ``air_align.audit``; the
  commands ``air-align eval`` and ``report`` are ``air_align.cli.evaluate``.

See docs/evaluation.md.
"""
