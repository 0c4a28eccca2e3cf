"""air_align.rewards: the composite reward r = r_task + r_fmt (paper §4) and the judges behind it.

Every reward has TRL's signature ``(completions, **kwargs) -> list[float | None]`` and reads the meta-group columns
(``role``, ``domain``, ``verifier``, ``answer``, ``label``, ``intent``) from kwargs. Answers are read by
``air_align.answers``, and anchors / maths are checked by ``verifiers.check_answer``, the same check the evaluation
metric calls (with ``require_tag=False``). Modules: ``format`` (tags), ``verifiers`` (choice, true/false,
math_verify), ``judges`` (in-process log-prob judge, frozen-policy copy), ``training_judge`` (the training judge
placed on the trainer's device), ``server_judge`` (OpenAI-compatible server),
``safety`` (ten facets, three tiers), ``morality`` (YES/NO), ``hacked`` (stress tests), ``cache``, ``composite``
(``CompositeReward``, ``build_reward``, ``build_judge``). See docs/rewards.md.

Nothing is imported here so that ``import air_align.rewards.format`` stays light.
"""
