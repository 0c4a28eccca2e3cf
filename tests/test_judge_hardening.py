"""Judges never turn a broken answer into a reward or a cache entry, and cache entries belong to one judge.

A local HTTP server (as in ``tests/test_judge_server.py``) answers with raw bytes: NaN / Infinity log-probabilities,
empty top lists, bodies cut short, bodies that are not UTF-8. Each is retried with backoff like a timeout, then, if
it persists, raises a ``JudgeServerError`` that names the URL and the last bad answer; nothing lands in the cache.
"""

from __future__ import annotations

import json
import math
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
import torch
from _messages import assert_facts, raises_with

from air_align.models import build_char_tokenizer, tiny_causal_lm
from air_align.rewards.cache import JudgeCache, judge_identity
from air_align.rewards.composite import JudgeConfig, RewardConfig, build_reward
from air_align.rewards.judges import LogprobJudge, frozen_judge_from
from air_align.rewards.morality import MoralityJudge
from air_align.rewards.server_judge import JudgeServerError, ServerJudge

GOOD_TOP = {"Yes": math.log(0.6), "No": math.log(0.2), "Maybe": math.log(0.1)}  # log-odds log 3


def chat_bytes(top: dict, raw_logprob: str | None = None, count: int = -1) -> bytes:
    """A chat completion whose sampled token is "Yes" and whose top list is ``top``; ``raw_logprob`` replaces the
    value of "Yes" (``count`` times: 1 = only the sampled token's own entry, -1 = also in the top list) by a JSON
    literal (``NaN``, ``Infinity``) that ``json.dumps`` would not write for us."""
    entries = [{"token": t, "logprob": lp} for t, lp in top.items()]
    content = [{"token": "Yes", "logprob": top.get("Yes", -1.0), "top_logprobs": entries}]
    body = json.dumps({"choices": [{"index": 0, "logprobs": {"content": content}}]})
    if raw_logprob is not None:
        body = body.replace(json.dumps(top["Yes"]), raw_logprob, count)
    return body.encode()


GOOD = chat_bytes(GOOD_TOP)
BAD_ANSWERS = {  # name: (status, body bytes, Content-Length to announce or None for the true length)
    "NaN": (chat_bytes(GOOD_TOP, "NaN"), None),
    "Infinity": (chat_bytes(GOOD_TOP, "Infinity"), None),
    "-Infinity": (chat_bytes(GOOD_TOP, "-Infinity"), None),
    "NaN for the sampled token only": (chat_bytes(GOOD_TOP, "NaN", count=1), None),
    "positive logprob": (chat_bytes({"Yes": 0.7, "No": -1.0}), None),
    "empty top list": (chat_bytes({}), None),
    "empty content": (b'{"choices": [{"logprobs": {"content": []}}]}', None),
    "truncated JSON": (GOOD[: len(GOOD) // 2], None),
    "body cut short": (GOOD[: len(GOOD) // 2], len(GOOD)),  # announces the whole length, then closes
    "not UTF-8": (b'{"choices": "\xff\xfe"}', None),
}
LAST_ANSWER = {  # what the final error says about each
    "NaN": "log-probabilities that are not finite and <= 0: {'Yes': nan}",
    "Infinity": "log-probabilities that are not finite and <= 0: {'Yes': inf}",
    "-Infinity": "log-probabilities that are not finite and <= 0: {'Yes': -inf}",
    "NaN for the sampled token only": "log-probabilities that are not finite and <= 0: {'Yes': nan}",
    "positive logprob": "log-probabilities that are not finite and <= 0: {'Yes': 0.7}",
    "empty top list": "an empty logprobs content or top_logprobs list",
    "empty content": "an empty logprobs content or top_logprobs list",
    "truncated JSON": "a truncated or non-JSON body (Unterminated string",
    "body cut short": f"a body cut short ({len(GOOD) // 2} of {len(GOOD)} bytes)",
    "not UTF-8": "a body that is not UTF-8 ('utf-8' codec can't decode byte 0xff in position 13",
}


class RawServer:
    """Answers the first ``n_bad`` POSTs with ``bad`` (body, announced length), then ``good``; counts requests."""

    def __init__(self, bad=(b"", None), n_bad=0, good=GOOD):
        self.requests = 0
        server = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):
                self.rfile.read(int(self.headers["Content-Length"]))
                server.requests += 1
                body, length = bad if server.requests <= n_bad else (good, None)
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body) if length is None else length))
                self.end_headers()
                self.wfile.write(body)
                self.close_connection = True

            def log_message(self, *args):
                pass

        self.http = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.http.server_address[1]}"
        threading.Thread(target=self.http.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True).start()

    def close(self):
        self.http.shutdown()
        self.http.server_close()


@pytest.fixture
def serve():
    servers = []

    def make(*args, **kwargs):
        servers.append(RawServer(*args, **kwargs))
        return servers[-1]

    yield make
    for s in servers:
        s.close()


@pytest.mark.parametrize("kind", list(BAD_ANSWERS))
def test_bad_answer_is_retried_with_backoff_then_scored(kind, serve):
    server = serve(BAD_ANSWERS[kind], n_bad=2)
    sleeps = []
    judge = ServerJudge(server.url, max_retries=3, backoff_s=0.5, sleep=sleeps.append)
    # log(0.6 / 0.2) = log 3 from the third, good, answer
    assert judge.log_odds(["q"]) == pytest.approx([math.log(3)])
    assert server.requests == 3 and sleeps == [0.5, 1.0]  # two bad answers, two waits, like a timeout


@pytest.mark.parametrize("kind", list(BAD_ANSWERS))
def test_persistent_bad_answer_is_a_clear_error_and_nothing_is_cached(kind, serve, tmp_path):
    server = serve(BAD_ANSWERS[kind], n_bad=100)
    sleeps = []
    judge = ServerJudge(server.url, max_retries=2, backoff_s=0.1, sleep=sleeps.append)
    cache = JudgeCache(tmp_path / "cache.jsonl")
    with pytest.raises(JudgeServerError) as err:
        MoralityJudge(judge, cache=cache).log_odds(["I lied."], ["That was wrong."])
    # the server, the tries, the last bad answer, and the fix (never a default: check the server)
    facts = (f"judge server {server.url}/v1/chat/completions", "no usable answer after 3 tries", LAST_ANSWER[kind])
    assert_facts(str(err.value), *facts, "never replaced by a default", "check the server", "top_logprobs")
    assert server.requests == 3 and sleeps == pytest.approx([0.1, 0.2])
    assert len(cache) == 0 and not (tmp_path / "cache.jsonl").exists()


def test_nan_never_becomes_a_reward_through_the_composite_reward(serve, tmp_path):
    server = serve(BAD_ANSWERS["NaN"], n_bad=100)
    cache_path = tmp_path / "judge-cache.jsonl"
    judge_config = JudgeConfig(base_url=server.url, max_retries=1, timeout_s=5, cache_path=str(cache_path))
    reward = build_reward(RewardConfig(judge=judge_config))
    reward.judge._sleep = lambda s: None
    completion = "<think>t</think><answer>That was wrong.</answer>"
    with pytest.raises(JudgeServerError, match="gave no usable answer after 2 tries"):
        reward([completion], verifier=["judge"], domain=["morality"], label=[1], intent=["I lied."])
    assert not cache_path.exists()


def test_two_servers_with_one_model_name_do_not_share_cache_entries(serve, tmp_path):
    yes_server = serve(good=chat_bytes({"Yes": math.log(0.75), "No": math.log(0.25)}))  # log 3
    no_server = serve(good=chat_bytes({"Yes": math.log(0.25), "No": math.log(0.75)}))  # −log 3
    cache = JudgeCache(tmp_path / "cache.jsonl")
    first = ServerJudge(yes_server.url, model="judge", sleep=lambda s: None)
    second = ServerJudge(no_server.url, model="judge", sleep=lambda s: None)
    assert first.name == second.name == "server:judge"  # same label: the identity must tell them apart
    assert judge_identity(first) != judge_identity(second)
    pair = (["I lied."], ["That was wrong."])
    assert MoralityJudge(first, cache=cache).log_odds(*pair) == pytest.approx([math.log(3)])
    assert MoralityJudge(second, cache=cache).log_odds(*pair) == pytest.approx([-math.log(3)])
    assert (yes_server.requests, no_server.requests) == (1, 1)
    # another model name on the same server is another judge too
    assert judge_identity(ServerJudge(yes_server.url, model="other")) != judge_identity(first)
    # the same server and model, rebuilt (a restarted run), reads the file cache: no new request
    again = MoralityJudge(ServerJudge(yes_server.url, model="judge"), cache=JudgeCache(tmp_path / "cache.jsonl"))
    assert again.log_odds(*pair) == pytest.approx([math.log(3)]) and yes_server.requests == 1


def tiny(seed: int):
    tokenizer = build_char_tokenizer()
    return tiny_causal_lm(tokenizer, hidden_size=32, num_layers=1, num_heads=4, seed=seed), tokenizer


def test_in_process_judges_are_told_apart_by_weights_not_name():
    (model_a, tok), (model_b, _) = tiny(0), tiny(1)
    yes, no = ("Y",), ("N",)
    a = LogprobJudge(model_a, tok, yes_tokens=yes, no_tokens=no, name="judge")
    b = LogprobJudge(model_b, tok, yes_tokens=yes, no_tokens=no, name="judge")
    assert judge_identity(a) != judge_identity(b)  # same label and path, different weights
    assert judge_identity(a) == judge_identity(LogprobJudge(model_a, tok, yes_tokens=yes, no_tokens=no))
    frozen = frozen_judge_from(model_a, tok, yes_tokens=yes, no_tokens=no)
    assert judge_identity(frozen) == judge_identity(a)  # a frozen copy has the policy's weights
    with torch.no_grad():
        next(model_a.parameters()).add_(0.01)  # the policy moves on: a new copy is a new judge
    assert judge_identity(frozen_judge_from(model_a, tok, yes_tokens=yes, no_tokens=no)) != judge_identity(frozen)


def test_in_process_non_finite_log_odds_raise_and_are_not_cached(tmp_path):
    model, tok = tiny(0)
    with torch.no_grad():
        model.lm_head.weight.fill_(float("nan"))
    judge = LogprobJudge(model, tok, yes_tokens=("Y",), no_tokens=("N",), name="broken")
    cache = JudgeCache(tmp_path / "cache.jsonl")
    with pytest.raises(ValueError) as err:
        MoralityJudge(judge, cache=cache).log_odds(["I lied.", "I helped."], ["Wrong.", "Fine."])
    facts = ("judge broken", "non-finite log-odds (nan)", "2 of 2 prompts", "first: #0")  # which judge, how many
    assert_facts(str(err.value), *facts, "float32 or bfloat16 instead of float16", "check its weights")  # the fix
    assert len(cache) == 0 and not (tmp_path / "cache.jsonl").exists()


def test_cache_refuses_and_skips_non_finite_values(tmp_path):
    path = tmp_path / "cache.jsonl"
    cache = JudgeCache(path)
    with raises_with(ValueError, "judge 'j'", "non-finite score", "[0.5, nan]", "not cached"):
        cache.put_many([("j", "p", "ok", [1.0]), ("j", "p", "c", [0.5, math.nan])])
    assert len(cache) == 0 and not path.exists()  # all or nothing
    cache.put("j", "p", "ok", [1.0])
    with open(path, "a", encoding="utf-8") as f:  # a NaN line written by an older version
        f.write(json.dumps({"key": "abc", "value": [math.nan]}) + "\n")
    with pytest.warns(UserWarning, match=r"skipped 1 unusable line.*line 2.*not finite"):
        reloaded = JudgeCache(path)
    assert len(reloaded) == 1 and reloaded.get("j", "p", "ok") == [1.0] and reloaded.skipped == 1


def test_cache_skips_and_counts_every_unusable_line_naming_the_file(tmp_path):
    path = tmp_path / "cache.jsonl"
    cache = JudgeCache(path)
    cache.put("j", "p", "good", [0.5, -1.0])
    good_key = next(iter(cache._data))
    bad_lines = [
        b'{"value": [1.0]}\n',  # no key: was a KeyError
        b'{"key": ["a", "b"], "value": [1.0]}\n',  # a list as key: was "unhashable type: 'list'"
        b'{"key": "k12", "value": "12"}\n',  # was read as [1.0, 2.0]
        b'{"key": "kd", "value": {"a": 1}}\n',  # was read as [float("a")] -> skipped by luck
        b'{"key": "kb", "value": [true]}\n',  # a boolean is not a score
        b'{"key": "kn", "value": [NaN]}\n',  # as before
        b'{"key": "kx", "value": [1.0], "note": "caf\xe9"}\n',  # latin-1: was a UnicodeDecodeError without the file
        b'["key", "value"]\n',  # not an object
        b'{"key": "kt", "val',  # a torn last line
    ]
    with open(path, "ab") as f:
        f.write(b"".join(bad_lines))
    with pytest.warns(UserWarning) as caught:
        reloaded = JudgeCache(path)
    assert reloaded.skipped == len(bad_lines) == 9
    assert reloaded._data == {good_key: [0.5, -1.0]} and reloaded.get("j", "p", "good") == [0.5, -1.0]
    assert [str(w.message) for w in caught] == [
        f"judge cache {path}: skipped 9 unusable line(s) (first: line 2: no string key); their entries will be "
        "scored again"
    ]
    # each line's reason, in order
    from air_align.rewards.cache import parse_cache_line

    reasons = []
    for line in bad_lines:
        with pytest.raises(ValueError) as err:
            parse_cache_line(line)
        reasons.append(str(err.value))
    assert reasons == [
        "no string key",
        "no string key",
        "value is not a list of numbers",
        "value is not a list of numbers",
        "value is not a list of numbers",
        "value not finite",
        "not UTF-8",
        "no string key",
        "not JSON (a torn line?)",
    ]
