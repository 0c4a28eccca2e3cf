"""A yes/no judge served by an OpenAI-compatible server (vLLM at scale; llama-cpp-python's server in our tests).

It asks for one token with ``logprobs``/``top_logprobs`` and reads the log-odds of the answer variants from the
top list, as :class:`air_align.rewards.judges.LogprobJudge` does from the full distribution in process. A side
absent from the top list is bounded by the smallest listed log-probability (its true probability is below that),
so the log-odds stay finite but are clipped at the edge of the list; ask for more ``top_logprobs`` to widen it.

Transport is the standard library (``urllib``): a timeout per request, retries with exponential backoff on
connection errors, timeouts, HTTP 429 and 5xx, truncated or non-UTF-8 bodies, and answers whose log-probabilities
are unusable (NaN, ±Infinity, positive, or an empty top list), and a :class:`JudgeServerError` naming the URL when
the tries run out. A judge score is therefore always finite: a bad answer is never turned into a reward, nor cached.
Other HTTP errors (a wrong model name, a bad request) and answers without any logprobs (a server that does not
support them) fail at once with the server's message.

:attr:`ServerJudge.identity` (URL, model name, top-list size, answer tokens, system prompt) keys the judge cache, so
two servers, or two models on one server, never share cached scores.
"""

from __future__ import annotations

import http.client
import json
import math
import time
import urllib.error
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from typing import Literal

from air_align.rewards.judges import NO_VARIANTS, YES_VARIANTS


class JudgeServerError(RuntimeError):
    """The judge server could not be reached, or answered something that is not a logprobs completion."""


class BadAnswer(ValueError):
    """A response that may be transient (truncated, not UTF-8, non-finite or empty log-probabilities): retried."""


def _logsumexp(values: list[float]) -> float:
    top = max(values)
    return top + math.log(sum(math.exp(v - top) for v in values))


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
    bad = {tok: lp for tok, lp in top.items() if not (math.isfinite(lp) and lp <= 1e-6)}
    if bad:
        raise BadAnswer(f"log-probabilities that are not finite and <= 0: {dict(list(bad.items())[:3])}")
    floor = min(top.values())
    yes = [lp for tok, lp in top.items() if tok in yes_tokens]
    no = [lp for tok, lp in top.items() if tok in no_tokens]
    return _logsumexp(yes or [floor]) - _logsumexp(no or [floor])


def _top_from_response(body: dict, endpoint: str) -> dict[str, float]:
    """The first generated token's ``{token: logprob}`` from a chat or completions response."""
    try:
        logprobs = body["choices"][0]["logprobs"]
        if endpoint == "chat":
            if not logprobs["content"] or not logprobs["content"][0]["top_logprobs"]:
                raise BadAnswer("an empty logprobs content or top_logprobs list")  # else only the sampled token
            first = logprobs["content"][0]
            top = {entry["token"]: float(entry["logprob"]) for entry in first["top_logprobs"]}
            sampled = float(first["logprob"])
            if not math.isfinite(sampled):  # the list may be fine, but a server that writes this is not
                raise BadAnswer(f"log-probabilities that are not finite and <= 0: {{{first['token']!r}: {sampled}}}")
            top.setdefault(first["token"], sampled)
            return top
        if not logprobs["top_logprobs"]:
            raise BadAnswer("an empty top_logprobs list")
        return {tok: float(lp) for tok, lp in logprobs["top_logprobs"][0].items()}
    except BadAnswer:
        raise
    except (KeyError, IndexError, TypeError, ValueError) as err:
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
        timeout_s: per-request timeout. max_retries: retries after the first try. backoff_s: first wait, doubled
            after each failed try. concurrency: requests in flight at once.
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
        name: str | None = None,
        api_key: str | None = None,
        system_prompt: str | None = None,
        progress: bool | None = None,
        sleep=time.sleep,
    ):
        if endpoint not in ("chat", "completions"):
            raise ValueError(f"endpoint must be 'chat' or 'completions', got {endpoint!r}")
        if max_retries < 0 or timeout_s <= 0 or concurrency < 1:
            raise ValueError(
                f"need max_retries >= 0, timeout_s > 0, concurrency >= 1; got {max_retries}, "
                f"{timeout_s}, {concurrency}"
            )
        base = base_url.rstrip("/")
        self.base_url = base if base.endswith("/v1") else base + "/v1"
        self.model, self.endpoint = model, endpoint
        self.yes_tokens, self.no_tokens = tuple(yes_tokens), tuple(no_tokens)
        self.top_logprobs, self.timeout_s = top_logprobs, timeout_s
        self.max_retries, self.backoff_s, self.concurrency = max_retries, backoff_s, concurrency
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

    def _post_once(self, request: urllib.request.Request) -> dict:
        """One request and its JSON body. Transport failures raise ``OSError`` / ``http.client.HTTPException``
        (retried), a body that is cut short or not UTF-8 :class:`BadAnswer` (retried)."""
        with urllib.request.urlopen(request, timeout=self.timeout_s) as response:
            try:
                raw = response.read()
            except http.client.IncompleteRead as err:
                got = len(err.partial)
                raise BadAnswer(f"a body cut short ({got} of {got + (err.expected or 0)} bytes)") from None
        try:
            return json.loads(raw.decode("utf-8"))
        except UnicodeDecodeError as err:
            raise BadAnswer(f"a body that is not UTF-8 ({err}; first bytes {raw[:60]!r})") from None
        except json.JSONDecodeError as err:
            raise BadAnswer(f"a truncated or non-JSON body ({err}; {len(raw)} bytes, ending {raw[-60:]!r})") from None

    def score(self, prompt: str) -> float:
        """The log-odds of one prompt, retried with exponential backoff on transport errors and bad answers.

        Raises:
            JudgeServerError: naming the URL, when every try failed or the server refused the request.
        """
        headers = {"Content-Type": "application/json"}
        if self.api_key:
            headers["Authorization"] = f"Bearer {self.api_key}"
        data = json.dumps(self.payload(prompt)).encode()
        request = urllib.request.Request(self.url, data=data, headers=headers, method="POST")
        last_error: Exception | None = None
        for attempt in range(self.max_retries + 1):
            if attempt:
                self._sleep(self.backoff_s * 2 ** (attempt - 1))
            try:
                top = _top_from_response(self._post_once(request), self.endpoint)
                value = top_logprobs_log_odds(top, self.yes_tokens, self.no_tokens)
                if not math.isfinite(value):  # cannot happen after the checks above; a score must be finite
                    raise BadAnswer(f"non-finite log-odds {value} from {top}")
                return value
            except urllib.error.HTTPError as err:
                detail = err.read().decode("utf-8", "replace")[:500]
                if err.code != 429 and err.code < 500:
                    raise JudgeServerError(
                        f"judge server {self.url} refused the request: HTTP {err.code}: {detail}"
                    ) from err
                last_error = RuntimeError(f"HTTP {err.code}: {detail}")
            except (OSError, http.client.HTTPException) as err:  # URLError, timeouts, resets, IncompleteRead
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
        raise JudgeServerError(
            f"judge server {self.url} unreachable after {tries}: {last_error}. Is the server running at "
            f"{self.base_url}? Start one (e.g. `vllm serve MODEL` or "
            "`python -m llama_cpp.server --model FILE.gguf --logits_all True`) or fix base_url."
        )

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
