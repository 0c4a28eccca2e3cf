"""The reward functions a run names: ``reward: composite`` | ``toy`` | ``module:function`` (comma-separated).

Its own light module (no TRL import), so that ``air-align calibrate`` builds exactly the reward ``air-align train``
builds without paying for the trainer's imports; ``recipe.resolve_rewards`` is this function.
"""

from __future__ import annotations

import importlib

from air_align.rewards.composite import build_reward
from air_align.training.toy import toy_reward


def resolve_rewards(spec: str, policy=None, reward_config: dict | None = None, judge=None) -> list:
    """Reward callables for a comma-separated spec.

    ``composite`` is ``air_align.rewards.composite.build_reward(reward_config, policy, judge)``: with the default
    judge (``model: policy``) its judge is a frozen copy of ``policy`` (a ``(model, tokenizer)`` pair) taken now,
    before any update, as in the paper (App. C.2.1); ``judge`` replaces the configured one (``build_trainer`` passes
    the judge it places on the trainer's device, ``air_align.rewards.training_judge``). ``toy`` is
    ``air_align.training.toy.toy_reward``; ``module:function`` imports any function (a TRL-signature reward).
    """
    funcs = []
    for name in [s.strip() for s in spec.split(",") if s.strip()]:
        if name == "composite":
            funcs.append(build_reward(reward_config, policy=policy, judge=judge))
        elif name == "toy":
            funcs.append(toy_reward)
        elif ":" in name:
            module, attr = name.split(":", 1)
            func = getattr(importlib.import_module(module), attr, None)
            if not callable(func):
                raise ValueError(f"reward {name!r}: {module} has no function {attr!r}")
            funcs.append(func)
        else:
            raise ValueError(
                f"unknown reward {name!r}; use reward=composite, reward=toy or module:function "
                "(e.g. air_align.rewards.verifiers:choice_reward)"
            )
    if not funcs:
        raise ValueError("reward is empty: name at least one reward function (e.g. reward=toy)")
    return funcs
