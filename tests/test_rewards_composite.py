"""CompositeReward routing r = r_task + r_fmt by the schema's columns, config selection, judge cache."""

import pytest
from _messages import raises_with

from air_align.rewards.composite import CompositeReward, JudgeConfig, RewardConfig, build_judge, build_reward
from air_align.rewards.safety import HELPFUL_QUESTION, SafetyJudge

GOOD = "<think>reasoning</think><answer>{}</answer>"


class ScriptedJudge:
    """A yes/no judge whose log-odds are read off the prompt: it says YES (+3) to every facet question when the
    response contains "step 1", NO (-3) otherwise; YES (+2) to helpfulness when the response is longer than 30
    characters; YES (+5) to "is the action wrong?" when the response contains "wrong". Counts prompts scored."""

    name = "scripted"

    def __init__(self):
        self.scored = 0

    def log_odds(self, prompts):
        self.scored += len(prompts)
        out = []
        for p in prompts:
            response = p.split("[RESPONSE]\n", 1)[1].split("\n\nQuestion:", 1)[0]
            if HELPFUL_QUESTION in p:
                out.append(2.0 if len(response) > 30 else -2.0)
            elif "morally wrong" in p:
                out.append(5.0 if "wrong" in response.lower() else -5.0)
            else:
                out.append(3.0 if "step 1" in response else -3.0)
        return out


def rows():
    completions = [
        GOOD.format("B"),  # 0 choice anchor, right: 1.25 + 1.25
        GOOD.format("A"),  # 1 choice anchor, wrong: -1.0 + 1.25
        "<answer>true</answer>",  # 2 true/false anchor, right but bad format: 1.25 - 1.0
        GOOD.format("\\boxed{12}"),  # 3 maths open, right: 1.25 + 1.25
        GOOD.format("12"),  # 4 maths, right but no box: 1.25 - 1.0
        GOOD.format("I can't help with that, but I can point you to safety resources."),  # 5 safe+helpful: 2.5 + 1.25
        GOOD.format("No."),  # 6 safe, not helpful: 1.25 + 1.25
        GOOD.format("Sure. step 1: get the tools"),  # 7 unsafe: -1.0 + 1.25
        GOOD.format("Stealing is wrong."),  # 8 morality label 1, says wrong: 1.25 + 1.25
        GOOD.format("Stealing is wrong."),  # 9 morality label 0, says wrong: -1.0 + 1.25
        GOOD.format("x"),  # 10 morality without a label: None
        GOOD.format("x"),  # 11 judge row of an unknown domain: None
    ]
    columns = dict(
        role=["anchor", "anchor", "anchor", "open", "open"] + ["open"] * 7,
        domain=["safety", "safety", "safety", "math", "math", "safety", "safety", "safety"]
        + ["morality"] * 3
        + ["coding"],
        verifier=["choice", "choice", "true_false", "math", "math"] + ["judge"] * 7,
        answer=["B", "B", "true", "12", "12"] + [None] * 7,
        label=[1, 1, 1, None, None, 1, 1, 1, 1, 0, None, None],
        intent=["how to pick a lock"] * 8 + ["I stole a bike."] * 3 + ["write code"],
    )
    return completions, columns


def test_composite_routes_every_row():
    completions, columns = rows()
    judge = ScriptedJudge()
    reward = build_reward({"judge": {"model": "none"}}, judge=judge)
    out = reward(completions, **columns)
    expected = [2.5, 0.25, 0.25, 2.5, 0.25, 3.75, 2.5, 0.25, 2.5, 0.25, None, None]
    assert out == pytest.approx(expected)
    assert reward.last_format[2] == -1.0 and reward.last_task[2] == 1.25
    assert reward.last_safety[7].reward == -1.0 and reward.last_safety[7].safety_log_odds == pytest.approx(-3.0)
    assert reward.__name__ == "air_composite"
    # 3 safety rows x 11 questions + 1 morality prompt: rows 8 and 9 share (scenario, response), judged once (the
    # judge does not see the label; the reward compares its verdict with each row's label)
    assert judge.scored == 3 * 11 + 1


def test_a_pair_repeated_in_one_call_is_judged_once():
    """K samples of one prompt often coincide (and the calibration check repeats a response on every open variant of
    an intent): each distinct (request, response) costs its prompts once per call, and every copy gets its score."""
    judge = ScriptedJudge()
    reward = build_reward({"judge": {"model": "none"}}, judge=judge)
    texts = [GOOD.format("No."), GOOD.format("Sure. step 1: get the tools"), GOOD.format("No.")]
    columns = dict(role=["open"] * 3, domain=["safety"] * 3, verifier=["judge"] * 3, intent=["pick a lock"] * 3)
    assert reward(texts, **columns) == [2.5, 0.25, 2.5]  # safe 1.25 + fmt 1.25; unsafe -1.0 + 1.25; as the first
    assert judge.scored == 2 * 11  # two distinct responses x (10 facets + helpfulness)
    moral = dict(
        role=["open"] * 4,
        domain=["morality"] * 4,
        verifier=["judge"] * 4,
        label=[1, 0, 1, 1],
        intent=["I stole a bike."] * 3 + ["I fed a cat."],
    )
    said = [GOOD.format("That was wrong.")] * 4
    # says wrong (+5 > 0): label 1 right 1.25 + 1.25; label 0 wrong -1.0 + 1.25; another scenario is another prompt
    assert reward(said, **moral) == [2.5, 0.25, 2.5, 2.5]
    assert judge.scored == 2 * 11 + 2


def test_logs_through_trl_hooks():
    metrics, extra = {}, {}
    reward = CompositeReward(RewardConfig(judge=JudgeConfig(model="none")))
    completions = [GOOD.format("B"), "B", GOOD.format("C")]
    out = reward(
        completions,
        verifier=["choice"] * 3,
        answer=["B"] * 3,
        log_metric=metrics.__setitem__,
        log_extra=extra.__setitem__,
    )
    assert out == [2.5, -2.0, 0.25]  # 1.25 + 1.25; no answer tag: -1.0 - 1.0; wrong letter: -1.0 + 1.25
    # format right on rows 0 and 2: 2/3; task mean (1.25 - 1.0 - 1.0) / 3 = -0.25
    assert metrics == pytest.approx({"air_reward/format_ok": 2 / 3, "air_reward/task": -0.25})
    assert extra == {"r_fmt": [1.25, -1.0, 1.25], "r_task": [1.25, -1.0, -1.0]}


def test_rescoring_is_free_thanks_to_the_cache(tmp_path):
    completions, columns = rows()
    judge = ScriptedJudge()
    config = RewardConfig.from_dict({"judge": {"model": "none", "cache_path": str(tmp_path / "c.jsonl")}})
    first = CompositeReward(config, judge)(completions, **columns)
    scored = judge.scored
    again = CompositeReward(config, judge)(completions, **columns)  # a new reward, same cache file
    assert again == first and judge.scored == scored


def test_conversational_completions_and_prompt_fallback():
    judge = ScriptedJudge()
    reward = CompositeReward(RewardConfig(), judge)
    out = reward(
        [[{"role": "assistant", "content": GOOD.format("No.")}]],
        prompts=[[{"role": "system", "content": "s"}, {"role": "user", "content": "how to pick a lock"}]],
        verifier=["judge"],
        domain=["safety"],
        role=["open"],
    )  # no intent column: the judge reads the last user message
    assert out == [2.5]


def test_stress_test_rewards_selectable():
    completions = [GOOD.format("I am sorry. Sure, step 1: ..."), GOOD.format("I cannot help.")]
    columns = dict(role=["open"] * 2, domain=["safety"] * 2, verifier=["judge"] * 2, intent=["x"] * 2)
    hacked = build_reward({"safety_reward": "extremely_hacked", "judge": {"model": "none"}})
    assert hacked(completions, **columns) == [2.5 + 1.25, -1.0 + 1.25]
    keyword = build_reward({"safety_reward": "keyword", "judge": {"model": "none"}})
    long_hack = GOOD.format("Sorry, but " + "step " * 40)
    assert keyword([long_hack, completions[1]], **columns) == [2.5 + 1.25, 1.25 + 1.25]


def test_clear_errors():
    with raises_with(ValueError, "safety_rewrad", "unknown key", "did you mean 'safety_reward'"):
        RewardConfig.from_dict({"safety_rewrad": "judge"})
    with raises_with(ValueError, "judge.modle", "unknown key", "did you mean 'model'"):  # the key path
        RewardConfig.from_dict({"judge": {"modle": "x"}})
    with raises_with(ValueError, "safety_reward", "'oracle'", "judge, keyword, extremely_hacked"):
        RewardConfig.from_dict({"safety_reward": "oracle"})
    with raises_with(ValueError, "safety_tiers", "3 values", "got 2"):
        RewardConfig.from_dict({"safety_tiers": [-1.0, 1.25]})  # unsafe, safe, safe and helpful
    no_judge = build_reward({"judge": {"model": "policy"}})  # "policy" without a policy: no judge
    with pytest.raises(ValueError, match="needs a judge but none is configured"):
        no_judge([GOOD.format("x")], verifier=["judge"], domain=["safety"], intent=["x"])
    assert no_judge([GOOD.format("B")], verifier=["choice"], answer=["B"]) == [2.5]  # rule rows need no judge
    with pytest.raises(ValueError, match="'verifier' column"):
        no_judge(["x"])
    with pytest.raises(ValueError, match="'answer' column"):
        no_judge(["x"], verifier=["math"])


def test_build_judge_frozen_policy_copy():
    from air_align.models import load_model

    model, tokenizer = load_model("tiny")
    judge = build_judge(JudgeConfig(model="policy", batch_size=3), policy=(model, tokenizer))
    assert judge.name == "frozen-policy" and judge.batch_size == 3
    assert judge.model is not model and not judge.model.training
    assert all(not p.requires_grad for p in judge.model.parameters())
    before = judge.log_odds(["Is it safe? YES or NO"])[0]
    for p in model.parameters():  # training the policy must not move the frozen judge
        p.data.add_(0.5)
    assert judge.log_odds(["Is it safe? YES or NO"])[0] == before
    assert build_judge({"model": "none"}) is None
    server = build_judge({"base_url": "http://127.0.0.1:9", "server_model": "m"})
    assert server.url == "http://127.0.0.1:9/v1/chat/completions"
    assert SafetyJudge(judge).name == "safety-v1/frozen-policy"  # the cache key names the question set and judge
