"""air_align.data: meta-group datasets (docs/design.md §1, §4; docs/data.md).

- ``schema``: the row fields, ``make_row`` and ``datasets.Dataset`` I/O (JSONL: ``air_align.files``);
- ``validate``: problems named by row / meta-group, ``check_rows``, ``summarize``;
- ``renderers``: the context renderers g(z, c) and the format instructions;
- ``sources``: real intents and jailbreak templates read offline from registry packages;
- ``build``: ``build_meta_groups`` with the ID/OOD split by family and held-out intents;
- ``external``: your own rows or intents from files or Hugging Face ids.

``air-align data build | validate | inspect`` is ``air_align.cli.data``.

Nothing heavy is imported here: import the submodule you need.
"""
