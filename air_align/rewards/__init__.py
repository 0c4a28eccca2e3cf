"""air_align.rewards: the composite reward r = r_task + r_fmt (paper §4) and the judges behind it.

Every reward has TRL's signature ``(completions, **kwargs) -> list[float | None]`` and reads the meta-group columns
(``role``, ``domain``, ``verifier``, ``answer``, ``label``, ``intent``) from kwargs, so the trainer and the evaluator
call the same functions. Modules: ``format`` (tags), ``verifiers`` (choice, true/false, math_verify), ``judges``
(in-process log-prob judge, frozen-policy copy), ``server_judge`` (OpenAI-compatible server), ``safety`` (ten
facets, three tiers), ``morality`` (YES/NO), ``hacked`` (stress tests), ``cache``, ``composite``
(``CompositeReward``, ``build_reward``, ``build_judge``). See docs/rewards.md.

Nothing is imported here so that ``import air_align.rewards.format`` stays light.
"""


def eval_judge_verdict(name: str):
    """The evaluation judge's verdict function for ``air-align eval --judge model:NAME`` (see ``eval_judge``)."""
    from air_align.rewards.eval_judge import eval_judge_verdict as build

    return build(name)
