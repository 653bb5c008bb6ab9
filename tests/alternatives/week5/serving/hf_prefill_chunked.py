"""Continuous batching over a paged KV cache, and an OpenAI-compatible server (alternative: HF prefill, padded dense decode, HTTP/1.1 chunked streams)."""

from __future__ import annotations

import json
import math
import queue
import threading
import time
from collections import deque
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
    """Prefill through the Hugging Face model's own forward (its cache copied into the pages);
    decode gathers each sequence's pages into a padded dense batch with a length mask."""

    def __init__(self, model, num_blocks: int, block_size: int):
        self.model = model.eval()
        c = model.config
        self.block_size, self.max_positions = block_size, c.n_positions
        self.heads, self.dim = c.n_head, c.n_embd // c.n_head
        p = model.lm_head.weight
        self.caches = []
        for _ in range(c.n_layer):
            self.caches.append(PagedKVCache(num_blocks, block_size, self.heads, self.dim, dtype=p.dtype, device=p.device))

    @property
    def num_free_blocks(self) -> int:
        return min(cache.allocator.num_free for cache in self.caches)

    def prefill(self, seq_id: int, prompt_ids: list[int]) -> torch.Tensor:
        if not prompt_ids or len(prompt_ids) > self.max_positions or seq_id in self.caches[0].block_tables:
            raise ValueError("bad prefill")
        with torch.no_grad():
            out = self.model(torch.tensor([list(prompt_ids)], device=self.model.lm_head.weight.device), use_cache=True)
            kv = out.past_key_values
            for i, cache in enumerate(self.caches):
                cache.append(seq_id, kv.layers[i].keys[0], kv.layers[i].values[0])
            return out.logits[0, -1]

    def decode(self, seq_ids: list[int], tokens: list[int]) -> torch.Tensor:
        if len(seq_ids) != len(tokens) or len(set(seq_ids)) != len(seq_ids) or not seq_ids:
            raise ValueError("bad decode batch")
        known = self.caches[0].block_tables
        if any(s not in known or self.caches[0].seq_len(s) >= self.max_positions for s in seq_ids):
            raise ValueError("unknown or full sequence")
        t = self.model.transformer
        dev = t.wte.weight.device
        pos = [self.caches[0].seq_len(s) for s in seq_ids]
        with torch.no_grad():
            h = t.wte(torch.tensor(tokens, device=dev)) + t.wpe(torch.tensor(pos, device=dev))
            B, C = h.shape
            longest = max(pos) + 1
            mask = torch.arange(longest, device=dev)[None, :] < torch.tensor(pos, device=dev)[:, None] + 1  # [B, L]
            for cache, block in zip(self.caches, t.h):
                qkv = block.attn.c_attn(block.ln_1(h)).view(B, 3, self.heads, self.dim)
                keys = torch.zeros(B, self.heads, longest, self.dim, dtype=h.dtype, device=dev)
                values = torch.zeros_like(keys)
                for b, s in enumerate(seq_ids):
                    cache.append(s, qkv[b, 1][:, None], qkv[b, 2][:, None])
                    k, v = cache.gather(s)
                    keys[b, :, :k.shape[1]], values[b, :, :v.shape[1]] = k, v
                scores = torch.einsum("bhd,bhld->bhl", qkv[:, 0], keys) / math.sqrt(self.dim)
                scores = scores.masked_fill(~mask[:, None, :], float("-inf"))
                att = torch.einsum("bhl,bhld->bhd", scores.softmax(-1), values).reshape(B, C)
                h = h + block.attn.c_proj(att)
                h = h + block.mlp(block.ln_2(h))
            return self.model.lm_head(t.ln_f(h))

    def free(self, seq_id: int) -> None:
        for cache in self.caches:
            cache.free(seq_id)


class _Live:
    def __init__(self, request: Request):
        self.request, self.tokens = request, []
        self.rng = None
        if request.temperature > 0:
            self.rng = torch.Generator()
            if request.seed is None:
                self.rng.seed()
            else:
                self.rng.manual_seed(request.seed)

    def pick(self, logits: torch.Tensor) -> int:
        if self.rng is None:
            return int(logits.argmax())
        p = torch.softmax(logits.double() / self.request.temperature, -1)
        return int(torch.multinomial(p, 1, generator=self.rng))


class Scheduler:
    def __init__(self, runner, max_batch_size: int):
        if not max_batch_size >= 1:
            raise ValueError("max_batch_size < 1")
        self.runner, self.limit = runner, max_batch_size
        self.queue: list[Request] = []
        self.live: list[_Live] = []

    def add(self, request: Request) -> None:
        ids = {r.request_id for r in self.queue} | {x.request.request_id for x in self.live}
        if request.max_tokens < 1 or len(request.prompt_ids) == 0 or request.request_id in ids:
            raise ValueError("bad request")
        self.queue.append(request)

    def has_unfinished(self) -> bool:
        return len(self.queue) + len(self.live) > 0

    def abort(self, request_id: int) -> bool:
        for i, r in enumerate(self.queue):
            if r.request_id == request_id:
                self.queue.pop(i)
                return True
        for x in self.live:
            if x.request.request_id == request_id:
                self.live.remove(x)
                self.runner.free(request_id)
                return True
        return False

    def _after(self, x: _Live, token: int):
        x.tokens.append(token)
        r = x.request
        reason = "stop" if token in r.stop_token_ids else "length" if len(x.tokens) == r.max_tokens else None
        if reason:
            self.live.remove(x)
            self.runner.free(r.request_id)
        return (r.request_id, token, reason)

    def step(self) -> list[tuple[int, int, str | None]]:
        old = list(self.live)
        out = []
        while self.queue and len(self.live) < self.limit:
            r = self.queue[0]
            if math.ceil((len(r.prompt_ids) + 1) / self.runner.block_size) > self.runner.num_free_blocks:
                break
            self.queue.pop(0)
            x = _Live(r)
            self.live.append(x)
            out.append(self._after(x, x.pick(self.runner.prefill(r.request_id, list(r.prompt_ids)))))
        if old:
            logits = self.runner.decode([x.request.request_id for x in old], [x.tokens[-1] for x in old])
            out += [self._after(x, x.pick(row)) for x, row in zip(old, logits)]
        return out


def serve(scheduler: Scheduler, encode: Callable[[str], list[int]], decode: Callable[[list[int]], str],
          host: str = "127.0.0.1", port: int = 0, *, model_name: str = "paged-gpt2", max_context: int = 128,
          stop_token_ids: tuple[int, ...] = ()):
    return _App(scheduler, encode, decode, host, port, model_name, max_context, tuple(stop_token_ids))


class _Invalid(Exception):
    def __init__(self, status, message, param=None):
        super().__init__(message)
        self.status, self.param = status, param


class _Job:
    def __init__(self, rid):
        self.rid, self.events, self.done, self.failed = rid, [], False, None


class _App:
    """One Condition guards the scheduler and every job; the loop thread notifies on each step."""

    def __init__(self, scheduler, encode, decode, host, port, model_name, max_context, stop_ids):
        self.scheduler, self.encode, self.decode = scheduler, encode, decode
        self.model_name, self.max_context, self.stop_ids = model_name, max_context, stop_ids
        self.cond = threading.Condition()
        self.jobs: dict[int, _Job] = {}
        self.counter = 0
        self.running = True
        app = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args):
                pass

            def do_GET(self):
                if self.path == "/v1/models":
                    app.reply(self, 200, {"object": "list", "data": [{"id": app.model_name, "object": "model"}]})
                else:
                    app.reply(self, 404, app.error_body(_Invalid(404, f"no route GET {self.path}")))

            def do_POST(self):
                app.handle(self)

        self.httpd = ThreadingHTTPServer((host, port), Handler)
        self.httpd.daemon_threads = True
        self.base_url = "http://%s:%d/v1" % self.httpd.server_address[:2]
        self.threads = [threading.Thread(target=self.httpd.serve_forever, args=(0.05,), daemon=True),
                        threading.Thread(target=self.loop, daemon=True)]
        for t in self.threads:
            t.start()

    def loop(self):
        with self.cond:
            while self.running:
                if not self.scheduler.has_unfinished():
                    self.cond.wait(0.1)
                    continue
                try:
                    for rid, tok, fin in self.scheduler.step():
                        job = self.jobs.get(rid)
                        if job:
                            job.events.append((tok, fin))
                            job.done = fin is not None
                except Exception as exc:
                    for job in self.jobs.values():
                        job.failed = exc
                self.cond.notify_all()
                self.cond.wait(0)  # let handlers take the lock between steps

    def close(self):
        with self.cond:
            self.running = False
            for job in self.jobs.values():
                job.failed = RuntimeError("server closed")
            self.cond.notify_all()
        self.httpd.shutdown()
        self.httpd.server_close()
        for t in self.threads:
            t.join(5)

    @staticmethod
    def error_body(exc):
        return {"error": {"message": str(exc), "type": "invalid_request_error", "param": exc.param, "code": None}}

    @staticmethod
    def reply(h, status, obj):
        data = json.dumps(obj).encode()
        h.send_response(status)
        h.send_header("Content-Type", "application/json")
        h.send_header("Content-Length", str(len(data)))
        h.end_headers()
        h.wfile.write(data)

    def parse(self, h):
        if h.path not in ("/v1/completions", "/v1/chat/completions"):
            raise _Invalid(404, f"no route POST {h.path}")
        raw = h.rfile.read(int(h.headers.get("Content-Length", 0)))
        try:
            body = json.loads(raw)
        except ValueError:
            raise _Invalid(400, "invalid JSON body") from None
        if type(body) is not dict:
            raise _Invalid(400, "body must be an object")
        chat = h.path.endswith("chat/completions")
        if chat:
            msgs = body.get("messages")
            ok = type(msgs) is list and len(msgs) > 0
            ok = ok and all(type(m) is dict and type(m.get("role")) is str and type(m.get("content")) is str for m in msgs)
            if not ok:
                raise _Invalid(400, "messages must be a non-empty list of role/content strings", "messages")
            text = render_chatml([{"role": m["role"], "content": m["content"]} for m in msgs], add_generation_prompt=True)
        else:
            text = body.get("prompt")
            if type(text) is not str:
                raise _Invalid(400, "prompt must be a string", "prompt")
        ids = list(self.encode(text))
        left = self.max_context - len(ids)
        if not ids or left <= 0:
            raise _Invalid(400, "prompt empty or too long", "prompt")
        n = body.get("max_tokens")
        if n is None:
            n = left if chat else 16
        if type(n) is not int or n <= 0 or n > left:
            raise _Invalid(400, f"max_tokens must be an integer from 1 to {left}", "max_tokens")
        temp = body.get("temperature")
        temp = 1.0 if temp is None else temp
        if type(temp) not in (int, float) or temp < 0 or temp > 2:
            raise _Invalid(400, "temperature must be in [0, 2]", "temperature")
        stop = body.get("stop") or []
        if type(stop) is str:
            stop = [stop]
        if type(stop) is not list or any(type(s) is not str or s == "" for s in stop):
            raise _Invalid(400, "bad stop", "stop")
        seed = body.get("seed")
        if seed is not None and type(seed) is not int:
            raise _Invalid(400, "bad seed", "seed")
        stream = body.get("stream", False)
        if type(stream) is not bool:
            raise _Invalid(400, "bad stream", "stream")
        return chat, ids, Request(0, ids, n, float(temp), self.stop_ids, seed), stop, stream

    def handle(self, h):
        try:
            chat, ids, req, stop, stream = self.parse(h)
        except _Invalid as exc:
            self.reply(h, exc.status, self.error_body(exc))
            return
        with self.cond:
            self.counter += 1
            req.request_id = rid = self.counter
            job = self.jobs[rid] = _Job(rid)
            self.scheduler.add(req)
            self.cond.notify_all()
        kind = "chat.completion" if chat else "text_completion"
        base = {"id": f"x-{rid}", "object": kind + (".chunk" if chat and stream else ""), "created": int(time.time()),
                "model": self.model_name}
        try:
            if not stream:
                text, fin, used = "", None, 0
                for piece, fin, used in self.pieces(job, stop):
                    text += piece
                choice = {"index": 0, "finish_reason": fin, "logprobs": None}
                choice.update({"message": {"role": "assistant", "content": text}} if chat else {"text": text})
                usage = {"prompt_tokens": len(ids), "completion_tokens": used, "total_tokens": len(ids) + used}
                self.reply(h, 200, {**base, "choices": [choice], "usage": usage})
                return
            h.send_response(200)
            h.send_header("Content-Type", "text/event-stream")
            h.send_header("Transfer-Encoding", "chunked")
            h.end_headers()

            def send(data: bytes):
                h.wfile.write(b"%x\r\n%s\r\n" % (len(data), data))
                h.wfile.flush()

            def chunk(piece, fin, first=False):
                if chat:
                    delta = {"role": "assistant", "content": ""} if first else ({} if fin else {"content": piece})
                    choice = {"index": 0, "delta": delta, "finish_reason": fin}
                else:
                    choice = {"index": 0, "text": piece, "finish_reason": fin}
                send(b"data: " + json.dumps({**base, "choices": [choice]}).encode() + b"\n\n")

            if chat:
                chunk("", None, first=True)
            for piece, fin, _ in self.pieces(job, stop):
                if piece:
                    chunk(piece, None)
                if fin:
                    chunk("", fin)
            send(b"data: [DONE]\n\n")
            send(b"")
        except OSError:
            pass
        finally:
            with self.cond:
                if self.jobs.pop(rid, None) is not None:
                    self.scheduler.abort(rid)

    def pieces(self, job, stop):
        """Yields (new text, finish or None, tokens so far) as tokens arrive."""
        seen, tokens, shown = 0, [], ""
        while True:
            with self.cond:
                while len(job.events) == seen and job.failed is None:
                    self.cond.wait(1.0)
                if job.failed is not None and len(job.events) == seen:
                    raise OSError(str(job.failed))
                new = job.events[seen:]
                seen = len(job.events)
            for tok, fin in new:
                tokens.append(tok)
                visible = tokens[:-1] if fin == "stop" else tokens
                text = self.decode(visible)
                cuts = [i for i in (text.find(s) for s in stop) if i >= 0]
                if cuts:
                    text, fin = text[:min(cuts)], "stop"
                    with self.cond:
                        if self.jobs.pop(job.rid, None) is not None:
                            self.scheduler.abort(job.rid)
                if fin:
                    yield text[len(shown):], fin, len(tokens)
                    return
                end = len(text)
                while end and text[end - 1] == "\ufffd":
                    end -= 1
                safe = text[:end]
                hold = 0
                for s in stop:
                    hold = max([hold] + [k for k in range(1, len(s)) if safe.endswith(s[:k])])
                safe = safe[:len(safe) - hold]
                if len(safe) > len(shown):
                    yield safe[len(shown):], None, len(tokens)
                    shown = safe
