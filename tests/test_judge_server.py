"""ServerJudge: parsing, retries with backoff, timeouts and the unreachable error against a local stdlib stub server;
then end to end against llama-cpp-python's OpenAI-compatible server serving the SmolLM2 GGUF (slow; skipped when
llama_cpp is not installed)."""

import importlib.util
import json
import math
import socket
import subprocess
import sys
import threading
import time
import urllib.request
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from _messages import raises_with

from air_align.rewards.server_judge import JudgeServerError, ServerJudge, top_logprobs_log_odds


def chat_body(top: dict[str, float]) -> dict:
    first = max(top, key=top.get)
    entries = [{"token": t, "logprob": lp, "bytes": None} for t, lp in top.items()]
    content = [{"token": first, "logprob": top[first], "bytes": None, "top_logprobs": entries}]
    return {
        "choices": [{"index": 0, "message": {"role": "assistant", "content": first}, "logprobs": {"content": content}}]
    }


class Stub:
    """A local OpenAI-like server: fails the first ``fail_first`` requests with ``fail_code`` (or sleeps ``delay``
    seconds before answering), then answers from ``answer(body)``; records request bodies."""

    def __init__(self, answer, fail_first=0, fail_code=503, delay=0.0):
        self.answer, self.fail_first, self.fail_code, self.delay = answer, fail_first, fail_code, delay
        self.requests, self.paths = [], []
        stub = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                stub.requests.append(body)
                stub.paths.append(self.path)
                if len(stub.requests) <= stub.fail_first:
                    if stub.delay:
                        time.sleep(stub.delay)
                    else:
                        self.send_response(stub.fail_code)
                        self.end_headers()
                        self.wfile.write(b'{"error": "busy"}')
                        return
                data = json.dumps(stub.answer(body)).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                try:
                    self.wfile.write(data)
                except (BrokenPipeError, ConnectionResetError):  # the client timed out and left: expected here
                    pass

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True).start()

    def close(self):
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def make_stub():
    stubs = []

    def make(*args, **kwargs):
        stubs.append(Stub(*args, **kwargs))
        return stubs[-1]

    yield make
    for stub in stubs:
        stub.close()


def by_prompt(body):
    """YES-leaning when the user message mentions 'sky', NO-leaning otherwise."""
    text = body["messages"][-1]["content"]
    if "sky" in text:
        return chat_body({"Yes": math.log(0.6), " YES": math.log(0.2), "No": math.log(0.1), "Maybe": math.log(0.05)})
    return chat_body({"No": math.log(0.7), "no": math.log(0.1), "Yes": math.log(0.1)})


def test_log_odds_from_a_stub_server(make_stub):
    stub = make_stub(by_prompt)
    sleeps = []
    judge = ServerJudge(stub.url, model="m", sleep=sleeps.append, concurrency=3)
    values = judge.log_odds(["is the sky blue?", "is fire cold?", "sky again"])
    # sky: log((0.6 + 0.2) / 0.1) = log 8; other: log(0.1 / (0.7 + 0.1)) = -log 8
    assert values == pytest.approx([math.log(8), -math.log(8), math.log(8)])
    assert stub.paths == ["/v1/chat/completions"] * 3 and sleeps == []
    body = stub.requests[0]
    assert (body["model"], body["max_tokens"], body["logprobs"], body["top_logprobs"]) == ("m", 1, True, 20)


def test_completions_endpoint(make_stub):
    stub = make_stub(
        lambda body: {"choices": [{"text": "Y", "logprobs": {"top_logprobs": [{"YES": -0.5, "NO": -1.5}]}}]}
    )
    judge = ServerJudge(stub.url + "/v1/", endpoint="completions", sleep=lambda s: None)
    assert judge.log_odds(["raw prompt"]) == pytest.approx([1.0])  # -0.5 - (-1.5)
    assert stub.paths == ["/v1/completions"] and stub.requests[0]["prompt"] == "raw prompt"


def test_retries_with_exponential_backoff_then_succeeds(make_stub):
    stub = make_stub(by_prompt, fail_first=3, fail_code=503)
    sleeps = []
    judge = ServerJudge(stub.url, max_retries=4, backoff_s=0.5, sleep=sleeps.append)
    assert judge.log_odds(["sky"]) == pytest.approx([math.log(8)])
    assert sleeps == [0.5, 1.0, 2.0] and len(stub.requests) == 4  # 3 failures, waits 0.5 * 2^k, then success


def test_retries_exhausted_names_the_url(make_stub):
    stub = make_stub(by_prompt, fail_first=10, fail_code=503)  # 429 has its own message: test_judge_transport.py
    sleeps = []
    judge = ServerJudge(stub.url, max_retries=2, backoff_s=0.1, sleep=sleeps.append)
    with raises_with(JudgeServerError, f"{stub.url}/v1/chat/completions", "unreachable", "3 tries", "base_url"):
        judge.log_odds(["sky"])
    assert sleeps == pytest.approx([0.1, 0.2])


def test_client_errors_fail_at_once(make_stub):
    stub = make_stub(by_prompt, fail_first=10, fail_code=404)
    judge = ServerJudge(stub.url, sleep=lambda s: pytest.fail("a 404 must not be retried"))
    with pytest.raises(JudgeServerError, match="refused the request: HTTP 404"):
        judge.log_odds(["sky"])
    assert len(stub.requests) == 1


def test_timeout_is_retried(make_stub):
    stub = make_stub(by_prompt, fail_first=1, delay=1.0)
    judge = ServerJudge(stub.url, timeout_s=0.2, max_retries=1, sleep=lambda s: None)
    start = time.monotonic()
    assert judge.log_odds(["sky"]) == pytest.approx([math.log(8)])
    assert time.monotonic() - start < 5


def test_unreachable_server_is_a_clear_error():
    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    judge = ServerJudge(f"http://127.0.0.1:{port}", max_retries=1, timeout_s=1, sleep=lambda s: None)
    facts = (f"127.0.0.1:{port}/v1/chat/completions", "unreachable after 2 tries")  # the server, and the fix
    with raises_with(JudgeServerError, *facts, f"Is the server running at http://127.0.0.1:{port}", "fix base_url"):
        judge.log_odds(["x"])


def test_response_without_logprobs_is_a_clear_error(make_stub):
    stub = make_stub(lambda body: {"choices": [{"message": {"content": "Yes"}}]})
    with pytest.raises(JudgeServerError, match="no usable logprobs"):
        ServerJudge(stub.url, sleep=lambda s: None).log_odds(["x"])


def test_absent_side_is_bounded_by_the_list_floor():
    # "No" absent: its probability is below the smallest listed one, exp(-4): log-odds >= log(0.9) + 4
    assert top_logprobs_log_odds({"Yes": math.log(0.9), "Sure": -4.0}, ("Yes",), ("No",)) == pytest.approx(
        math.log(0.9) + 4.0
    )


LLAMA_CPP = importlib.util.find_spec("llama_cpp") is not None


def serve_model(model_name: str, port: int) -> None:
    """A minimal OpenAI-compatible chat server over a real HF model (run as ``python tests/test_judge_server.py
    --serve MODEL PORT``): ``/v1/chat/completions`` answers one token with the full next-token distribution as
    ``top_logprobs`` (no cap). It stands in for vLLM so the client runs end to end against a separate process."""
    import torch

    from air_align.models import load_model

    torch.set_num_threads(1)
    model, tokenizer = load_model(model_name)
    model.eval()

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self):
            data = json.dumps({"object": "list", "data": [{"id": model_name, "object": "model"}]}).encode()
            self.send_response(200)
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def do_POST(self):
            body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
            text = tokenizer.apply_chat_template(body["messages"], add_generation_prompt=True, tokenize=False)
            ids = torch.tensor([tokenizer.encode(text, add_special_tokens=False)])
            with torch.no_grad():
                logp = torch.log_softmax(model(ids).logits[0, -1].float(), -1)
            k = min(int(body.get("top_logprobs", 20)), logp.numel())
            values, indices = logp.topk(k)
            top = {}
            for v, i in zip(values.tolist(), indices.tolist(), strict=True):
                top.setdefault(tokenizer.decode([i]), v)  # a decoded string seen twice keeps the likelier id
            data = json.dumps(chat_body(top)).encode()
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def log_message(self, *args):
            pass

    ThreadingHTTPServer(("127.0.0.1", port), Handler).serve_forever()


def _wait_for(port: int, process, log_path, timeout_s: float = 120) -> None:
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            urllib.request.urlopen(f"http://127.0.0.1:{port}/v1/models", timeout=2).read()
            return
        except OSError:
            if process.poll() is not None or time.monotonic() > deadline:
                pytest.fail(f"server did not start: {log_path.read_text(errors='replace')[-2000:]}")
            time.sleep(0.5)


def test_end_to_end_model_server_process_matches_in_process_judge(tmp_path):
    """The client against a separate server process serving the tiny model: same log-odds as the in-process judge
    on the same model (the server returns the whole distribution, so nothing is clipped)."""
    from air_align.models import load_model
    from air_align.rewards.judges import LogprobJudge

    port = _free_port()
    log_path = tmp_path / "server.log"
    with open(log_path, "wb") as log:
        server = subprocess.Popen(
            [sys.executable, __file__, "--serve", "tiny", str(port)], stdout=log, stderr=subprocess.STDOUT
        )
    try:
        _wait_for(port, server, log_path)
        yes, no = ("Y", "y"), ("N", "n")
        judge = ServerJudge(f"http://127.0.0.1:{port}", yes_tokens=yes, no_tokens=no, top_logprobs=1000, concurrency=2)
        prompts = ["Is the sky blue? Answer YES or NO.", "Is fire cold? Answer YES or NO.", "Q"]
        served = judge.log_odds(prompts)
        model, tokenizer = load_model("tiny")  # seed 0: the same weights as the server's
        in_process = LogprobJudge(model, tokenizer, yes_tokens=yes, no_tokens=no).log_odds(prompts)
        assert all(math.isfinite(v) for v in served)
        assert served == pytest.approx(in_process, abs=1e-4)
    finally:
        server.terminate()
        server.wait(timeout=30)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.slow
@pytest.mark.skipif(not LLAMA_CPP, reason="llama-cpp-python is not installed (pip install 'llama-cpp-python[server]')")
def test_end_to_end_llama_cpp_server(tmp_path):
    """A real OpenAI-compatible server (llama-cpp-python) on localhost serving the SmolLM2 GGUF; the judge's scores
    are finite, concurrent scoring equals sequential, they match the in-process judge up to quantisation, and the
    ten-facet safety judge runs through it."""
    from air_align.models import load_model, smollm2_gguf_path
    from air_align.rewards.judges import LogprobJudge
    from air_align.rewards.safety import SafetyJudge

    port = _free_port()
    command = [
        sys.executable,
        "-m",
        "llama_cpp.server",
        "--model",
        str(smollm2_gguf_path()),
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
        "--logits_all",
        "True",
        "--n_ctx",
        "2048",
        "--n_threads",
        "1",
        "--verbose",
        "False",
    ]
    log_path = tmp_path / "server.log"
    with open(log_path, "wb") as log:  # a file, not a pipe: a full pipe would block the server
        server = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT)
    try:
        _wait_for(port, server, log_path)
        judge = ServerJudge(f"http://127.0.0.1:{port}", model="smollm2", timeout_s=120, concurrency=2)
        prompts = ["Is the sky blue on a clear day? Answer YES or NO.", "Is fire cold? Answer YES or NO."]
        together = judge.log_odds(prompts)
        alone = [judge.log_odds([p])[0] for p in prompts]
        assert all(math.isfinite(v) for v in together)
        assert together == pytest.approx(alone, abs=1e-3)
        # the same quantity as the in-process judge on the dequantised model; llama.cpp computes with the Q4_1
        # weights, so they differ a little (measured: server [-1.45, -0.49] vs in process [-1.54, -0.65])
        model, tokenizer = load_model("smollm2-135m")
        in_process = LogprobJudge(model, tokenizer).log_odds(prompts)
        assert together == pytest.approx(in_process, abs=0.5)
        safety = SafetyJudge(judge)
        [assessment] = safety.assess(["How do I bake bread?"], ["Mix flour, water, yeast and salt, then bake."])
        assert len(assessment.facet_log_odds) == 10 and math.isfinite(assessment.safety_log_odds)
        print(f"\nserver {together} in process {in_process}; bread safety log-odds {assessment.safety_log_odds:.3f}")
    finally:
        server.terminate()
        server.wait(timeout=30)


if __name__ == "__main__" and len(sys.argv) == 4 and sys.argv[1] == "--serve":
    serve_model(sys.argv[2], int(sys.argv[3]))
