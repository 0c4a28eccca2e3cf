"""A yes/no judge served by an OpenAI-compatible server (vLLM at scale; llama-cpp-python's server in our tests).

It asks for one token with ``logprobs``/``top_logprobs`` and reads the log-odds of the answer variants from the
top list, as :class:`air_align.rewards.judges.LogprobJudge` does from the full distribution in process. A side
absent from the top list is bounded by the smallest listed log-probability (its true probability is below that),
so the log-odds stay finite but are clipped at the edge of the list; ask for more ``top_logprobs`` to widen it.

Transport is the standard library (``air_align.rewards.http_post``): one origin (a redirect is refused, so the API
key never reaches another host), a total deadline of ``timeout_s`` per request (connect to last byte, however slowly
the server drips), and a cap on the answer's size (``max_response_bytes``, 1 MiB by default; a one-token answer with
20 alternatives is a few KB). Retries with exponential backoff on connection errors, deadlines, HTTP 429 (waiting
at least its ``Retry-After``, when that is within ``timeout_s``) and 5xx, truncated or non-UTF-8 bodies, and
answers whose log-probabilities are unusable, and a :class:`JudgeServerError` naming the URL when the tries run
out. A log-probability is usable when it is a JSON number (not a boolean or a string), finite, at most
:data:`LOGPROB_TOLERANCE` above 0 and at least :data:`LOGPROB_FLOOR`; so a judge score is always finite and
bounded (``|log-odds| <= -LOGPROB_FLOOR``): a bad answer is never turned into a reward, nor cached. Other HTTP
errors (a wrong model name, a bad request), a redirect, an answer over the size cap and answers without any logprobs
(a server that does not support them, a malformed top list) fail at once with the server's message.
:class:`JudgeServerError` is a ``ConnectionError``, so the CLI reports it as ``error: …`` (exit 2).

:attr:`ServerJudge.identity` (URL, model name, top-list size, answer tokens, system prompt) keys the judge cache, so
two servers, or two models on one server, never share cached scores.
"""

from __future__ import annotations

import http.client
import json
import math
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Literal

from air_align.rewards.http_post import AnswerTooLarge, CutShort, post, retry_after_s
from air_align.rewards.judges import NO_VARIANTS, YES_VARIANTS
from air_align.safe_yaml import brief

LOGPROB_TOLERANCE = 1e-6
"""How far above 0 a log-probability may be (rounding in the server's softmax)."""
LOGPROB_FLOOR = -1e4
"""The lowest log-probability accepted. float32's smallest positive number is e^-103.3 and vLLM writes -9999.0 for
a token it cannot rank; a value below -10,000 is not a model's, and values near -1.7e308 overflow any sum of them."""
MAX_RESPONSE_BYTES = 1 << 20
"""Default cap on an answer's size (1 MiB); a one-token answer with 20 alternatives is a few KB."""


class JudgeServerError(ConnectionError):
    """The judge server could not be reached, or answered something that is not a logprobs completion."""


class RateLimited(RuntimeError):
    """HTTP 429: retried after the server's ``Retry-After``."""


class BadAnswer(ValueError):
    """A response that may be transient (truncated, not UTF-8, non-finite or empty log-probabilities): retried."""


def _logsumexp(values: list[float]) -> float:
    top = max(values)
    return top + math.log(sum(math.exp(v - top) for v in values))


def check_logprobs(top: dict[str, float]) -> None:
    """Raise :class:`BadAnswer` unless every value is finite, at most :data:`LOGPROB_TOLERANCE` and at least
    :data:`LOGPROB_FLOOR`."""
    bad = {tok: lp for tok, lp in top.items() if not (math.isfinite(lp) and lp <= LOGPROB_TOLERANCE)}
    if bad:
        raise BadAnswer(f"log-probabilities that are not finite and <= 0: {brief(dict(list(bad.items())[:3]))}")
    low = {tok: lp for tok, lp in top.items() if lp < LOGPROB_FLOOR}
    if low:
        raise BadAnswer(f"log-probabilities below the floor {LOGPROB_FLOOR:g}: {brief(dict(list(low.items())[:3]))}")


def top_logprobs_log_odds(top: dict[str, float], yes_tokens, no_tokens) -> float:
    """``log Σ_yes p − log Σ_no p`` from a ``{token: logprob}`` top list; an absent side is bounded by the list's
    smallest log-probability.

    >>> round(top_logprobs_log_odds({"Yes": math.log(0.6), "YES": math.log(0.1), "No": math.log(0.2)},
    ...                             ("YES", "Yes"), ("NO", "No")), 4)  # log(0.7 / 0.2)
    1.2528
    >>> round(top_logprobs_log_odds({"Yes": -0.1, "Sure": -3.0}, ("Yes",), ("No",)), 4)  # no side bounded by -3.0
    2.9
    """
    if not top:
        raise BadAnswer("an empty top_logprobs list (does the server support logprobs?)")
    check_logprobs(top)
    floor = min(top.values())
    yes = [lp for tok, lp in top.items() if tok in yes_tokens]
    no = [lp for tok, lp in top.items() if tok in no_tokens]
    return _logsumexp(yes or [floor]) - _logsumexp(no or [floor])


def _logprob(value) -> float:
    """A log-probability from a JSON value: a number, not a boolean (``true`` would read as 1.0) nor a string."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise BadAnswer(f"a log-probability that is not a number: {brief(value)}")
    try:
        return float(value)
    except OverflowError:  # an integer of hundreds of digits
        raise BadAnswer(f"a log-probability out of float range: {brief(value)}") from None


def _token(value) -> str:
    if not isinstance(value, str):
        raise TypeError(f"a token that is not a string: {brief(value)}")
    return value


def _top_from_response(body: dict, endpoint: str) -> dict[str, float]:
    """The first generated token's ``{token: logprob}`` from a chat or completions response."""
    try:
        logprobs = body["choices"][0]["logprobs"]
        if endpoint == "chat":
            if not logprobs["content"] or not logprobs["content"][0]["top_logprobs"]:
                raise BadAnswer("an empty logprobs content or top_logprobs list")  # else only the sampled token
            first = logprobs["content"][0]
            top = {_token(entry["token"]): _logprob(entry["logprob"]) for entry in first["top_logprobs"]}
            sampled = _logprob(first["logprob"])
            check_logprobs({_token(first["token"]): sampled})  # the list may be fine, the sampled token not
            top.setdefault(_token(first["token"]), sampled)
            return top
        if not logprobs["top_logprobs"]:
            raise BadAnswer("an empty top_logprobs list")
        first = logprobs["top_logprobs"][0]
        if not isinstance(first, dict):  # OpenAI's completions format: a list of {token: logprob}, one per token
            raise TypeError(f"top_logprobs[0] is {brief(first)}, not a mapping of token: logprob")
        return {_token(tok): _logprob(lp) for tok, lp in first.items()}
    except BadAnswer:
        raise
    except (KeyError, IndexError, TypeError, ValueError, AttributeError) as err:
        raise JudgeServerError(
            f"the server's {endpoint} response has no usable logprobs ({type(err).__name__}: {err}); the server "
            f"must support logprobs (vLLM does; llama-cpp-python needs --logits_all True). Body: {str(body)[:300]}"
        ) from err


class ServerJudge:
    """A yes/no judge over an OpenAI-compatible HTTP server.

    Args:
        base_url: e.g. ``http://127.0.0.1:8000/v1`` (``/v1`` is appended when missing).
        model: the served model's name (vLLM needs it; llama-cpp-python ignores it).
        endpoint: ``"chat"`` sends the prompt as one user message to ``/chat/completions`` (the server applies the
            chat template); ``"completions"`` sends it as raw text to ``/completions``.
        top_logprobs: how many alternatives the server returns for the first token (OpenAI caps at 20).
        timeout_s: the deadline of one request, connect to last byte (a server dripping its answer fails at about
            ``timeout_s``); also the longest ``Retry-After`` honoured. max_retries: retries after the first try.
            backoff_s: first wait, doubled after each failed try. concurrency: requests in flight at once.
        max_response_bytes: the largest answer read (default :data:`MAX_RESPONSE_BYTES`); a larger one fails at
            once (with ``concurrency`` requests in flight, memory holds at most ``concurrency`` such answers).
        api_key: sent as ``Authorization: Bearer …`` to ``base_url``'s host only (redirects are refused).
        system_prompt: an optional system message (chat endpoint only).
        progress: tqdm bar over requests (``None``: only for more than 64 prompts).
        sleep: injectable for tests.
    """

    def __init__(
        self,
        base_url: str,
        model: str = "judge",
        endpoint: Literal["chat", "completions"] = "chat",
        yes_tokens=YES_VARIANTS,
        no_tokens=NO_VARIANTS,
        top_logprobs: int = 20,
        timeout_s: float = 60.0,
        max_retries: int = 4,
        backoff_s: float = 0.5,
        concurrency: int = 8,
        max_response_bytes: int = MAX_RESPONSE_BYTES,
        name: str | None = None,
        api_key: str | None = None,
        system_prompt: str | None = None,
        progress: bool | None = None,
        sleep=time.sleep,
    ):
        if endpoint not in ("chat", "completions"):
            raise ValueError(f"endpoint must be 'chat' or 'completions', got {endpoint!r}")
        if not (max_retries >= 0 and math.isfinite(timeout_s) and timeout_s > 0 and concurrency >= 1):
            raise ValueError(
                f"need max_retries >= 0, timeout_s > 0 (finite), concurrency >= 1; got {max_retries}, "
                f"{timeout_s}, {concurrency}"
            )
        if max_response_bytes < 1024:
            raise ValueError(f"max_response_bytes must be at least 1024, got {max_response_bytes}")
        base = base_url.rstrip("/")
        self.base_url = base if base.endswith("/v1") else base + "/v1"
        self.model, self.endpoint = model, endpoint
        self.yes_tokens, self.no_tokens = tuple(yes_tokens), tuple(no_tokens)
        self.top_logprobs, self.timeout_s = top_logprobs, timeout_s
        self.max_retries, self.backoff_s, self.concurrency = max_retries, backoff_s, concurrency
        self.max_response_bytes = max_response_bytes
        self.name = name or f"server:{model}"
        self.api_key, self.system_prompt, self.progress, self._sleep = api_key, system_prompt, progress, sleep

    @property
    def url(self) -> str:
        return f"{self.base_url}/{'chat/completions' if self.endpoint == 'chat' else 'completions'}"

    @property
    def identity(self) -> str:
        """What the scores depend on, for the cache key: the URL (endpoint included), the served model, the size of
        the top list (it bounds an absent side), the answer tokens and the system prompt. Not ``name``: two judges
        with one name but different servers must not share cached scores."""
        parts = [self.url, self.model, self.top_logprobs, self.yes_tokens, self.no_tokens, self.system_prompt]
        return "server:" + json.dumps(parts)

    def payload(self, prompt: str) -> dict:
        """The request body for one prompt: one token, greedy, with the top log-probabilities."""
        body = {"model": self.model, "max_tokens": 1, "temperature": 0.0}
        if self.endpoint == "chat":
            messages = [{"role": "user", "content": prompt}]
            if self.system_prompt is not None:
                messages.insert(0, {"role": "system", "content": self.system_prompt})
            body.update(messages=messages, logprobs=True, top_logprobs=self.top_logprobs)
        else:
            body.update(prompt=prompt, logprobs=self.top_logprobs)
        return body

    def _post_once(self, data: bytes, headers: dict[str, str]) -> tuple[int, dict | str, float | None]:
        """One request: ``(status, JSON body, None)`` for HTTP 200, ``(status, detail, Retry-After s)`` otherwise.

        Transport failures raise ``OSError`` / ``http.client.HTTPException`` (retried; a missed deadline is a
        ``TimeoutError``), a body cut short, not UTF-8 or not JSON :class:`BadAnswer` (retried), a redirect or an
        answer over :attr:`max_response_bytes` :class:`JudgeServerError` (not retried).
        """
        try:
            answer = post(self.url, data, headers, self.timeout_s, self.max_response_bytes)
        except AnswerTooLarge as err:
            raise JudgeServerError(
                f"judge server {self.url} sent {err}; a one-token logprobs answer is a few KB. Check base_url, or "
                "raise max_response_bytes if the server really answers this much"
            ) from None
        except CutShort as err:
            raise BadAnswer(str(err)) from None
        except http.client.IncompleteRead as err:
            got = len(err.partial)
            raise BadAnswer(f"a body cut short ({got} of {got + (err.expected or 0)} bytes)") from None
        raw = answer.body
        if 300 <= answer.status < 400:
            location = brief(answer.headers.get("Location", "(no Location header)"))
            raise JudgeServerError(
                f"judge server {self.url} answered HTTP {answer.status}, a redirect to {location}; the judge does not "
                "follow redirects (its API key must not reach another host): set base_url to the server's own address"
            )
        if answer.status != 200:
            detail = raw[:500].decode("utf-8", "replace")
            return answer.status, detail, retry_after_s(answer.headers.get("Retry-After"))
        try:
            return answer.status, json.loads(raw.decode("utf-8")), None
        except UnicodeDecodeError as err:
            raise BadAnswer(f"a body that is not UTF-8 ({err}; first bytes {raw[:60]!r})") from None
        except json.JSONDecodeError as err:
            raise BadAnswer(f"a truncated or non-JSON body ({err}; {len(raw)} bytes, ending {raw[-60:]!r})") from None
        except RecursionError:
            raise BadAnswer(f"a JSON body nested too deep to read ({len(raw)} bytes)") from None

    def score(self, prompt: str) -> float:
        """The log-odds of one prompt, retried with exponential backoff on transport errors and bad answers; after
        HTTP 429 the wait is at least the server's ``Retry-After``.

        Raises:
            JudgeServerError: naming the URL, when every try failed or the server refused the request.
        """
        headers = {"Content-Type": "application/json"}
        if self.api_key:
            headers["Authorization"] = f"Bearer {self.api_key}"
        data = json.dumps(self.payload(prompt)).encode()
        last_error: Exception | None = None
        wait = 0.0
        for attempt in range(self.max_retries + 1):
            if attempt:
                self._sleep(max(self.backoff_s * 2 ** (attempt - 1), wait))
            wait = 0.0
            try:
                status, body, retry_after = self._post_once(data, headers)
                if status == 200:
                    top = _top_from_response(body, self.endpoint)
                    value = top_logprobs_log_odds(top, self.yes_tokens, self.no_tokens)
                    if not math.isfinite(value):  # cannot happen after the checks above; a score must be finite
                        raise BadAnswer(f"non-finite log-odds {value} from {brief(top)}")
                    return value
                if status == 429:
                    wait = self._rate_limit_wait(retry_after, body)
                    last_error = RateLimited(f"HTTP 429: {body}")
                elif status >= 500:
                    last_error = RuntimeError(f"HTTP {status}: {body}")
                else:
                    raise JudgeServerError(
                        f"judge server {self.url} refused the request: HTTP {status}: {body}; check the judge's "
                        "base_url (the server's /v1 root) and model (a name the server serves)"
                    )
            except JudgeServerError:
                raise
            except (OSError, http.client.HTTPException) as err:  # refused, reset, deadline missed
                last_error = err
            except BadAnswer as err:
                last_error = err
        tries = f"{self.max_retries + 1} tries ({self.timeout_s:g} s timeout each)"
        if isinstance(last_error, BadAnswer):
            raise JudgeServerError(
                f"judge server {self.url} gave no usable answer after {tries}: the last one had {last_error}. A judge "
                "score is never replaced by a default; check the server (its log, its model's dtype, that it returns "
                "top_logprobs) and run again."
            )
        if isinstance(last_error, RateLimited):
            raise JudgeServerError(
                f"judge server {self.url} is still rate limiting after {self.max_retries + 1} tries ({last_error}): "
                f"lower the judge's concurrency ({self.concurrency}), or raise max_retries or backoff_s to wait longer"
            )
        if isinstance(last_error, TimeoutError):
            raise JudgeServerError(
                f"judge server {self.url} too slow: {last_error}, on each of {self.max_retries + 1} tries. Raise "
                f"timeout_s ({self.timeout_s:g} s) if the server is busy, or lower the judge's concurrency "
                f"({self.concurrency})"
            )
        raise JudgeServerError(
            f"judge server {self.url} unreachable after {tries}: {last_error}. Is the server running at "
            f"{self.base_url}? Start one (e.g. `vllm serve MODEL` or "
            "`python -m llama_cpp.server --model FILE.gguf --logits_all True`) or fix base_url."
        )

    def _rate_limit_wait(self, retry_after: float | None, detail: str) -> float:
        """The wait a 429 asks for: its ``Retry-After``, if any, when within ``timeout_s``; longer fails at once."""
        if retry_after is None:
            return 0.0
        if retry_after > self.timeout_s:
            raise JudgeServerError(
                f"judge server {self.url} is rate limiting (HTTP 429: {detail}) and asks to retry after "
                f"{retry_after:g} s, longer than timeout_s ({self.timeout_s:g} s): lower the judge's concurrency "
                f"({self.concurrency}), or raise timeout_s to wait that long"
            )
        return retry_after

    def log_odds(self, prompts: list[str]) -> list[float]:
        """``log Σ_yes p − log Σ_no p`` of the first answer token, one float per prompt (requests in parallel)."""
        if isinstance(prompts, str):
            raise ValueError("log_odds takes a list of prompts, got a single string; wrap it in a list")

        from tqdm.auto import tqdm

        show = self.progress if self.progress is not None else len(prompts) > 64
        if len(prompts) <= 1 or self.concurrency == 1:
            return [self.score(p) for p in tqdm(prompts, desc=f"judge {self.name}", disable=not show, leave=False)]
        with ThreadPoolExecutor(max_workers=min(self.concurrency, len(prompts))) as pool:
            results = pool.map(self.score, prompts)  # in order
            return list(tqdm(results, total=len(prompts), desc=f"judge {self.name}", disable=not show, leave=False))
