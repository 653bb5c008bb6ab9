"""Week 5 — continuous batching and an OpenAI-compatible server (vLLM, Orca).

A server gets requests one at a time, at any moment, with prompts and answers of every
length. *Static* batching waits for a batch to fill, runs it until its longest answer is
done, and only then starts the next one: short answers sit idle, new requests wait.
*Continuous* (iteration-level) batching (Orca, Yu et al. 2022; vLLM) decides the batch
again at every step: a finished request leaves at once and frees its KV-cache blocks, a
new one joins at the next step. Three parts, bottom up:

1. `PagedGPT2` — a Hugging Face GPT-2's weights run by hand over week 5's `PagedKVCache`
   (one per layer): `prefill` a prompt, `decode` one token for a whole batch of sequences
   of different lengths with `paged_attention`, `free` a sequence.
2. `Scheduler` — the continuous-batching loop: `add` requests, `step` makes one token for
   every running request (admitting waiting ones first), `has_unfinished`, `abort`.
3. `serve` — an HTTP server that speaks OpenAI's API (`/v1/completions`,
   `/v1/chat/completions`, streaming as server-sent events) over a scheduler, so that the
   real `openai` client (and `kata serve`) can talk to your engine.

    client threads ──HTTP──> handler: parse, encode, Scheduler.add ──┐
                                                                  queue per request
    one background thread: loop { Scheduler.step() } ── tokens ──┘ ──> decode, SSE

Run time: `pytest katas/week5/test_serving.py` takes about 10 s with a correct solution on a
2-core laptop CPU, most of it importing transformers and openai. Much longer means something
in your code is slow or stuck (a server thread waiting forever, a client that never gets its
[DONE]); a test that runs past its limit fails with TIMEOUT.

When it passes, `kata serve` puts your engine behind the chat-tuned tiny GPT-2 on
http://127.0.0.1:8000/v1 for any OpenAI client.
"""

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
    """One generation request (given: nothing to write here).

    - `request_id`: unique among the scheduler's unfinished requests; it is also the
      sequence id in the KV caches.
    - `prompt_ids`: the prompt's token ids (at least one).
    - `max_tokens`: how many tokens to generate at most (>= 1).
    - `temperature`: 0 means greedy (argmax); above 0, sample from softmax(logits / T).
    - `stop_token_ids`: ids that end the request (an end-of-turn or eos token). The stop
      token itself is emitted, with finish reason "stop".
    - `seed`: with temperature > 0, the seed of this request's own `torch.Generator`.
    """

    request_id: int
    prompt_ids: list[int]
    max_tokens: int
    temperature: float = 0.0
    stop_token_ids: tuple[int, ...] = ()
    seed: int | None = None


class PagedGPT2:
    """A Hugging Face `GPT2LMHeadModel` run over paged KV caches (one `PagedKVCache` per layer).

    `PagedGPT2(model, num_blocks, block_size)` keeps the model (its weights are used as they
    are: `model.transformer.wte`, `.wpe`, `.h[i]`, `.ln_f`, `model.lm_head`) and exposes:

    - `caches`: list of `model.config.n_layer` caches, each
      `PagedKVCache(num_blocks, block_size, n_head, n_embd // n_head)` with the model's dtype
      and device. All layers hold the same sequences, so their block use is identical.
    - `block_size`, `num_free_blocks` (a property: free blocks of one layer's cache, e.g.
      `caches[0].allocator.num_free`) and `max_positions` (`config.n_positions`): what a
      scheduler needs to know to admit requests.
    - `prefill(seq_id, prompt_ids) -> Tensor[V]`: run the whole prompt (causal attention
      over the prompt itself), append every layer's keys and values for the prompt to that
      layer's cache under `seq_id`, and return the logits of the LAST position (the
      distribution of the first new token). Shapes: k, v per layer `[n_head, T, head_dim]`.
    - `decode(seq_ids, tokens) -> Tensor[B, V]`: one new token per sequence (`tokens[b]` for
      `seq_ids[b]`), all in one batched forward pass. Each sequence sits at its OWN position:
      the token's position is that sequence's cached length before this call
      (`caches[0].seq_len(seq_ids[b])`), so position embeddings and cache slots differ per
      row. Per layer: q, k, v `[B, n_head, head_dim]`; append row b's k, v (as
      `[n_head, 1, head_dim]`) to `seq_ids[b]`'s cache, then
      `paged_attention(q, caches[layer], seq_ids)`.
    - `free(seq_id)`: free the sequence in every layer's cache (its blocks go back to the pool).

    A GPT-2 block, for x `[T, C]` (no batch axis; n_embd = C = n_head * head_dim):

        q, k, v = block.attn.c_attn(block.ln_1(x)).split(C, dim=-1)   # each [T, C]
        a = softmax(q k^T / sqrt(head_dim) + causal mask) v            # per head
        x = x + block.attn.c_proj(a)                                   # heads merged back to [T, C]
        x = x + block.mlp(block.ln_2(x))
        logits = model.lm_head(model.transformer.ln_f(x))

    with x = wte(ids) + wpe(positions) at the start. Work under `torch.no_grad()`.
    The oracle is the model itself: prefill's logits equal `model(ids).logits[0, -1]`, and a
    decode row equals the model run on that sequence's whole text.

    Pitfalls: in a batch of sequences with 5 and 9 cached tokens, the new tokens sit at
    positions 5 and 9 — not both at 9 (the batch's maximum), and not at the step count.
    Row b's k and v go into `seq_ids[b]`'s block table, no other. Errors (ValueError):
    prefill of a seq_id already cached or an empty prompt; decode of an unknown seq_id or
    a sequence that already fills `max_positions`, or len(seq_ids) != len(tokens).
    """

    def __init__(self, model, num_blocks: int, block_size: int):
        raise NotImplementedError

    @property
    def num_free_blocks(self) -> int:
        raise NotImplementedError

    def prefill(self, seq_id: int, prompt_ids: list[int]) -> torch.Tensor:
        raise NotImplementedError

    def decode(self, seq_ids: list[int], tokens: list[int]) -> torch.Tensor:
        raise NotImplementedError

    def free(self, seq_id: int) -> None:
        raise NotImplementedError


class Scheduler:
    """Continuous batching: which requests run at each step, and the tokens they make.

    `Scheduler(runner, max_batch_size)` (ValueError if max_batch_size < 1). The runner is a
    `PagedGPT2` or anything with the same methods: `prefill(seq_id, prompt_ids) -> Tensor[V]`,
    `decode(seq_ids, tokens) -> Tensor[B, V]`, `free(seq_id)`, and the attributes
    `block_size` and `num_free_blocks` (the tests also use a small scripted runner).

    - `add(request)`: queue a `Request` (first come, first served). ValueError for
      max_tokens < 1, an empty prompt, or a request_id already waiting or running.
    - `has_unfinished() -> bool`: any request waiting or running.
    - `abort(request_id) -> bool`: drop a waiting or running request (a running one's blocks
      are freed at once); False if the id is unknown. The server uses it for stop strings
      and for clients that go away.
    - `step() -> list[(request_id, token, finish_reason)]`: one token for every request
      that runs this step, in this order:

      1. Admit: while requests wait and fewer than `max_batch_size` run, look at the FIRST
         waiting request. If the runner has at least ceil((len(prompt_ids) + 1) / block_size)
         free blocks (its prompt plus the slot of its first decoded token), admit it:
         `prefill` it and pick its first token from the prefill logits. Otherwise stop
         admitting for this step — a later, smaller request does not overtake it (FCFS).
      2. Decode: the requests that were running BEFORE this step's admissions make one
         token each, in ONE `runner.decode(ids, last_tokens)` call (skip it if none).
         A request admitted this step is not decoded this step: its first token came from
         the prefill.

      Events come admissions first, then the decoded rows, each in admission order. After
      picking a token: it ends the request with "stop" if it is one of the request's
      `stop_token_ids` (the token is still emitted), else with "length" once the request
      has `max_tokens` tokens; otherwise the reason is None. A finished request leaves the
      batch and `runner.free`s its blocks in that same step: no token ever follows its
      finishing one.

    Picking a token: temperature 0 -> `int(logits.argmax())`; temperature T > 0 ->
    `torch.multinomial(torch.softmax(logits.double() / T, -1), 1, generator=g)` with g the
    request's own `torch.Generator`, made once per request and seeded with
    `g.manual_seed(seed)` (or `g.seed()` when seed is None). One generator per request
    makes a seeded request give the same tokens whatever else runs beside it.

    Worked example (max_batch_size=2, requests A, B, C added before step 1, A with
    max_tokens=2): step 1 admits A and B (two prefills, two events, no decode); step 2
    cannot admit C (two run) and decodes A and B: A finishes ("length") and frees its
    blocks; step 3 admits C (prefill) and decodes B. Static batching would have made C
    wait for B to finish too.

    Blocks: admission only checks the prompt + 1 rule above; size `num_blocks` so that
    `max_batch_size` full-length sequences fit (no preemption in this kata: a decode that
    finds no free block raises the cache's RuntimeError).
    """

    def __init__(self, runner, max_batch_size: int):
        raise NotImplementedError

    def add(self, request: Request) -> None:
        raise NotImplementedError

    def has_unfinished(self) -> bool:
        raise NotImplementedError

    def abort(self, request_id: int) -> bool:
        raise NotImplementedError

    def step(self) -> list[tuple[int, int, str | None]]:
        raise NotImplementedError


def serve(scheduler: Scheduler, encode: Callable[[str], list[int]], decode: Callable[[list[int]], str],
          host: str = "127.0.0.1", port: int = 0, *, model_name: str = "paged-gpt2", max_context: int = 128,
          stop_token_ids: tuple[int, ...] = ()):
    """Serve `scheduler` over HTTP with OpenAI's API; return at once, serving in the background.

    Returns a server object with `base_url` (`"http://127.0.0.1:PORT/v1"`, the real port
    when `port=0` asks the system for a free one) and `close()` (stops serving, ends every
    thread it started, releases the port). Point any OpenAI client at it:

        server = serve(Scheduler(PagedGPT2(model, 256, 16), 8), encode, decode)
        client = openai.OpenAI(base_url=server.base_url, api_key="x")
        client.completions.create(model="x", prompt="Once upon a time", max_tokens=20, temperature=0)
        server.close()

    Threads: the stdlib `ThreadingHTTPServer` runs each request in its own thread; ONE
    background thread loops over `scheduler.step()` while `has_unfinished()` (and waits
    for new work otherwise) and hands each event to its request's `queue.Queue`. The
    scheduler is not thread-safe: hold one lock around add/abort/step.

    Routes (JSON bodies; unknown fields are ignored):
    - `POST /v1/completions`: `prompt` (a string, required), `max_tokens` (default 16),
      `temperature` (default 1.0, as OpenAI; 0 is greedy), `stop`, `seed`, `stream`.
      Response: `{"id", "object": "text_completion", "created", "model": model_name,
      "choices": [{"index": 0, "text", "finish_reason", "logprobs": None}], "usage":
      {"prompt_tokens", "completion_tokens", "total_tokens"}}`.
    - `POST /v1/chat/completions`: `messages` instead of `prompt`, rendered with week 1's
      `render_chatml(messages, add_generation_prompt=True)` and then `encode`d like any
      prompt; `max_tokens` defaults to the room left in the context. Response object
      `"chat.completion"`, choices `{"index": 0, "message": {"role": "assistant",
      "content"}, "finish_reason", "logprobs": None}`.
    - `GET /v1/models`: `{"object": "list", "data": [{"id": model_name, "object": "model", ...}]}`.

    The text: `decode` of the generated ids. A token of `stop_token_ids` (given to every
    Request: the model's end of turn) ends with finish_reason "stop" and is not part of the
    text, though usage counts it. `stop` (a string or a list of strings) is OpenAI's TEXT
    stop: after each token search the whole generated text; at the first occurrence of any
    stop string cut the text just before it, finish_reason "stop", and `abort` the
    request (its blocks are freed; no further tokens). Example: generated text ", there was
    a" with stop ["was"] -> text ", there ", finish_reason "stop", completion_tokens = the
    tokens generated up to and including the one that completed "was". usage:
    prompt_tokens = len(encode(prompt)), completion_tokens = tokens generated.

    Streaming (`"stream": true`): status 200, `Content-Type: text/event-stream`, then one
    server-sent event per chunk, each `data: <json>` followed by a BLANK line
    (`"data: {...}\\n\\n"`), and finally `data: [DONE]\\n\\n`; flush after each. Completion
    chunks are `text_completion` objects with `choices[0].text` the new text; chat chunks
    are `"chat.completion.chunk"` with `choices[0].delta` (`{"role": "assistant",
    "content": ""}` first, then `{"content": ...}`), and the last chunk before [DONE]
    carries the finish_reason (empty text/delta). The chunks, joined, equal the
    non-streamed text. Two rules make that true:
    - No chunk ends inside a UTF-8 character: byte-level tokens can split "é" (2 bytes) or
      "日" (3 bytes) across tokens, and decode of a partial character gives "\\ufffd".
      Decode all generated ids each time and send only the new text that does not end in
      "\\ufffd"; the rest waits for the next token.
    - With stop strings, hold back any end of the text that could still become a stop
      string ("the ca" with stop "cat": hold "ca"), or a chunk would show part of it.

    Bad requests are answered, never crash the server, with a 4xx status and OpenAI's
    error body `{"error": {"message": ..., "type": "invalid_request_error", "param": ...,
    "code": ...}}`: 400 for a body that is not JSON or not an object, a missing or
    non-string `prompt` (or bad `messages`), `max_tokens` that is not an integer >= 1 or
    does not fit (len(prompt ids) + max_tokens > `max_context`), `temperature` outside
    [0, 2], a bad `stop`, `seed` or `stream`; 404 for an unknown route. The server keeps
    serving afterwards.
    """
    raise NotImplementedError
