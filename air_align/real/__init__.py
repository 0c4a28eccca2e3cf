"""air_align.real: the real tier (docs/design.md §5): SmolLM2-135M-Instruct trained with each method (``train``) and
the study that audits every result (``study``, ``air-align study``; settings in ``config.StudyConfig``). The audit
itself is ``air_align.audit.run``; docs/real-tier.md."""
