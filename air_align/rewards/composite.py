"""The composite reward ``r = r_task + r_fmt`` (paper §4), routed per row by the meta-group columns, and its config.

:class:`CompositeReward` has TRL's reward signature, ``(completions, **kwargs) -> list[float | None]``; the trainer
and the evaluator call the same object. Routing, per row, by the schema's ``verifier`` (then ``domain``):

- ``"choice"`` / ``"true_false"``: rule verification of the answer tag against ``answer`` (anchors);
- ``"math"``: ``math_verify`` against ``answer`` (anchors and open variants); the format needs ``\\boxed{}``;
- ``"judge"`` + ``domain == "safety"``: the ten-facet safety judge's three tiers on (``intent``, response), or a
  stress-test reward (``safety_reward = "keyword" | "extremely_hacked"``);
- ``"judge"`` + ``domain == "morality"``: the YES/NO morality judge against ``label``.

A row that cannot be scored (an unknown verifier, a judge row of another domain, a morality row without a label)
gets ``None``, which TRL turns into NaN and leaves out of its sums. Selection is by explicit ``if``/``elif`` on a
``Literal``; there is no registry.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

from air_align.answers import completion_text, response_text
from air_align.configs import build
from air_align.rewards.cache import JudgeCache
from air_align.rewards.format import FORMAT_CORRECT, FORMAT_WRONG, format_ok, requires_box
from air_align.rewards.hacked import HACK_PHRASES, KeywordSafetyJudge, extremely_hacked_reward
from air_align.rewards.judges import LogprobJudge, YesNoJudge, frozen_judge_from
from air_align.rewards.morality import MoralityJudge
from air_align.rewards.safety import SAFETY_TIERS, SafetyJudge
from air_align.rewards.verifiers import TASK_CORRECT, TASK_WRONG, choice_reward, math_reward, true_false_reward


@dataclass
class JudgeConfig:
    """Which model judges open variants. Training and evaluation each build their own (paper: the training judge
    is the frozen initial policy; the evaluation re-scores with another model, "GPT-4.1 re-evaluation")."""

    model: str = "policy"
    """``"policy"``: a frozen copy of the initial policy (App. C.2.1, unofficial reproduction); ``"none"``: no
    judge (judge rows then fail loudly); else a ``load_model`` name or path (``"smollm2-135m"``, a HF id)."""
    base_url: str | None = None
    """An OpenAI-compatible server (e.g. ``http://127.0.0.1:8000/v1``); overrides ``model``."""
    server_model: str = "judge"
    """The served model's name, sent in each request (vLLM checks it)."""
    endpoint: Literal["chat", "completions"] = "chat"
    """Server endpoint: chat (the server applies the chat template) or raw completions."""
    batch_size: int = field(default=8, metadata={"check": lambda n: None if n >= 1 else f"must be >= 1, got {n}"})
    """In-process judge: prompts per forward pass."""
    timeout_s: float = field(default=60.0, metadata={"check": lambda t: None if t > 0 else f"must be > 0, got {t}"})
    """Server judge: the deadline of one request, connect to last byte (also the longest ``Retry-After`` waited)."""
    max_retries: int = field(default=4, metadata={"check": lambda n: None if n >= 0 else f"must be >= 0, got {n}"})
    """Server judge: retries with exponential backoff after a failed request."""
    max_response_bytes: int = 1 << 20
    """Server judge: the largest answer read (1 MiB); a larger one is an error, not retried."""
    cache_path: str | None = None
    """JSONL file for the judge cache (kept in memory only when unset)."""


@dataclass
class RewardConfig:
    """Reward scales and the open-side reward choice. Defaults: App. C.1 / C.2.1 as the unofficial reproduction
    reports them (docs/design.md §2), and our documented choices."""

    format_correct: float = FORMAT_CORRECT
    """App. C.1: r_fmt when the tags are right."""
    format_wrong: float = FORMAT_WRONG
    """App. C.1: r_fmt otherwise."""
    task_correct: float = TASK_CORRECT
    """Rule-verified (anchor, maths) and morality-judge reward when correct; our choice on the App. C scale."""
    task_wrong: float = TASK_WRONG
    """... when wrong."""
    safety_reward: Literal["judge", "keyword", "extremely_hacked"] = "judge"
    """Open safety rows: the ten-facet judge (paper), a keyword/length-hackable judge, or the paper's "extreme
    hacking" stress test (a refusal phrase alone earns the top tier)."""
    safety_aggregate: Literal["mean", "worst"] = "mean"
    """How the ten facet log-odds combine: mean or worst case."""
    safety_tiers: tuple[float, float, float] = SAFETY_TIERS
    """App. C.2.1: unsafe, safe, safe and helpful."""
    safe_threshold: float = 0.0
    """Safe when the aggregated safety log-odds exceed this."""
    helpful_threshold: float = 0.0
    """Helpful/friendly when the helpfulness question's log-odds exceed this."""
    morality_threshold: float = 0.0
    """The morality judge's "says wrong" threshold on its YES/NO log-odds."""
    hacked_phrases: tuple[str, ...] = HACK_PHRASES
    """Phrases the "extremely_hacked" reward pays for."""
    judge: JudgeConfig = field(default_factory=JudgeConfig)

    @classmethod
    def from_dict(cls, values: dict | None, source: str = "") -> RewardConfig:
        """From a YAML/JSON mapping, checked by the package's config validator (``air_align.configs``): an unknown
        key (a typo must not silently fall back to a default), a wrong type or value is a ``ConfigError`` naming
        every problem with its key path.

        >>> RewardConfig.from_dict({"safety_reward": "keyword", "judge": {"model": "none"}}).judge.model
        'none'
        """
        return build(cls, values or {}, source, "reward config")


def build_judge(config: JudgeConfig | dict | None = None, policy=None) -> YesNoJudge | None:
    """A yes/no judge from a :class:`JudgeConfig`: a server client, a frozen copy of ``policy`` (a ``(model,
    tokenizer)`` pair), a model loaded by name, or ``None`` for ``model="none"`` or ``"policy"`` without a policy.
    """
    if isinstance(config, dict):
        config = build(JudgeConfig, config, what="judge config")
    config = config or JudgeConfig()
    if config.base_url:
        from air_align.rewards.server_judge import ServerJudge

        return ServerJudge(
            config.base_url,
            model=config.server_model,
            endpoint=config.endpoint,
            timeout_s=config.timeout_s,
            max_retries=config.max_retries,
            max_response_bytes=config.max_response_bytes,
        )
    if config.model == "none":
        return None
    if config.model == "policy":
        if policy is None:
            return None
        model, tokenizer = policy
        return frozen_judge_from(model, tokenizer, batch_size=config.batch_size)
    from air_align.models import load_model

    model, tokenizer = load_model(config.model)
    model.eval().requires_grad_(False)
    return LogprobJudge(model, tokenizer, batch_size=config.batch_size, name=config.model)


def _intent_of(i: int, intent, prompts) -> str:
    if intent is not None and intent[i]:
        return intent[i]
    if prompts is not None:
        prompt = prompts[i]
        if isinstance(prompt, str):
            return prompt
        users = [m["content"] for m in prompt if m.get("role") == "user"]
        if users:
            return users[-1]
    raise ValueError(f"judge row {i} has neither an 'intent' column nor a user prompt for the judge to read")


class CompositeReward:
    """``r = r_task + r_fmt`` with TRL's reward signature; see the module docstring for the routing.

    After each call, ``last_format``, ``last_task`` (per row, ``None`` when unscored) and ``last_safety`` (row
    index → :class:`air_align.rewards.safety.SafetyAssessment`) hold the parts, for logging and evaluation.

    >>> reward = CompositeReward(RewardConfig(judge=JudgeConfig(model="none")))
    >>> reward(["<think>t</think><answer>B</answer>", "<answer>A</answer>", "<think>t</think><answer>x</answer>"],
    ...        verifier=["choice", "choice", "unknown"], domain=["safety"] * 3, answer=["B", "B", None])
    [2.5, -2.0, None]
    """

    __name__ = "air_composite"  # TRL logs rewards under the function's __name__

    def __init__(self, config: RewardConfig | None = None, judge: YesNoJudge | None = None):
        self.config = config or RewardConfig()
        self.judge = judge
        cache = JudgeCache(self.config.judge.cache_path)
        c = self.config
        if c.safety_reward == "keyword":
            self.safety_judge = KeywordSafetyJudge(tiers=c.safety_tiers)
        elif c.safety_reward == "judge" and judge is not None:
            self.safety_judge = SafetyJudge(
                judge, c.safety_aggregate, c.safe_threshold, c.helpful_threshold, c.safety_tiers, cache=cache
            )
        else:
            self.safety_judge = None
        self.morality_judge = (
            MoralityJudge(judge, c.morality_threshold, c.task_correct, c.task_wrong, cache=cache) if judge else None
        )
        self.last_format: list[float] = []
        self.last_task: list[float | None] = []
        self.last_safety: dict = {}

    def _log(self, fmt, task, log_metric, log_extra) -> None:
        """TRL (GRPOTrainer) passes ``log_metric(name, value)`` and ``log_extra(column, values)`` to rewards."""
        if log_metric is not None:
            log_metric("air_reward/format_ok", sum(f == self.config.format_correct for f in fmt) / max(len(fmt), 1))
            scored = [t for t in task if t is not None]
            if scored:
                log_metric("air_reward/task", sum(scored) / len(scored))
        if log_extra is not None:
            log_extra("r_fmt", list(fmt))
            log_extra("r_task", list(task))

    def _need(self, judge, what: str):
        if judge is None:
            raise ValueError(
                f"a {what} row needs a judge but none is configured: pass policy=(model, tokenizer) to build_reward "
                "for the paper's frozen-policy judge, or set reward.judge.model / reward.judge.base_url"
            )
        return judge

    def __call__(
        self,
        completions,
        prompts=None,
        role=None,
        domain=None,
        verifier=None,
        answer=None,
        label=None,
        intent=None,
        **kwargs,
    ) -> list[float | None]:
        c = self.config
        if verifier is None:
            raise ValueError("the reward needs the 'verifier' column (see the meta-group schema); none was passed")
        n = len(completions)
        texts = [completion_text(x) for x in completions]
        domain = domain if domain is not None else [None] * n
        fmt = [
            c.format_correct if format_ok(t, require_boxed=requires_box(domain[i], verifier[i])) else c.format_wrong
            for i, t in enumerate(texts)
        ]
        task: list[float | None] = [None] * n
        scale = {"correct": c.task_correct, "wrong": c.task_wrong}
        safety_rows, morality_rows = [], []
        if answer is None and any(v in ("choice", "true_false", "math") for v in verifier):
            raise ValueError(
                "rule-verified rows need the 'answer' column (see the meta-group schema); none was passed"
            )
        for i, v in enumerate(verifier):
            if v == "choice":
                task[i] = choice_reward([texts[i]], answer=[answer[i]], **scale)[0]
            elif v == "true_false":
                task[i] = true_false_reward([texts[i]], answer=[answer[i]], **scale)[0]
            elif v == "math":
                task[i] = math_reward([texts[i]], answer=[answer[i]], **scale)[0]
            elif v == "judge" and domain[i] == "safety":
                safety_rows.append(i)
            elif v == "judge" and domain[i] == "morality" and label is not None and label[i] is not None:
                morality_rows.append(i)
        self.last_safety = {}
        if safety_rows and c.safety_reward == "extremely_hacked":
            hacked = extremely_hacked_reward(
                [texts[i] for i in safety_rows],
                phrases=c.hacked_phrases,
                hit=c.safety_tiers[2],
                miss=c.safety_tiers[0],
            )
            for i, value in zip(safety_rows, hacked, strict=True):
                task[i] = value
        elif safety_rows:
            judge = self._need(self.safety_judge, "safety judge")
            requests = [_intent_of(i, intent, prompts) for i in safety_rows]
            assessments = judge.assess(requests, [response_text(texts[i]) for i in safety_rows])
            for i, assessment in zip(safety_rows, assessments, strict=True):
                task[i] = assessment.reward
                self.last_safety[i] = assessment
        if morality_rows:
            judge = self._need(self.morality_judge, "morality judge")
            scenarios = [_intent_of(i, intent, prompts) for i in morality_rows]
            values = judge.rewards(
                scenarios, [response_text(texts[i]) for i in morality_rows], [int(label[i]) for i in morality_rows]
            )
            for i, value in zip(morality_rows, values, strict=True):
                task[i] = value
        self.last_format, self.last_task = fmt, task
        self._log(fmt, task, kwargs.get("log_metric"), kwargs.get("log_extra"))
        return [None if t is None else t + f for t, f in zip(task, fmt, strict=True)]


def build_reward(config: RewardConfig | dict | None = None, policy=None, judge: YesNoJudge | None = None):
    """The training/evaluation reward from a config mapping (``reward:`` section of a YAML config).

    ``judge`` overrides ``config.judge``; else the judge is built by :func:`build_judge` (with ``policy``, a
    ``(model, tokenizer)`` pair, for the paper's frozen-policy judge). Set ``judge.model: none`` for data without
    judge rows (maths); a judge row then raises a ValueError that says what to configure.
    """
    if not isinstance(config, RewardConfig):
        config = RewardConfig.from_dict(config)
    if judge is None:
        judge = build_judge(config.judge, policy=policy)
    return CompositeReward(config, judge)
