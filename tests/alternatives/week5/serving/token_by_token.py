"""Continuous batching over a paged KV cache, and an OpenAI-compatible server (alternative: token-by-token prefill through the decode path, an OrderedDict scheduler)."""

from __future__ import annotations

import json
import math
import queue
import threading
import time
from collections import OrderedDict, deque
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Callable

import torch

from ..week1.chat import render_chatml
from .paged_kv import PagedKVCache, paged_attention


@dataclass
class Request:
    request_id: int
    prompt_ids: list[int]
    max_tokens: int
    temperature: float = 0.0
    stop_token_ids: tuple[int, ...] = ()
    seed: int | None = None


class PagedGPT2:
    """Every token goes through one code path: prefill feeds the prompt one token at a time
    to the same single-step forward that decode uses (paged attention over the cache)."""

    def __init__(self, model, num_blocks: int, block_size: int):
        self.model = model.eval()
        self.block_size = block_size
        self.max_positions = model.config.n_positions
        h, d = model.config.n_head, model.config.n_embd // model.config.n_head
        w = model.transformer.wpe.weight
        self.caches = [PagedKVCache(num_blocks, block_size, h, d, dtype=w.dtype, device=w.device)
                       for _ in model.transformer.h]

    @property
    def num_free_blocks(self) -> int:
        return self.caches[-1].allocator.num_free

    def _step(self, seq_ids: list[int], tokens: list[int], positions: list[int]) -> torch.Tensor:
        t = self.model.transformer
        dev = t.wpe.weight.device
        x = t.wte(torch.as_tensor(tokens, device=dev)) + t.wpe(torch.as_tensor(positions, device=dev))
        B, C = x.shape
        for block, cache in zip(t.h, self.caches):
            q, k, v = block.attn.c_attn(block.ln_1(x)).chunk(3, dim=-1)
            q, k, v = (y.reshape(B, cache.n_heads, cache.head_dim) for y in (q, k, v))
            for row, s in enumerate(seq_ids):
                cache.append(s, k[row:row + 1].transpose(0, 1), v[row:row + 1].transpose(0, 1))
            x = x + block.attn.c_proj(paged_attention(q, cache, seq_ids).flatten(1))
            x = x + block.mlp(block.ln_2(x))
        return self.model.lm_head(t.ln_f(x))

    def prefill(self, seq_id: int, prompt_ids: list[int]) -> torch.Tensor:
        if seq_id in self.caches[0].lengths or len(prompt_ids) == 0 or len(prompt_ids) > self.max_positions:
            raise ValueError(f"cannot prefill sequence {seq_id} with {len(prompt_ids)} tokens")
        with torch.no_grad():
            for pos, tok in enumerate(prompt_ids):
                logits = self._step([seq_id], [tok], [pos])
        return logits[0]

    def decode(self, seq_ids: list[int], tokens: list[int]) -> torch.Tensor:
        lengths = self.caches[0].lengths
        if (not seq_ids or len(seq_ids) != len(tokens) or len(set(seq_ids)) < len(seq_ids)
                or any(lengths.get(s, self.max_positions) >= self.max_positions for s in seq_ids)):
            raise ValueError("bad decode batch")
        with torch.no_grad():
            return self._step(list(seq_ids), list(tokens), [lengths[s] for s in seq_ids])

    def free(self, seq_id: int) -> None:
        for cache in reversed(self.caches):
            cache.free(seq_id)


class Scheduler:
    def __init__(self, runner, max_batch_size: int):
        if max_batch_size < 1:
            raise ValueError("max_batch_size must be >= 1")
        self.runner, self.max_batch_size = runner, max_batch_size
        self.waiting: "OrderedDict[int, Request]" = OrderedDict()
        self.running: "OrderedDict[int, list]" = OrderedDict()  # id -> [request, tokens, generator]

    def add(self, request: Request) -> None:
        rid = request.request_id
        if rid in self.waiting or rid in self.running:
            raise ValueError(f"duplicate request id {rid}")
        if request.max_tokens < 1 or not request.prompt_ids:
            raise ValueError("max_tokens >= 1 and a non-empty prompt, please")
        self.waiting[rid] = request

    def has_unfinished(self) -> bool:
        return len(self.waiting) > 0 or len(self.running) > 0

    def abort(self, request_id: int) -> bool:
        if self.waiting.pop(request_id, None) is not None:
            return True
        if self.running.pop(request_id, None) is not None:
            self.runner.free(request_id)
            return True
        return False

    def _token(self, rid: int, logits: torch.Tensor):
        request, tokens, gen = self.running[rid]
        if gen is None:
            token = int(torch.argmax(logits))
        else:
            token = int(torch.multinomial(torch.softmax(logits.double() / request.temperature, -1), 1, generator=gen))
        tokens.append(token)
        finish = "stop" if token in request.stop_token_ids else ("length" if len(tokens) >= request.max_tokens else None)
        if finish:
            self.running.pop(rid)
            self.runner.free(rid)
        return rid, token, finish

    def step(self) -> list[tuple[int, int, str | None]]:
        before = list(self.running)
        events = []
        for rid in list(self.waiting):
            if len(self.running) >= self.max_batch_size:
                break
            request = self.waiting[rid]
            if self.runner.num_free_blocks * self.runner.block_size < len(request.prompt_ids) + 1:
                break
            del self.waiting[rid]
            gen = None
            if request.temperature > 0:
                gen = torch.Generator()
                gen.manual_seed(request.seed) if request.seed is not None else gen.seed()
            self.running[rid] = [request, [], gen]
            events.append(self._token(rid, self.runner.prefill(rid, list(request.prompt_ids))))
        if before:
            last = [self.running[rid][1][-1] for rid in before]
            for rid, row in zip(before, self.runner.decode(before, last)):
                events.append(self._token(rid, row))
        return events


def serve(scheduler: Scheduler, encode: Callable[[str], list[int]], decode: Callable[[list[int]], str],
          host: str = "127.0.0.1", port: int = 0, *, model_name: str = "paged-gpt2", max_context: int = 128,
          stop_token_ids: tuple[int, ...] = ()):
    engine = _Engine(scheduler)
    options = {"encode": encode, "decode": decode, "model_name": model_name, "max_context": max_context,
               "stop_token_ids": tuple(stop_token_ids)}
    handler = type("Handler", (_Handler,), {"engine": engine, "options": options})
    httpd = ThreadingHTTPServer((host, port), handler)
    return _Server(httpd, engine)


# --- the server's parts (reference-only helpers) -------------------------------------------


class _Closed(Exception):
    pass


class _Engine:
    """Owns the scheduler: one background thread steps it; handlers submit and read tokens."""

    def __init__(self, scheduler: Scheduler):
        self.scheduler = scheduler
        self.lock = threading.Lock()
        self.wake = threading.Event()
        self.queues: dict[int, queue.Queue] = {}
        self.next_id = 0
        self.closed = False
        self.thread = threading.Thread(target=self._loop, name="serving-scheduler", daemon=True)
        self.thread.start()

    def submit(self, prompt_ids, max_tokens, temperature, seed, stop_token_ids) -> tuple[int, queue.Queue]:
        with self.lock:
            if self.closed:
                raise _Closed()
            rid, self.next_id = self.next_id, self.next_id + 1
            q: queue.Queue = queue.Queue()
            self.queues[rid] = q
            self.scheduler.add(Request(rid, list(prompt_ids), max_tokens, temperature, stop_token_ids, seed))
        self.wake.set()
        return rid, q

    def cancel(self, rid: int) -> None:
        with self.lock:
            if self.queues.pop(rid, None) is not None:
                self.scheduler.abort(rid)

    def _loop(self) -> None:
        while True:
            self.wake.clear()
            with self.lock:
                if self.closed:
                    return
                busy = self.scheduler.has_unfinished()
                if busy:
                    try:
                        events = self.scheduler.step()
                    except Exception as exc:  # fail every pending request rather than hang them
                        for q in self.queues.values():
                            q.put(exc)
                        self.queues.clear()
                        events = []
                        for rid in [r.request_id for r in self.scheduler.waiting] + list(self.scheduler.running):
                            self.scheduler.abort(rid)
                    for rid, token, finish in events:
                        q = self.queues.get(rid)
                        if q is not None:
                            q.put((token, finish))
                            if finish is not None:
                                del self.queues[rid]
            if not busy:
                self.wake.wait(0.05)

    def close(self) -> None:
        with self.lock:
            self.closed = True
            for q in self.queues.values():
                q.put(_Closed())
            self.queues.clear()
        self.wake.set()
        self.thread.join(timeout=10)


class _Server:
    def __init__(self, httpd: ThreadingHTTPServer, engine: _Engine):
        self.httpd, self.engine = httpd, engine
        host, port = httpd.server_address[:2]
        self.base_url = f"http://{host}:{port}/v1"
        self.thread = threading.Thread(target=httpd.serve_forever, kwargs={"poll_interval": 0.05},
                                       name="serving-http", daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.engine.close()
        self.httpd.shutdown()
        self.httpd.server_close()
        self.thread.join(timeout=10)

    def __enter__(self):
        return self

    def __exit__(self, *exc) -> None:
        self.close()


class _BadRequest(Exception):
    def __init__(self, message: str, param: str | None = None, status: int = 400, code: str | None = None):
        super().__init__(message)
        self.param, self.status, self.code = param, status, code


def _held_back(text: str, stops: list[str]) -> int:
    """How many characters at the end of `text` could still start a stop string."""
    hold = 0
    for s in stops:
        for k in range(min(len(s) - 1, len(text)), hold, -1):
            if text.endswith(s[:k]):
                hold = k
                break
    return hold


def _generate(engine: _Engine, options: dict, prompt_ids: list[int], params: dict):
    """Yields (text delta, None) while tokens come, then ("", finish reason); sets params["completion_tokens"]."""
    decode = options["decode"]
    stop_ids, stops = options["stop_token_ids"], params["stop"]
    rid, q = engine.submit(prompt_ids, params["max_tokens"], params["temperature"], params["seed"], stop_ids)
    ids: list[int] = []
    sent = ""
    try:
        while True:
            item = q.get()
            if isinstance(item, BaseException):
                raise item
            token, finish = item
            ids.append(token)
            params["completion_tokens"] = len(ids)
            text = decode(ids[:-1] if finish == "stop" else ids)  # a stop token is not text
            found = [text.find(s) for s in stops if s in text]
            if found:
                text, finish = text[:min(found)], "stop"
                engine.cancel(rid)
            if finish is not None:
                yield text[len(sent):], None
                yield "", finish
                return
            stable = text.rstrip("\ufffd")  # a character whose bytes have not all come yet
            stable = stable[:len(stable) - _held_back(stable, stops)]
            if len(stable) > len(sent):
                yield stable[len(sent):], None
                sent = stable
    finally:
        engine.cancel(rid)  # a client that went away, or an error: free the request's blocks


class _Handler(BaseHTTPRequestHandler):
    engine: _Engine
    options: dict
    server_version = "katas-serving/1.0"

    def log_message(self, format, *args):  # quiet
        pass

    def _send_json(self, status: int, body: dict) -> None:
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def _error(self, exc: _BadRequest) -> None:
        kind = "invalid_request_error" if exc.status < 500 else "server_error"
        self._send_json(exc.status, {"error": {"message": str(exc), "type": kind, "param": exc.param,
                                               "code": exc.code}})

    def do_GET(self):
        if self.path.rstrip("/") == "/v1/models":
            self._send_json(200, {"object": "list", "data": [{"id": self.options["model_name"], "object": "model",
                                                              "created": 0, "owned_by": "katas"}]})
        else:
            self._error(_BadRequest(f"Unknown route: GET {self.path}", status=404, code="not_found"))

    def do_POST(self):
        try:
            route = self.path.rstrip("/")
            if route not in ("/v1/completions", "/v1/chat/completions"):
                raise _BadRequest(f"Unknown route: POST {self.path}", status=404, code="not_found")
            length = int(self.headers.get("Content-Length") or 0)
            try:
                body = json.loads(self.rfile.read(length) or b"null")
            except (json.JSONDecodeError, UnicodeDecodeError) as exc:
                raise _BadRequest(f"The body is not valid JSON: {exc}", code="invalid_json") from None
            if not isinstance(body, dict):
                raise _BadRequest("The body must be a JSON object")
            chat = route == "/v1/chat/completions"
            prompt_ids, params = self._parse(body, chat)
            self._complete(prompt_ids, params, chat)
        except _BadRequest as exc:
            self._error(exc)
        except _Closed:
            self._error(_BadRequest("The server is shutting down", status=503))
        except (BrokenPipeError, ConnectionResetError):
            pass

    def _parse(self, body: dict, chat: bool) -> tuple[list[int], dict]:
        if chat:
            messages = body.get("messages")
            if (not isinstance(messages, list) or not messages or
                    not all(isinstance(m, dict) and isinstance(m.get("role"), str) and isinstance(m.get("content"), str)
                            for m in messages)):
                raise _BadRequest("'messages' must be a non-empty list of {role, content} strings", "messages")
            prompt = render_chatml([{"role": m["role"], "content": m["content"]} for m in messages],
                                   add_generation_prompt=True)
        else:
            prompt = body.get("prompt")
            if not isinstance(prompt, str):
                raise _BadRequest("'prompt' is required and must be a string", "prompt")
        prompt_ids = list(self.options["encode"](prompt))
        room = self.options["max_context"] - len(prompt_ids)
        if not prompt_ids:
            raise _BadRequest("The prompt is empty", "prompt")
        if room < 1:
            raise _BadRequest(f"The prompt has {len(prompt_ids)} tokens; this model's maximum context length is "
                              f"{self.options['max_context']} tokens", "prompt", code="context_length_exceeded")
        max_tokens = body.get("max_tokens", room if chat else 16)
        if max_tokens is None and chat:
            max_tokens = room
        if isinstance(max_tokens, bool) or not isinstance(max_tokens, int) or max_tokens < 1:
            raise _BadRequest(f"'max_tokens' must be a positive integer, got {max_tokens!r}", "max_tokens")
        if max_tokens > room:
            raise _BadRequest(f"This model's maximum context length is {self.options['max_context']} tokens: the "
                              f"prompt's {len(prompt_ids)} + max_tokens {max_tokens} is too many", "max_tokens",
                              code="context_length_exceeded")
        temperature = body.get("temperature", 1.0)
        if temperature is None:
            temperature = 1.0
        if isinstance(temperature, bool) or not isinstance(temperature, (int, float)) or not 0 <= temperature <= 2:
            raise _BadRequest(f"'temperature' must be a number from 0 to 2, got {temperature!r}", "temperature")
        stop = body.get("stop")
        stop = [] if stop is None else [stop] if isinstance(stop, str) else stop
        if not isinstance(stop, list) or not all(isinstance(s, str) and s for s in stop):
            raise _BadRequest("'stop' must be a string or a list of non-empty strings", "stop")
        seed = body.get("seed")
        if seed is not None and (isinstance(seed, bool) or not isinstance(seed, int)):
            raise _BadRequest(f"'seed' must be an integer, got {seed!r}", "seed")
        stream = body.get("stream", False)
        if not isinstance(stream, bool):
            raise _BadRequest("'stream' must be true or false", "stream")
        return prompt_ids, {"max_tokens": max_tokens, "temperature": float(temperature), "stop": stop,
                            "seed": seed, "stream": stream, "completion_tokens": 0}

    def _complete(self, prompt_ids: list[int], params: dict, chat: bool) -> None:
        created, model = int(time.time()), self.options["model_name"]
        pieces = _generate(self.engine, self.options, prompt_ids, params)
        ident = ("chatcmpl-" if chat else "cmpl-") + f"{self.engine.next_id}-{created}"
        if not params["stream"]:
            text, finish = "", None
            for delta, finish in pieces:
                text += delta
            usage = {"prompt_tokens": len(prompt_ids), "completion_tokens": params["completion_tokens"],
                     "total_tokens": len(prompt_ids) + params["completion_tokens"]}
            choice = ({"index": 0, "message": {"role": "assistant", "content": text}, "finish_reason": finish,
                       "logprobs": None} if chat else
                      {"index": 0, "text": text, "finish_reason": finish, "logprobs": None})
            self._send_json(200, {"id": ident, "object": "chat.completion" if chat else "text_completion",
                                  "created": created, "model": model, "choices": [choice], "usage": usage})
            return
        first = next(pieces)  # errors before the first token are still a JSON error, not a broken stream
        self.send_response(200)
        self.send_header("Content-Type", "text/event-stream")
        self.send_header("Cache-Control", "no-cache")
        self.send_header("Connection", "close")
        self.end_headers()
        obj = "chat.completion.chunk" if chat else "text_completion"

        def event(delta: str | None, finish: str | None, role: bool = False) -> None:
            if chat:
                d = {} if delta is None else {"content": delta}
                if role:
                    d["role"] = "assistant"
                choice = {"index": 0, "delta": d, "finish_reason": finish, "logprobs": None}
            else:
                choice = {"index": 0, "text": delta or "", "finish_reason": finish, "logprobs": None}
            chunk = {"id": ident, "object": obj, "created": created, "model": model, "choices": [choice]}
            self.wfile.write(f"data: {json.dumps(chunk)}\n\n".encode())
            self.wfile.flush()

        if chat:
            event("", None, role=True)
        for delta, finish in [first, *pieces]:
            if finish is not None:
                event(None, finish)
            elif delta:
                event(delta, None)
        self.wfile.write(b"data: [DONE]\n\n")
        self.wfile.flush()
