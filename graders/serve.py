"""`kata serve`: your week-5 engine behind OpenAI's API, to chat with from any OpenAI client.

    kata serve                              # your katas/ with the chat-tuned tiny GPT-2, port 8000
    kata serve --impl reference             # the model solution
    kata serve --port 9000 --model checkpoints/gpt2-tiny-trained

It imports the chosen implementation's `week5/serving` in this process (your own code on
your own machine: no sandbox), builds `PagedGPT2` + `Scheduler` + `serve` on 127.0.0.1,
prints the base URL and a three-line `openai` example, and serves until Ctrl-C, when it
closes the server and says goodbye (exit code 0). A kata that is not written yet, or that
fails while starting, is one line and exit code 1, never a traceback.

The default model, `checkpoints/gpt2-tiny-instruct`, answers ChatML conversations and ends
its turn with `<|im_end|>`: that id (the model's eos) is given to `serve` as its stop token,
and the chat endpoint's `render_chatml` text is encoded with the model's own tokenizer
(`tokenizer.json`), which knows the chat special tokens. A base model
(`checkpoints/gpt2-tiny-trained`) works too; it rambles in story style until `max_tokens`.
"""

from __future__ import annotations

import math
import sys
import threading
import time
from pathlib import Path
from typing import Callable

from . import impl

DEFAULT_MODEL = impl.PROJECT_ROOT / "checkpoints" / "gpt2-tiny-instruct"
BLOCK_SIZE = 16
GOODBYE = "Stopped serving. Bye!"


class StartError(Exception):
    """The implementation could not be started: the message is the one line to print."""


def add_parser(subparsers) -> None:
    """Register `kata serve` on `kata`'s argparse subparsers."""
    p = subparsers.add_parser("serve", help="serve your week5/serving engine with OpenAI's API (chat with it)")
    p.add_argument("--impl", default=None, help="katas (default), reference, or a submission directory")
    p.add_argument("--port", type=int, default=8000, help="port on 127.0.0.1 (default 8000; 0: any free port)")
    p.add_argument("--model", default=str(DEFAULT_MODEL),
                   help="a GPT-2 checkpoint directory with tokenizer.json (default: checkpoints/gpt2-tiny-instruct)")
    p.add_argument("--max-batch-size", type=int, default=8, help="the scheduler's max_batch_size (default 8)")
    p.set_defaults(func=run)


def run(args, console) -> int:
    return serve_command(args.impl, args.model, args.port, max_batch_size=args.max_batch_size, console=console)


def _call(name: str, fn: Callable, *args, **kwargs):
    """A call into the student's module; any failure becomes one line."""
    try:
        return fn(*args, **kwargs)
    except NotImplementedError:
        raise StartError(f"week5/serving is not started: {name} raises NotImplementedError; run "
                         f"`kata check week5/serving` to work on it (or `kata serve --impl reference` to try the "
                         f"model solution)") from None
    except Exception as exc:  # noqa: BLE001 - the student's code failed: one line, no traceback
        raise StartError(f"week5/serving failed to start: {name} raised {type(exc).__name__}: {exc}") from None


def start(impl_label: str | None, model_dir: str | Path = DEFAULT_MODEL, port: int = 8000, max_batch_size: int = 8):
    """The chosen implementation's server, started on 127.0.0.1:port; raises StartError."""
    implementation = impl.resolve(impl_label)
    try:
        module = implementation.import_module("week5.serving")
    except impl.ImplementationError as exc:
        raise StartError(f"week5/serving cannot be imported from {implementation.root}: {exc}") from None
    model_dir = Path(model_dir)
    if not (model_dir / "tokenizer.json").is_file():
        raise StartError(f"{model_dir} is not a checkpoint directory with a tokenizer.json")

    import torch
    from tokenizers import Tokenizer
    from transformers import GPT2LMHeadModel
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()
    try:
        model = GPT2LMHeadModel.from_pretrained(model_dir).eval()
    except Exception as exc:  # noqa: BLE001 - not a GPT-2 checkpoint: one line
        raise StartError(f"cannot load a GPT-2 model from {model_dir}: {exc}") from None
    tokenizer = Tokenizer.from_file(str(model_dir / "tokenizer.json"))

    def encode(text: str) -> list[int]:
        return tokenizer.encode(text, add_special_tokens=False).ids

    def decode(ids: list[int]) -> str:
        return tokenizer.decode(list(ids), skip_special_tokens=True)

    eos = model.generation_config.eos_token_id if model.generation_config is not None else None
    eos = model.config.eos_token_id if eos is None else eos
    stop_ids = tuple(eos) if isinstance(eos, (list, tuple)) else (() if eos is None else (int(eos),))
    positions = model.config.n_positions
    num_blocks = max_batch_size * math.ceil(positions / BLOCK_SIZE)
    with torch.no_grad():
        runner = _call("PagedGPT2", module.PagedGPT2, model, num_blocks, BLOCK_SIZE)
        scheduler = _call("Scheduler", module.Scheduler, runner, max_batch_size)
        return _call("serve", module.serve, scheduler, encode, decode, "127.0.0.1", port, model_name=model_dir.name,
                     max_context=positions, stop_token_ids=stop_ids)


def example(base_url: str, model_name: str) -> list[str]:
    """The three lines of Python that chat with the server."""
    return [
        "from openai import OpenAI",
        f'client = OpenAI(base_url="{base_url}", api_key="unused")',
        f'print(client.chat.completions.create(model="{model_name}", messages=[{{"role": "user", '
        f'"content": "What does a duck say?"}}], temperature=0).choices[0].message.content)',
    ]


def serve_command(impl_label: str | None, model_dir: str | Path = DEFAULT_MODEL, port: int = 8000, *,
                  max_batch_size: int = 8, console=None, stop: threading.Event | None = None,
                  ready: Callable[[object], None] | None = None) -> int:
    """Start, print how to connect, serve until Ctrl-C (or `stop` is set), close. The exit code."""
    def say(line: str, **style) -> None:
        if console is None:
            print(line)
        else:
            console.print(line, markup=False, highlight=False, soft_wrap=True, **style)

    try:
        server = start(impl_label, model_dir, port, max_batch_size)
    except StartError as exc:
        if console is None:
            print(f"kata serve: {exc}", file=sys.stderr)
        else:
            say(f"kata serve: {exc}", style="red")
        return 1
    try:
        base_url = str(server.base_url)
        name = Path(model_dir).name
        say(f"Serving week5/serving ({impl.resolve(impl_label).label}) with {name} at {base_url}")
        say("Chat with it from Python (pip's openai package), or point any OpenAI client at that URL:")
        for line in example(base_url, name):
            say("    " + line)
        say("Ctrl-C stops the server.")
        if ready is not None:
            ready(server)
        waiter = stop or threading.Event()
        try:
            while not waiter.is_set():
                time.sleep(0.2)  # not waiter.wait(): Ctrl-C inside a lock's release leaves the lock broken
        except KeyboardInterrupt:
            pass
    finally:
        try:
            server.close()
        except Exception as exc:  # noqa: BLE001 - the student's close failed: say so, still exit
            say(f"kata serve: closing the server raised {type(exc).__name__}: {exc}", style="red")
            return 1
    say(GOODBYE)
    return 0
