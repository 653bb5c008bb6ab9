"""`kata serve` (graders/serve.py): the reference's server with the chat-tuned tiny model answers
the real openai client and shuts down cleanly; a stub that is not started is one line, exit 1."""

from __future__ import annotations

import io
import socket
import threading

from rich.console import Console

from graders import cli, serve


def _console() -> tuple[Console, io.StringIO]:
    out = io.StringIO()
    return Console(file=out, width=400, color_system=None), out


def test_kata_serve_chats_with_the_reference_and_closes_cleanly():
    import openai

    console, out = _console()
    stop, box = threading.Event(), {}
    ready = threading.Event()

    def on_ready(server):
        box["url"] = server.base_url
        ready.set()

    thread = threading.Thread(target=lambda: box.setdefault("rc", serve.serve_command(
        "reference", port=0, console=console, stop=stop, ready=on_ready)))
    thread.start()
    try:
        ready.wait(timeout=120)
        assert "url" in box, out.getvalue()
        client = openai.OpenAI(base_url=box["url"], api_key="unused", max_retries=0, timeout=30)
        reply = client.chat.completions.create(model="gpt2-tiny-instruct", temperature=0, max_tokens=30,
                                               messages=[{"role": "user", "content": "What does a duck say?"}])
        client.close()
    finally:
        stop.set()
        thread.join(timeout=30)
    assert not thread.is_alive()
    text = reply.choices[0].message.content
    assert text.strip() and "<|im_end|>" not in text
    assert reply.choices[0].finish_reason == "stop"  # the instruct model ended its turn (<|im_end|>, its eos)
    assert box["rc"] == 0
    printed = out.getvalue()
    assert box["url"] in printed and "from openai import OpenAI" in printed and printed.rstrip().endswith(serve.GOODBYE)
    port = int(box["url"].rsplit(":", 1)[1].split("/")[0])
    with socket.socket() as s:  # the port is released: nothing listens there any more
        assert s.connect_ex(("127.0.0.1", port)) != 0
    assert not [t for t in threading.enumerate() if t.name.startswith("serving-")]


def test_kata_serve_on_the_stubs_is_one_line():
    console, out = _console()
    assert serve.serve_command("katas", port=0, console=console) == 1
    lines = out.getvalue().strip().splitlines()
    assert len(lines) == 1, lines
    assert "week5/serving is not started: PagedGPT2 raises NotImplementedError" in lines[0]
    assert "kata check week5" in lines[0] and "Traceback" not in out.getvalue()


def test_kata_serve_without_the_module_is_one_line(tmp_path):
    console, out = _console()
    assert serve.serve_command(str(tmp_path), port=0, console=console) == 1
    lines = out.getvalue().strip().splitlines()
    assert len(lines) == 1 and "week5/serving" in lines[0] and "MISSING MODULE" in lines[0], lines


def test_kata_serve_is_a_kata_command():
    args = cli.build_parser().parse_args(["serve", "--impl", "reference", "--port", "0"])
    assert args.func is serve.run and args.impl == "reference" and args.port == 0
    args = cli.build_parser().parse_args(["serve"])
    assert args.port == 8000 and args.model == str(serve.DEFAULT_MODEL) and args.impl is None
