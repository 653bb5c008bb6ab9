"""Hidden tests for week5/serving: fresh prompts, a float64 model and odd block sizes, block
reuse after free, random workloads on the scripted runner and mixed greedy/sampled requests
on the model (expected: the reference), more HTTP requests and bad requests."""

from __future__ import annotations

import copy
import functools
import json
import random

import pytest
import torch

from graders import check, in_one_crossing, oracle, reference, student, unwrap
from graders.testing import FLOAT32_REDUCTION, hinted

from .test_serving import (ScriptedRunner, _schedule, _serve_and_run, decode, encode, error_shaped, hf_chat,
                           hf_completion, stop_mistake, tiny_model)

pytestmark = pytest.mark.hidden

serving = student("week5.serving")
model_solution = reference("week5.serving")


@functools.cache
def tiny_model_float64():
    return copy.deepcopy(tiny_model()).double()


def _ops(float64: bool, num_blocks: int, block_size: int, ops: list) -> dict:
    """Glue: a sequence of prefill / decode / free calls on your PagedGPT2; logits and free blocks back."""
    runner = unwrap(serving.PagedGPT2)(tiny_model_float64() if float64 else tiny_model(), num_blocks, block_size)
    out = []
    for op in ops:
        if op[0] == "prefill":
            out.append(runner.prefill(op[1], op[2]).detach().clone())
        elif op[0] == "decode":
            out.append(runner.decode(op[1], op[2]).detach().clone())
        else:
            runner.free(op[1])
            out.append([c.allocator.num_free for c in runner.caches])
    return {"out": out}


def model_ops(float64: bool, ops: list) -> list:
    """The model on each sequence's whole text, without a cache (free: no logits)."""
    model = tiny_model_float64() if float64 else tiny_model()
    texts: dict[int, list[int]] = {}
    result = []
    with torch.no_grad():
        for op in ops:
            if op[0] == "prefill":
                texts[op[1]] = list(op[2])
                result.append(model(torch.tensor([texts[op[1]]])).logits[0, -1])
            elif op[0] == "decode":
                rows = []
                for s, t in zip(op[1], op[2]):
                    texts[s].append(t)
                    rows.append(model(torch.tensor([texts[s]])).logits[0, -1])
                result.append(torch.stack(rows))
            else:
                del texts[op[1]]
                result.append(None)
    return result


def random_ops(seed: int) -> list:
    rng = random.Random(seed)
    ops = [["prefill", 0, [rng.randrange(511) for _ in range(6)]], ["prefill", 1, [rng.randrange(511) for _ in range(1)]],
           ["prefill", 2, [rng.randrange(511) for _ in range(4)]]]
    live = [0, 1, 2]
    for step in range(8):
        if step == 3:
            ops.append(["free", 0])
            live.remove(0)
        if step == 4:
            ops.append(["prefill", 3, [rng.randrange(511) for _ in range(9)]])
            live.append(3)
        ops.append(["decode", list(live), [rng.randrange(511) for _ in live]])
    return ops


@pytest.mark.points(3)
@pytest.mark.parametrize("float64,block_size", [(True, 3), (False, 1), (False, 5)])
def test_prefill_decode_free_on_fresh_sequences(float64, block_size):
    """Random tokens, a sequence freed mid-way and a new one prefilled into its blocks."""
    ops = random_ops(40 + block_size)
    expected = oracle(model_ops, float64, ops)
    got = hinted("cache_dtype", in_one_crossing, serving, _ops, float64, 64, block_size, ops)
    for i, op in enumerate(ops):
        if op[0] == "free":
            continue
        if float64:
            check.close(got["out"][i], expected[i], hint="cache_dtype", what=f"op {i}: {op[0]} of {op[1]} (float64 model)")
        else:
            check.close(got["out"][i], expected[i], hint="decode_positions", what=f"op {i}: {op[0]} of {op[1]}",
                        **FLOAT32_REDUCTION)


def random_plan(seed: int) -> tuple[dict, int, list]:
    rng = random.Random(seed)
    block_size = rng.choice([2, 3, 4])
    max_batch_size = rng.randint(1, 4)
    plan: list[list[dict]] = [[] for _ in range(8)]
    for rid in range(rng.randint(5, 9)):
        fields = {"request_id": 10 + rid, "prompt_ids": [rng.randrange(50) for _ in range(rng.randint(1, 12))],
                  "max_tokens": rng.randint(1, 8)}
        if rng.random() < 0.4:
            fields["stop_token_ids"] = tuple(rng.sample(range(50), 6))
        plan[rng.randrange(8)].append(fields)
    num_blocks = max_batch_size * -(-20 // block_size)
    return {"block_size": block_size, "num_blocks": num_blocks}, max_batch_size, plan


def reference_schedule(runner_options: dict, max_batch_size: int, plan: list, max_steps: int = 300) -> dict:
    """The reference Scheduler on the same scripted runner and plan."""
    runner = ScriptedRunner(**runner_options)
    scheduler = model_solution.Scheduler(runner, max_batch_size)
    steps = []
    for i in range(max_steps):
        for fields in plan[i] if i < len(plan) else []:
            scheduler.add(model_solution.Request(**fields))
        if i >= len(plan) and not scheduler.has_unfinished():
            break
        steps.append([[int(r), int(t), f] for r, t, f in scheduler.step()])
    return {"steps": steps, "log": runner.log, "free": runner.num_free_blocks}


@pytest.mark.points(3)
@pytest.mark.parametrize("seed", [5, 6, 7, 8])
def test_random_workloads_schedule_like_the_reference(seed):
    runner_options, max_batch_size, plan = random_plan(seed)
    expected = oracle(reference_schedule, runner_options, max_batch_size, plan)
    got = in_one_crossing(serving, _schedule, runner_options, max_batch_size, plan)
    check.equal(got["steps"], expected["steps"], what=f"every step's events (max_batch_size={max_batch_size})")
    check.equal(got["log"], expected["log"], what="the runner's calls")
    check.equal(got["free"], runner_options["num_blocks"], hint="blocks_not_freed", what="free blocks at the end")


def _mixed(requests: list[dict]) -> dict:
    """Glue: your PagedGPT2 + Scheduler(3) on greedy and seeded sampled requests."""
    runner = unwrap(serving.PagedGPT2)(tiny_model(), 96, 3)
    scheduler = unwrap(serving.Scheduler)(runner, 3)
    return _drain(scheduler, [unwrap(serving.Request)(**r) for r in requests], runner)


def _drain(scheduler, requests, runner) -> dict:
    for r in requests:
        scheduler.add(r)
    events = []
    while scheduler.has_unfinished():
        events.append([[int(r), int(t), f] for r, t, f in scheduler.step()])
    return {"events": events, "free": int(runner.num_free_blocks)}


def reference_mixed(requests: list[dict]) -> dict:
    runner = model_solution.PagedGPT2(tiny_model(), 96, 3)
    scheduler = model_solution.Scheduler(runner, 3)
    return _drain(scheduler, [model_solution.Request(**r) for r in requests], runner)


@pytest.mark.points(3)
def test_greedy_and_sampled_requests_on_the_model():
    prompts = ["A little bird", "The dog and the cat were", "Once", "Mia looked at the sky and", "It was a"]
    requests = [{"request_id": i, "prompt_ids": encode(p), "max_tokens": 6 + 3 * i,
                 "temperature": [0.0, 0.8, 0.0, 1.2, 0.5][i], "seed": 100 + i,
                 "stop_token_ids": (encode(".")[0],) if i % 2 == 0 else ()} for i, p in enumerate(prompts)]
    expected = oracle(reference_mixed, requests)
    got = in_one_crossing(serving, _mixed, requests)
    check.equal(got["events"], expected["events"], hint="per_request_generator", what="every step's events")
    check.equal(got["free"], 96, hint="blocks_not_freed", what="free blocks at the end")


def reference_sampled_text(prompt: str, max_tokens: int, temperature: float, seed: int) -> str:
    runner = model_solution.PagedGPT2(tiny_model(), 64, 4)
    scheduler = model_solution.Scheduler(runner, 1)
    out = _drain(scheduler, [model_solution.Request(0, encode(prompt), max_tokens, temperature, (), seed)], runner)
    return decode([e[1] for step in out["events"] for e in step])


@pytest.mark.points(3)
def test_http_on_fresh_requests():
    conversation = [{"role": "user", "content": "What is the opposite of big?"},
                    {"role": "assistant", "content": "Small."}, {"role": "user", "content": "And of hot?"}]
    actions = [["completion", {"prompt": "The little fox", "max_tokens": 18, "temperature": 0, "stop": [" bro", "!"]}],
               ["completion_stream", {"prompt": "The little fox", "max_tokens": 18, "temperature": 0, "stop": [" bro", "!"]}],
               ["chat_stream", {"messages": conversation, "max_tokens": 10, "temperature": 0}],
               ["completion", {"prompt": "One morning", "max_tokens": 15, "temperature": 0.8, "seed": 7}],
               ["completion", {"prompt": "One morning", "max_tokens": 15, "temperature": 0.8, "seed": 7}]]
    got = in_one_crossing(serving, _serve_and_run, actions)
    first, streamed, chat, sampled, again = got["results"]
    check.equal([first.get("text"), first.get("finish")],
                [oracle(hf_completion, "The little fox", 18, [" bro", "!"])["text"],
                 oracle(hf_completion, "The little fox", 18, [" bro", "!"])["finish"]],
                hint=oracle(stop_mistake, first.get("text"), "The little fox", 18, [" bro", "!"]),
                what="text and finish_reason with stop [' bro', '!'] (' b' + 'r' + 'own')")
    check.equal(first.get("usage"), oracle(hf_completion, "The little fox", 18, [" bro", "!"])["usage"],
                hint="usage_counts", what="usage")
    check.equal("".join(streamed.get("texts", [])), oracle(hf_completion, "The little fox", 18, [" bro", "!"])["text"],
                hint=oracle(stop_mistake, "".join(streamed.get("texts", [])), "The little fox", 18, [" bro", "!"]), what="the streamed text with stop strings")
    check.equal("".join(chat.get("texts", [])), oracle(hf_chat, conversation, 10)["text"], hint="chat_template",
                what="a streamed two-turn chat")
    check.equal(sampled.get("text"), oracle(reference_sampled_text, "One morning", 15, 0.8, 7),
                hint="sampling_params", what="a sampled completion (temperature 0.8, seed 7)")
    check.equal(again.get("text"), sampled.get("text"), hint="sampling_params", what="the same request again")
    check.equal(got["free"], 256, hint="blocks_not_freed", what="free blocks at the end")


@pytest.mark.points(2)
def test_more_bad_requests():
    long_prompt = "Once upon a time, there was a cat. " * 8
    fill = 128 - len(encode(long_prompt))  # the largest max_tokens that fits the 128 positions
    bad = [b'[1, 2]', b'{"prompt": "Hi", "temperature": -1}', b'{"prompt": "Hi", "stop": 5}',
           b'{"prompt": "Hi", "max_tokens": "ten"}', b'{"prompt": "Hi", "max_tokens": 0}', b'{"prompt": 42}',
           json.dumps({"prompt": long_prompt, "max_tokens": fill + 1}).encode()]
    actions = [["raw", "POST", "/v1/completions", body] for body in bad]
    actions += [["raw", "POST", "/v1/chat/completions", b'{"messages": []}'],
                ["raw", "POST", "/v1/chat/completions", b'{"messages": [{"role": "user"}]}'],
                ["raw", "GET", "/v1/nothing", None], ["raw", "GET", "/v1/models", None],
                ["completion", {"prompt": long_prompt, "max_tokens": fill, "temperature": 0}]]
    got = in_one_crossing(serving, _serve_and_run, actions)
    hints = ["bad_json", "temperature_check", "stop_strings", "max_tokens_check", "max_tokens_check", "missing_prompt",
             "max_tokens_check", "missing_prompt", "missing_prompt", "unknown_route"]
    for action, r, hint in zip(actions, got["results"], hints):
        check.that(r["status"] == (404 if action[1] == "GET" else 400) and error_shaped(r["body"]),
                   f"{action[1]} {action[2]} {action[3]!r} should get {404 if action[1] == 'GET' else 400} with an "
                   f"OpenAI error body; got {r['status']} {r['body'][:200]!r}", hint=hint)
    models = got["results"][-2]
    check.that(models["status"] == 200 and json.loads(models["body"] or "{}").get("object") == "list",
               f"GET /v1/models should list the model; got {models['status']} {models['body'][:200]!r}", hint="unknown_route")
    last = got["results"][-1]
    check.equal([last.get("finish"), (last.get("usage") or {}).get("total_tokens")],
                ["length", oracle(hf_completion, long_prompt, fill)["usage"]["total_tokens"]], hint="max_tokens_check",
                what="a request that fills the context exactly (finish_reason, total_tokens)")
