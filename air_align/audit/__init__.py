"""air_align.audit: a model's context invariance before training (docs/real-tier.md).

- ``rows``: every intent's anchors and one open variant of every wrapper family (ID and OOD);
- ``run``: the audit itself (``run_audit``: the evaluation of ``air_align.evaluation`` plus the audit's numbers);
- ``metrics``: flip rates, invariance per family, over-refusal; ``report``: its report section and plot.

The command is ``air_align.cli.audit``; the real tier's study audits every trained model with it.
Nothing is imported here: import the submodule you need.
"""
