"""A yes/no judge served by an OpenAI-compatible server (vLLM at scale; llama-cpp-python's server in our tests).

It asks for one token with ``logprobs``/``top_logprobs`` and reads the log-odds of the answer variants from the
top list, as :class:`air_align.rewards.judges.LogprobJudge` does from the full distribution in process. A side
absent from the top list is bounded by the smallest listed log-probability (its true probability is below that),
so the log-odds stay finite but are clipped at the edge of the list; ask for more ``top_logprobs`` to widen it.

Transport is the standard library (``urllib``): a timeout per request, retries with exponential backoff on
connection errors, timeouts, HTTP 429 and 5xx, and a :class:`JudgeServerError` naming the URL when the server
cannot be reached. Other HTTP errors (a wrong model name, a bad request) fail at once with the server's message.
"""

from __future__ import annotations

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
        raise JudgeServerError("the server returned an empty top_logprobs list; does it support logprobs?")
    floor = min(top.values())
    yes = [lp for tok, lp in top.items() if tok in yes_tokens]
    no = [lp for tok, lp in top.items() if tok in no_tokens]
    return _logsumexp(yes or [floor]) - _logsumexp(no or [floor])


def _top_from_response(body: dict, endpoint: str) -> dict[str, float]:
    """The first generated token's ``{token: logprob}`` from a chat or completions response."""
    try:
        logprobs = body["choices"][0]["logprobs"]
        if endpoint == "chat":
            first = logprobs["content"][0]
            top = {entry["token"]: float(entry["logprob"]) for entry in first["top_logprobs"]}
            top.setdefault(first["token"], float(first["logprob"]))
            return top
        return {tok: float(lp) for tok, lp in logprobs["top_logprobs"][0].items()}
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

    def _post(self, body: dict) -> dict:
        headers = {"Content-Type": "application/json"}
        if self.api_key:
            headers["Authorization"] = f"Bearer {self.api_key}"
        request = urllib.request.Request(self.url, data=json.dumps(body).encode(), headers=headers, method="POST")
        last_error: Exception | None = None
        for attempt in range(self.max_retries + 1):
            if attempt:
                self._sleep(self.backoff_s * 2 ** (attempt - 1))
            try:
                with urllib.request.urlopen(request, timeout=self.timeout_s) as response:
                    return json.loads(response.read().decode("utf-8"))
            except urllib.error.HTTPError as err:
                detail = err.read().decode("utf-8", "replace")[:500]
                if err.code != 429 and err.code < 500:
                    raise JudgeServerError(
                        f"judge server {self.url} refused the request: HTTP {err.code}: {detail}"
                    ) from err
                last_error = RuntimeError(f"HTTP {err.code}: {detail}")
            except (urllib.error.URLError, TimeoutError, ConnectionError) as err:
                last_error = err
            except json.JSONDecodeError as err:
                raise JudgeServerError(f"judge server {self.url} answered with non-JSON: {err}") from err
        raise JudgeServerError(
            f"judge server {self.url} unreachable after {self.max_retries + 1} tries ({self.timeout_s:g} s timeout "
            f"each): {last_error}. Is the server running at {self.base_url}? Start one (e.g. `vllm serve MODEL` or "
            "`python -m llama_cpp.server --model FILE.gguf --logits_all True`) or fix base_url."
        )

    def log_odds(self, prompts: list[str]) -> list[float]:
        """``log Σ_yes p − log Σ_no p`` of the first answer token, one float per prompt (requests in parallel)."""
        if isinstance(prompts, str):
            raise ValueError("log_odds takes a list of prompts, got a single string; wrap it in a list")

        def one(prompt: str) -> float:
            top = _top_from_response(self._post(self.payload(prompt)), self.endpoint)
            return top_logprobs_log_odds(top, self.yes_tokens, self.no_tokens)

        from tqdm.auto import tqdm

        show = self.progress if self.progress is not None else len(prompts) > 64
        if len(prompts) <= 1 or self.concurrency == 1:
            return [one(p) for p in tqdm(prompts, desc=f"judge {self.name}", disable=not show, leave=False)]
        with ThreadPoolExecutor(max_workers=min(self.concurrency, len(prompts))) as pool:
            results = pool.map(one, prompts)  # in order
            return list(tqdm(results, total=len(prompts), desc=f"judge {self.name}", disable=not show, leave=False))
