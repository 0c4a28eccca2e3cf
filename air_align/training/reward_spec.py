"""The reward functions a run names: ``reward: composite`` | ``toy`` | ``module:function`` (comma-separated).

Its own light module (no TRL import), so that ``air-align calibrate`` builds exactly the reward ``air-align train``
builds without paying for the trainer's imports; ``recipe.resolve_rewards`` is this function.
"""

from __future__ import annotations

import importlib
import inspect

from air_align.data.schema import FIELDS
from air_align.rewards.composite import build_reward
from air_align.training.toy import toy_reward

TRL_REWARD_KWARGS = ("prompts", "completions", "completion_ids", "trainer_state", "log_extra", "log_metric")
"""The keyword arguments TRL 1.16's ``GRPOTrainer`` passes every reward function, besides one list per dataset column
(``_calculate_rewards``: ``reward_func(prompts=…, completions=…, completion_ids=…, **reward_kwargs)``); ``air-align
calibrate`` passes ``prompts``, ``completions`` and the columns."""


def check_reward_function(func, name: str) -> None:
    """Raise unless ``func`` can be called as TRL calls a reward: the keywords :data:`TRL_REWARD_KWARGS` and one per
    column of a meta-group row (:data:`~air_align.data.schema.FIELDS`), i.e. ``(completions, **kwargs)`` with any
    named columns it reads (docs/rewards.md).

    >>> import os
    >>> check_reward_function(os.system, "os:system")  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    ValueError: reward 'os:system' has the signature (command), which cannot take the keyword arguments a reward ...
    """
    keywords = dict.fromkeys([*TRL_REWARD_KWARGS, *FIELDS])
    fix = (
        "a reward function is `def my_reward(completions, **kwargs) -> list[float]`, reading the columns it needs "
        "(answer, role, …) from kwargs (docs/rewards.md)"
    )
    try:
        signature = inspect.signature(func)
    except (TypeError, ValueError):  # some built-ins do not describe their arguments
        raise ValueError(f"reward {name!r}: its signature cannot be read, so it cannot be checked; {fix}") from None
    try:
        signature.bind(**keywords)
    except TypeError as err:
        raise ValueError(
            f"reward {name!r} has the signature {signature}, which cannot take the keyword arguments a reward is "
            f"called with (prompts=, completions=, completion_ids=, trainer_state=, … and one per data column: "
            f"{err}); {fix}"
        ) from None


def import_reward(name: str):
    """The function ``module:function`` names, checked against the reward contract (:func:`check_reward_function`).

    >>> import_reward("air_align.rewards.verifiers:choice_reward").__name__
    'choice_reward'
    """
    module, attr = name.split(":", 1)
    func = getattr(importlib.import_module(module), attr, None)
    if not callable(func):
        raise ValueError(f"reward {name!r}: {module} has no function {attr!r}")
    check_reward_function(func, name)
    return func


def reward_names(spec: str) -> list[str]:
    """The names of a comma-separated reward spec, each known (``composite``, ``toy``) or ``module:function``.

    >>> reward_names("composite, air_align.rewards.format:format_reward")
    ['composite', 'air_align.rewards.format:format_reward']
    """
    names = [s.strip() for s in str(spec).split(",") if s.strip()]
    for name in names:
        if name not in ("composite", "toy") and ":" not in name:
            raise ValueError(
                f"unknown reward {name!r}; use reward=composite, reward=toy or module:function "
                "(e.g. air_align.rewards.verifiers:choice_reward)"
            )
    if not names:
        raise ValueError("reward is empty: name at least one reward function (e.g. reward=toy)")
    return names


def check_reward_spec(spec: str) -> None:
    """Raise, before any model loads, what :func:`resolve_rewards` would raise for ``spec`` (an unknown name, a
    ``module:function`` that is missing or breaks the reward contract), without building a composite's judge."""
    for name in reward_names(spec):
        if ":" in name:
            import_reward(name)


def resolve_rewards(spec: str, policy=None, reward_config: dict | None = None, judge=None) -> list:
    """Reward callables for a comma-separated spec.

    ``composite`` is ``air_align.rewards.composite.build_reward(reward_config, policy, judge)``: with the default
    judge (``model: policy``) its judge is a frozen copy of ``policy`` (a ``(model, tokenizer)`` pair) taken now,
    before any update, as in the paper (App. C.2.1); ``judge`` replaces the configured one (``build_trainer`` passes
    the judge it places on the trainer's device, ``air_align.rewards.training_judge``). ``toy`` is
    ``air_align.training.toy.toy_reward``; ``module:function`` imports any function with the reward signature
    (:func:`import_reward`).
    """
    funcs = []
    for name in reward_names(spec):
        if name == "composite":
            funcs.append(build_reward(reward_config, policy=policy, judge=judge))
        elif name == "toy":
            funcs.append(toy_reward)
        else:
            funcs.append(import_reward(name))
    return funcs
