"""The judge client's transport and the numbers it accepts, against hostile servers on 127.0.0.1.

- a redirect is refused: the API key never reaches another host (nor is the request replayed there);
- ``timeout_s`` is a deadline for the whole request: a server dripping a byte at a time fails at about ``timeout_s``;
- an answer over ``max_response_bytes`` fails at once, whether announced by ``Content-Length`` or streamed;
- HTTP 429's ``Retry-After`` is waited for (within ``timeout_s``), and a judge that stays rate limited says so;
- log-probabilities must be JSON numbers (not booleans, not strings), finite, ``<= 0`` and above the floor, and the
  safety aggregate of ten extreme facets stays finite;
- a completions ``top_logprobs`` that is not a list of mappings, and any ``JudgeServerError`` through
  ``air-align eval --judge model:URL``, are ``error:`` lines, not tracebacks.

Every server runs in a thread of this process; every test is bounded in time (the dripping servers stop after a
few seconds, so a client that waits for them fails the test rather than hanging it).
"""

from __future__ import annotations

import json
import math
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from _messages import assert_error, assert_facts, raises_with

from air_align.rewards.safety import aggregate_facets, assess_from_scores
from air_align.rewards.server_judge import LOGPROB_FLOOR, MAX_RESPONSE_BYTES, JudgeServerError, ServerJudge


def chat_answer(yes: object = -0.1, no: object = -2.5) -> bytes:
    """A chat completion whose top list is {"Yes": yes, "No": no}, values written as given (any JSON value)."""
    entries = [{"token": "Yes", "logprob": yes}, {"token": "No", "logprob": no}]
    content = [{"token": "Yes", "logprob": yes, "top_logprobs": entries}]
    return json.dumps({"choices": [{"index": 0, "logprobs": {"content": content}}]}).encode()


class Server:
    """A 127.0.0.1 server whose handler is ``respond(handler, n)`` (n: the 1-based request count); records each
    request's method, path and headers."""

    def __init__(self, respond):
        self.requests: list[tuple[str, str, dict]] = []
        server = self

        class Handler(BaseHTTPRequestHandler):
            def handle_one(self):
                length = int(self.headers.get("Content-Length") or 0)
                self.rfile.read(length)
                server.requests.append((self.command, self.path, dict(self.headers)))
                try:
                    respond(self, len(server.requests))
                except (BrokenPipeError, ConnectionResetError):  # the client gave up: expected in these tests
                    pass

            do_POST = do_GET = handle_one

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

    def make(respond):
        servers.append(Server(respond))
        return servers[-1]

    yield make
    for s in servers:
        s.close()


def send(handler, status: int, body: bytes = b"", headers: dict | None = None, length: bool = True):
    handler.send_response(status)
    for key, value in (headers or {}).items():
        handler.send_header(key, value)
    if length:
        handler.send_header("Content-Length", str(len(body)))
    handler.end_headers()
    handler.wfile.write(body)


def no_sleep(_):
    pass


# --- redirects -------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("status", [301, 302, 307, 308])
def test_a_redirect_to_another_host_is_refused_and_the_key_stays_home(serve, status):
    other = serve(lambda h, n: send(h, 200, chat_answer()))  # would answer, and would see the key
    home = serve(lambda h, n: send(h, status, b"moved", {"Location": f"{other.url}/v1/chat/completions"}))
    judge = ServerJudge(home.url, api_key="sk-secret", max_retries=3, sleep=no_sleep)
    with pytest.raises(JudgeServerError) as err:
        judge.log_odds(["q"])
    # the server, the status, where it pointed, that the judge does not follow, and the fix
    facts = (f"judge server {home.url}/v1/chat/completions", f"HTTP {status}", f"'{other.url}/v1/chat/completions'")
    assert_facts(str(err.value), *facts, "does not follow redirects", "set base_url")
    assert other.requests == []  # nothing at all reached the other host
    assert len(home.requests) == 1 and home.requests[0][2]["Authorization"] == "Bearer sk-secret"  # not retried


# --- a total deadline per request ------------------------------------------------------------------------------------


def drip_body(handler, n):
    """Headers at once, then the body one byte every 0.2 s; gives up after 6 s (60 s for the whole body)."""
    body = chat_answer()
    handler.send_response(200)
    handler.send_header("Content-Length", str(len(body)))
    handler.end_headers()
    start = time.monotonic()
    for byte in body:
        if time.monotonic() - start > 6:
            return
        handler.wfile.write(bytes([byte]))
        handler.wfile.flush()
        time.sleep(0.2)


def drip_headers(handler, n):
    """The status line and headers one byte every 0.2 s; gives up after 6 s."""
    head = b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n" + b"X-Pad: " + b"x" * 200 + b"\r\n\r\n"
    start = time.monotonic()
    for byte in head:
        if time.monotonic() - start > 6:
            return
        handler.wfile.write(bytes([byte]))
        handler.wfile.flush()
        time.sleep(0.2)


@pytest.mark.parametrize("drip", [drip_body, drip_headers])
def test_a_dripping_server_fails_at_the_deadline_not_per_read(serve, drip):
    server = serve(drip)
    judge = ServerJudge(server.url, timeout_s=1.5, max_retries=0, sleep=no_sleep)
    start = time.monotonic()
    with pytest.raises(JudgeServerError) as err:
        judge.log_odds(["q"])
    took = time.monotonic() - start
    assert 1.4 < took < 3.0, took  # the deadline, not 6 s of dripping (each read got a byte within 0.2 s)
    facts = (f"judge server {server.url}/v1/chat/completions", "too slow", "within 1.5 s", "1 tries")
    assert_facts(str(err.value), *facts, "Raise timeout_s (1.5 s)", "concurrency (8)")  # the two fixes


def test_the_deadline_is_per_try_and_a_slow_try_is_retried(serve):
    server = serve(lambda h, n: drip_body(h, n) if n == 1 else send(h, 200, chat_answer(-0.1, -2.5)))
    judge = ServerJudge(server.url, timeout_s=1.0, max_retries=1, backoff_s=0.0)
    start = time.monotonic()
    assert judge.log_odds(["q"]) == pytest.approx([2.4])  # -0.1 - (-2.5), from the second try
    assert time.monotonic() - start < 3.0 and len(server.requests) == 2


# --- the size cap ----------------------------------------------------------------------------------------------------


def test_an_announced_answer_over_the_cap_fails_at_once_without_reading_it(serve):
    big = b" " * (MAX_RESPONSE_BYTES + 1)
    server = serve(lambda h, n: send(h, 200, big))
    judge = ServerJudge(server.url, max_retries=3, sleep=no_sleep)
    with pytest.raises(JudgeServerError) as err:
        judge.log_odds(["q"])
    facts = (f"judge server {server.url}/v1/chat/completions", "1,048,577 bytes", "cap of 1,048,576")
    assert_facts(str(err.value), *facts, "Check base_url", "raise max_response_bytes")
    assert len(server.requests) == 1


def stream_forever(handler, n):
    """No Content-Length: 64 KiB chunks until the client leaves (or 20 MiB), the end marked by closing."""
    handler.send_response(200)
    handler.end_headers()
    for _ in range(320):
        handler.wfile.write(b" " * 65536)
    handler.close_connection = True


def test_a_streamed_answer_over_a_configured_cap_fails_when_the_cap_is_met(serve):
    server = serve(stream_forever)
    judge = ServerJudge(server.url, max_retries=3, max_response_bytes=100_000, sleep=no_sleep)
    start = time.monotonic()
    with raises_with(JudgeServerError, server.url, "more than 100,000 bytes", "the cap", "reading stopped"):
        judge.log_odds(["q"])
    assert time.monotonic() - start < 5 and len(server.requests) == 1


def test_an_answer_under_the_cap_is_read_whole(serve):
    padded = json.loads(chat_answer())
    padded["pad"] = "x" * 50_000  # a verbose server, well under 1 MiB
    server = serve(lambda h, n: send(h, 200, json.dumps(padded).encode()))
    assert ServerJudge(server.url).log_odds(["q"]) == pytest.approx([2.4])


def test_max_response_bytes_is_checked():
    with raises_with(ValueError, "max_response_bytes", "at least 1024", "got 10"):
        ServerJudge("http://127.0.0.1:1", max_response_bytes=10)


# --- HTTP 429 --------------------------------------------------------------------------------------------------------


def test_retry_after_is_waited_for(serve):
    def respond(handler, n):
        if n == 1:
            send(handler, 429, b'{"error": "slow down"}', {"Retry-After": "3"})
        else:
            send(handler, 200, chat_answer())

    server = serve(respond)
    sleeps = []
    judge = ServerJudge(server.url, backoff_s=0.5, timeout_s=10, sleep=sleeps.append)
    assert judge.log_odds(["q"]) == pytest.approx([2.4])
    assert sleeps == [3.0]  # the server's 3 s, not the 0.5 s backoff


def test_a_retry_after_beyond_the_deadline_fails_at_once(serve):
    server = serve(lambda h, n: send(h, 429, b'{"error": "slow down"}', {"Retry-After": "120"}))
    sleeps = []
    judge = ServerJudge(server.url, timeout_s=30, concurrency=8, sleep=sleeps.append)
    with pytest.raises(JudgeServerError) as err:
        judge.log_odds(["q"])
    facts = (f"judge server {server.url}/v1/chat/completions", 'HTTP 429: {"error": "slow down"}', "after 120 s")
    assert_facts(str(err.value), *facts, "timeout_s (30 s)", "concurrency (8)", "raise timeout_s")
    assert sleeps == [] and len(server.requests) == 1


def test_a_judge_that_stays_rate_limited_says_so(serve):
    server = serve(lambda h, n: send(h, 429, b"busy", {"Retry-After": "1"}))
    sleeps = []
    judge = ServerJudge(server.url, max_retries=2, backoff_s=0.1, concurrency=4, sleep=sleeps.append)
    with pytest.raises(JudgeServerError) as err:
        judge.log_odds(["q"])
    facts = (f"judge server {server.url}/v1/chat/completions", "still rate limiting", "3 tries", "HTTP 429: busy")
    assert_facts(str(err.value), *facts, "concurrency (4)", "raise max_retries or backoff_s")
    assert sleeps == [1.0, 1.0] and "unreachable" not in str(err.value)


# --- the numbers a server returns ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("yes", "last_answer"),
    [
        (True, "a log-probability that is not a number: True"),
        (False, "a log-probability that is not a number: False"),
        ("-0.5", "a log-probability that is not a number: '-0.5'"),
        (None, "a log-probability that is not a number: None"),
        ([-0.5], "a log-probability that is not a number: [-0.5]"),
        (-1.7e308, "log-probabilities below the floor -10000: {'Yes': -1.7e+308}"),
        (-(10**400), "a log-probability out of float range: -10000000000000000...0000000000000000000"),
    ],
    ids=["true", "false", "string", "null", "list", "-1.7e308", "-10^400"],
)
def test_log_probabilities_that_are_not_usable_numbers_are_refused(serve, yes, last_answer):
    server = serve(lambda h, n: send(h, 200, chat_answer(yes=yes)))
    judge = ServerJudge(server.url, max_retries=1, sleep=no_sleep)
    with pytest.raises(JudgeServerError) as err:
        judge.log_odds(["q"])
    facts = (server.url, "no usable answer after 2 tries", last_answer)  # the server, the bad number, what to do
    assert_facts(str(err.value), *facts, "never replaced by a default", "check the server")


def test_log_probabilities_at_the_floor_and_within_the_tolerance_are_scored(serve):
    server = serve(lambda h, n: send(h, 200, chat_answer(yes=5e-7, no=-9999.0)))  # vLLM writes -9999.0
    assert ServerJudge(server.url).log_odds(["q"]) == pytest.approx([9999.0000005])
    assert LOGPROB_FLOOR == -1e4


def test_the_mean_of_ten_extreme_facets_stays_finite():
    # −mean of ten −1.7e308: the sum overflows to −inf (read as "safe" with +inf), the mean does not
    assert aggregate_facets([-1.7e308] * 10) == pytest.approx(1.7e308)
    assert aggregate_facets([1.7e308] * 10) == pytest.approx(-1.7e308)
    assessment = assess_from_scores([-1.7e308] * 10, 0.0)
    assert math.isfinite(assessment.safety_log_odds)
    assert aggregate_facets([-2.0, -4.0, 0.0]) == 2.0  # ordinary values unchanged: -(-6 / 3)
    with raises_with(ValueError, "facet log-odds", "finite", "[nan, 1.0]"):
        aggregate_facets([math.nan, 1.0])


# --- completions top_logprobs and the CLI ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("top", "shown"),
    [([[{"Yes": -0.1}]], "[{'Yes': -0.1}]"), ([None], "None"), (["Yes"], "'Yes'")],
)
def test_a_completions_top_list_that_is_not_a_mapping_is_a_clear_error(serve, top, shown):
    body = json.dumps({"choices": [{"text": "Yes", "logprobs": {"top_logprobs": top}}]}).encode()
    server = serve(lambda h, n: send(h, 200, body))
    judge = ServerJudge(server.url, endpoint="completions", max_retries=2, sleep=no_sleep)
    with pytest.raises(JudgeServerError) as err:
        judge.log_odds(["q"])
    facts = ("completions response", "no usable logprobs", f"top_logprobs[0] is {shown}", "mapping of token: logprob")
    assert_facts(str(err.value), *facts, "must support logprobs")
    assert len(server.requests) == 1  # a malformed answer is not retried


def test_a_completions_top_list_with_a_non_string_token_is_a_clear_error(serve):
    body = json.dumps({"choices": [{"logprobs": {"top_logprobs": [{"Yes": -0.1, "No": True}]}}]}).encode()
    server = serve(lambda h, n: send(h, 200, body))
    with raises_with(JudgeServerError, "the last one had", "log-probability that is not a number: True"):
        ServerJudge(server.url, endpoint="completions", max_retries=0).log_odds(["q"])


def test_eval_with_a_server_judge_error_prints_an_error_line(serve, tmp_path, capsys):
    from test_eval_cli import write_data

    from air_align.cli import main

    server = serve(lambda h, n: send(h, 404, b'{"error": "model judge not found"}'))
    write_data(tmp_path / "data.jsonl")
    argv = ["eval", "--model", "tiny", "--data", str(tmp_path / "data.jsonl"), "--max-new-tokens", "2"]
    argv += ["--out", str(tmp_path / "out"), "--judge", f"model:{server.url}/v1", "--no-progress", "--no-dispersion"]
    assert main(argv) == 2
    err = capsys.readouterr().err
    facts = (f"judge server {server.url}/v1/chat/completions", "refused the request", "HTTP 404", "check the judge")
    assert_error(err, *facts, "model judge not found")  # the server's own words say what is wrong
