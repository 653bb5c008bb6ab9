"""Public tests for week1/chat.

Oracles: transformers' `apply_chat_template` on the given Jinja templates (the text, and with
`return_assistant_tokens_mask=True` the trained tokens), and `generate(do_sample=False,
stop_strings=...)` for greedy decoding with stop strings, on the course's tiny GPT-2s. The
templates and special tokens come from the kata's fixtures (made from the reference), never
from the module under test. Ids come from the course tokenizer plus the chat special tokens
(ids 512-517), built here twice: as a tiktoken `Encoding` (what your functions get) and as a
transformers tokenizer (what the oracles need); the two give the same ids.
"""

from __future__ import annotations

import functools
import json
from pathlib import Path

import pytest
import tiktoken
import torch

from graders import check, fixtures, oracle, student
from graders.testing import mistake_shown

chat = student("week1.chat")

CHECKPOINTS = Path(__file__).resolve().parents[2] / "checkpoints"
IM_END, EOT_ID = 513, 517  # as CHAT_SPECIAL_TOKENS (the fixtures) says


# --- the tokenizers, the models and the oracles -------------------------------------------


def given(name: str):
    """The kata's given templates and special tokens, from the fixtures."""
    return fixtures.load("week1/chat")[name]


@functools.cache
def course_encoding() -> tiktoken.Encoding:
    """The course tokenizer (checkpoints/tokenizer/) with the chat special tokens, as tiktoken."""
    data = json.loads((CHECKPOINTS / "tokenizer" / "tokenizer.json").read_text(encoding="utf-8"))
    ranks = {bytes([i]): i for i in range(256)}
    for a, b in data["merges"]:
        ranks[bytes.fromhex(a) + bytes.fromhex(b)] = len(ranks)
    return tiktoken.Encoding(name="llm-katas-chat", pat_str=data["pattern"], mergeable_ranks=ranks,
                             special_tokens={**data["special_tokens"], **given("special_tokens")})


def encode(text: str) -> list[int]:
    """Text -> ids, special tokens included (what tokenize_chat is given)."""
    return course_encoding().encode(text, allowed_special="all")


def encode_plain(text: str) -> list[int]:
    """Text -> ids of the base tokenizer, which has no chat tokens: "<|im_start|>" is plain text."""
    return course_encoding().encode(text, disallowed_special=())


def decode(ids: list[int]) -> str:
    return course_encoding().decode(ids)


@functools.cache
def hf_tokenizer():
    """The same tokenizer for transformers: the course's tokenizer.json plus the chat tokens."""
    from tokenizers import AddedToken, Tokenizer
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer.from_file(str(CHECKPOINTS / "tokenizer" / "hf" / "tokenizer.json"))
    specials = given("special_tokens")
    tok.add_special_tokens([AddedToken(s, special=True, normalized=False) for s in sorted(specials, key=specials.get)])
    return PreTrainedTokenizerFast(tokenizer_object=tok, bos_token="<|begin_of_text|>", eos_token="<|endoftext|>",
                                   clean_up_tokenization_spaces=False)


@functools.cache
def tiny_model(name: str):
    from transformers import GPT2LMHeadModel

    return GPT2LMHeadModel.from_pretrained(CHECKPOINTS / name).eval()


def base_model():
    """gpt2-tiny-trained: a story model, 512 ids (no chat tokens)."""
    return tiny_model("gpt2-tiny-trained")


def instruct_model():
    """gpt2-tiny-instruct: the same model tuned on ChatML conversations, 518 ids."""
    return tiny_model("gpt2-tiny-instruct")


def hf_render(messages, template, **options):
    """apply_chat_template's text (called only through oracle(...))."""
    return hf_tokenizer().apply_chat_template(messages, chat_template=given(f"{template}_template"), tokenize=False,
                                              **options)


def hf_tokenize(messages, template):
    """[input_ids, labels] from apply_chat_template's assistant mask (only through oracle(...))."""
    out = hf_tokenizer().apply_chat_template(messages, chat_template=given(f"{template}_template"), tokenize=True,
                                             return_dict=True, return_assistant_tokens_mask=True)
    ids = list(out["input_ids"])
    return [ids, [i if m else -100 for i, m in zip(ids, out["assistant_masks"])]]


def hf_generate(model, input_ids, max_new_tokens, stop=(), eos_token_id=None):
    """[new ids, text, finish reason] from transformers' greedy generate (only through oracle(...)).

    generate keeps the token that completed a stop string (and the eos); the text is the new
    tokens decoded, eos left out, cut before the earliest occurrence of any stop string."""
    options = {"stop_strings": list(stop), "tokenizer": hf_tokenizer()} if stop else {}
    with torch.no_grad():
        out = model.generate(input_ids, attention_mask=torch.ones_like(input_ids), max_new_tokens=max_new_tokens,
                             do_sample=False, eos_token_id=eos_token_id, pad_token_id=511, **options)
    new = out[0, input_ids.shape[1]:].tolist()
    ended_by_eos = eos_token_id is not None and new[-1] == eos_token_id
    text = hf_tokenizer().decode(new[:-1] if ended_by_eos else new)
    cuts = [text.find(s) for s in stop if s in text]
    stopped = ended_by_eos or bool(cuts)
    return [new, text[:min(cuts)] if cuts else text, "stop" if stopped else "length"]


def prompt_ids(text: str) -> torch.Tensor:
    return torch.tensor([encode(text)])


# --- what each mistake gives (helpers called only through oracle(...)) ---------------------


def chatml_text(messages, prompt, content=lambda c: c, after="\n", header="<|im_start|>assistant\n"):
    text = "".join(f"<|im_start|>{m['role']}\n{content(m['content'])}<|im_end|>{after}" for m in messages)
    return text + (header if prompt else "")


def chatml_mistake(out, messages, prompt):
    """The mistake `out` shows for render_chatml(messages, prompt), or None."""
    if isinstance(out, str) and out.startswith("<|im_start|>system") and messages[0]["role"] != "system":
        return "default_system"
    return mistake_shown(out, {
        "chatml_trimmed": [chatml_text(messages, prompt, content=str.strip)],
        "no_newline_after_im_end": [chatml_text(messages, prompt, after="")],
        "generation_prompt": [chatml_text(messages, not prompt)] + [
            chatml_text(messages, prompt, header=h) for h in ("<|im_start|>assistant", "<|im_start|>assistant\n\n")],
    })


def llama3_text(messages, prompt, bos="<|begin_of_text|>", content=str.strip, after="", each_bos=False,
                header="<|start_header_id|>assistant<|end_header_id|>\n\n"):
    text = "" if each_bos else bos
    for m in messages:
        text += (bos if each_bos else "") + f"<|start_header_id|>{m['role']}<|end_header_id|>\n\n"
        text += f"{content(m['content'])}<|eot_id|>{after}"
    return text + (header if prompt else "")


def llama3_mistake(out, messages, prompt, bos="<|begin_of_text|>"):
    """The mistake `out` shows for render_llama3(messages, prompt, bos), or None."""
    return mistake_shown(out, {
        "llama3_untrimmed": [llama3_text(messages, prompt, bos, content=lambda c: c)],
        "newline_after_eot": [llama3_text(messages, prompt, bos, after="\n")],
        "bos_per_message": [llama3_text(messages, prompt, bos, each_bos=True)],
        "bos_token_ignored": [llama3_text(messages, prompt, "<|begin_of_text|>"), llama3_text(messages, prompt, "")],
        "generation_prompt": [llama3_text(messages, not prompt, bos)] + [
            llama3_text(messages, prompt, bos, header=h) for h in (
                "<|start_header_id|>assistant<|end_header_id|>", "<|start_header_id|>assistant<|end_header_id|>\n")],
    })


ASSISTANT_HEADER = {"chatml": "<|im_start|>assistant\n", "llama3": "<|start_header_id|>assistant<|end_header_id|>\n\n"}


def label_mistake(labels, messages, template):
    """The mistake `labels` shows, from where they differ from apply_chat_template's mask, or None."""
    ids, want = hf_tokenize(messages, template)
    labels = list(labels) if isinstance(labels, (list, tuple)) else labels
    if not isinstance(labels, list) or len(labels) != len(want):
        return None
    if labels in (want[1:] + [-100], [-100] + want[:-1]):
        return "labels_shifted"
    header = encode(ASSISTANT_HEADER[template])
    in_header = {s + k for s in range(len(ids)) if ids[s:s + len(header)] == header for k in range(len(header))}
    kinds = set()
    for t, (got, expected) in enumerate(zip(labels, want)):
        if got == expected:
            continue
        if expected != -100 and got == -100 and ids[t] in (IM_END, EOT_ID):
            kinds.add("eot_not_trained")
        elif expected == -100 and got == ids[t] and t > 0 and ids[t - 1] == IM_END and template == "chatml":
            kinds.add("newline_trained")
        elif expected == -100 and got == ids[t] and t in in_header:
            kinds.add("header_trained")
        elif expected == -100 and got == ids[t]:
            kinds.add("non_assistant_trained")
        else:
            return None
    return kinds.pop() if len(kinds) == 1 else None


def text_mistake(text, want_ids, stop):
    """The mistake a generated `text` shows, from the full decoded text of the right new ids:
    not cut, cut after the stop string, or cut at a later stop string (only through oracle(...))."""
    full = decode(want_ids)
    cuts = sorted(full.find(s) for s in stop if s in full)
    if not cuts:
        return None
    kept = [full] + [full[:cuts[0]] + s for s in stop if full[cuts[0]:].startswith(s)]
    return mistake_shown(text, {"stop_string_kept": kept, "earliest_stop": [full[:c] for c in cuts[1:]]})


def eos_text_mistake(text, want_text):
    """"eos_in_text" when `text` is the right one plus the eos's text (only through oracle(...))."""
    return "eos_in_text" if text == want_text + "<|im_end|>" else None


def ids_mistake(new_ids, want_ids, eos_token_id=None):
    """The mistake generated ids show against the right ones (only through oracle(...))."""
    if not isinstance(new_ids, list) or new_ids == want_ids:
        return None
    if eos_token_id is not None and new_ids == want_ids[:-1]:
        return "eos_dropped"
    if eos_token_id is not None and len(new_ids) > len(want_ids) and new_ids[:len(want_ids)] == want_ids:
        return "eos_ignored"
    if eos_token_id is None and IM_END in new_ids and new_ids == want_ids[:len(new_ids)]:
        return "eos_default"
    return None


# --- render_chatml ----------------------------------------------------------------------------

CONVERSATIONS = {
    "system-and-two-exchanges": [
        {"role": "system", "content": "You are a helpful assistant. "},
        {"role": "user", "content": "  What is the opposite of hot? \n"},
        {"role": "assistant", "content": " Cold is the opposite of hot.  "},
        {"role": "user", "content": "And of big?"},
        {"role": "assistant", "content": "Small.\n"},
    ],
    "one-user-message": [{"role": "user", "content": "Hi!"}],
    "tabs-and-blank-lines": [
        {"role": "user", "content": "Tell me a story.\n\n"},
        {"role": "assistant", "content": "Once upon a time, there was a cat.\t"},
        {"role": "user", "content": "\tThanks! "},
    ],
}


@pytest.mark.points(2)
@pytest.mark.parametrize("prompt", [False, True], ids=["no-prompt", "generation-prompt"])
@pytest.mark.parametrize("name", list(CONVERSATIONS))
def test_render_chatml_matches_apply_chat_template(name, prompt):
    messages = CONVERSATIONS[name]
    out = chat.render_chatml(messages, add_generation_prompt=prompt)
    check.equal(out, oracle(hf_render, messages, "chatml", add_generation_prompt=prompt),
                what=f"render_chatml({name}, add_generation_prompt={prompt})",
                hint=oracle(chatml_mistake, out, messages, prompt))


@pytest.mark.points(1)
def test_render_chatml_default_adds_no_generation_prompt():
    messages = CONVERSATIONS["one-user-message"]
    out = chat.render_chatml(messages)
    check.equal(out, oracle(hf_render, messages, "chatml"), what="render_chatml(messages) (the default)",
                hint=oracle(chatml_mistake, out, messages, False))


# --- render_llama3 ----------------------------------------------------------------------------


@pytest.mark.points(2)
@pytest.mark.parametrize("prompt", [False, True], ids=["no-prompt", "generation-prompt"])
@pytest.mark.parametrize("name", list(CONVERSATIONS))
def test_render_llama3_matches_apply_chat_template(name, prompt):
    messages = CONVERSATIONS[name]
    out = chat.render_llama3(messages, add_generation_prompt=prompt)
    check.equal(out, oracle(hf_render, messages, "llama3", add_generation_prompt=prompt),
                what=f"render_llama3({name}, add_generation_prompt={prompt})",
                hint=oracle(llama3_mistake, out, messages, prompt))


@pytest.mark.points(1)
@pytest.mark.parametrize("bos", ["", "<|endoftext|>"], ids=["no-bos", "other-bos"])
def test_render_llama3_writes_the_given_bos_token(bos):
    messages = CONVERSATIONS["system-and-two-exchanges"]
    out = chat.render_llama3(messages, bos_token=bos)
    check.equal(out, oracle(hf_render, messages, "llama3", bos_token=bos), what=f"render_llama3(..., bos_token={bos!r})",
                hint=oracle(llama3_mistake, out, messages, False, bos))


# --- tokenize_chat ----------------------------------------------------------------------------


@pytest.mark.points(1)
def test_tokenize_chat_returns_two_lists_of_ints():
    ids, labels = chat.tokenize_chat(CONVERSATIONS["system-and-two-exchanges"], "chatml", encode)
    for name, value in (("input_ids", ids), ("labels", labels)):
        check.that(type(value) is list and all(type(t) is int for t in value),
                   f"{name} should be a plain list of Python ints, got {type(value).__name__}", about=value,
                   hint="not_lists")


@pytest.mark.points(1)
@pytest.mark.parametrize("template", ["ChatML", "llama-3", "mistral"])
def test_tokenize_chat_rejects_an_unknown_template(template):
    with check.raises(ValueError, hint="unknown_template"):
        chat.tokenize_chat(CONVERSATIONS["one-user-message"], template, encode)


@pytest.mark.points(2)
@pytest.mark.parametrize("template", ["chatml", "llama3"])
@pytest.mark.parametrize("name", list(CONVERSATIONS))
def test_tokenize_chat_ids_are_the_rendered_text_encoded(name, template):
    messages = CONVERSATIONS[name]
    ids, labels = chat.tokenize_chat(messages, template, encode)
    want = oracle(hf_tokenize, messages, template)
    check.equal(list(ids), want[0], what=f"input_ids ({template}, {name})")
    check.equal(len(labels), len(ids), what="len(labels) (one label per input id)", hint="labels_shifted")


@pytest.mark.points(3)
@pytest.mark.parametrize("template", ["chatml", "llama3"])
@pytest.mark.parametrize("name", ["system-and-two-exchanges", "tabs-and-blank-lines"])
def test_tokenize_chat_trains_exactly_the_assistant_tokens(name, template):
    """The labels are apply_chat_template's assistant mask: each assistant content and its
    end-of-turn token; not headers, not ChatML's newline after <|im_end|>, not other turns."""
    messages = CONVERSATIONS[name]
    ids, labels = chat.tokenize_chat(messages, template, encode)
    want = oracle(hf_tokenize, messages, template)
    check.equal(list(labels), want[1], what=f"labels ({template}, {name})",
                hint=oracle(label_mistake, labels, messages, template))


@pytest.mark.points(1)
def test_tokenize_chat_of_a_conversation_without_assistant_trains_nothing():
    ids, labels = chat.tokenize_chat(CONVERSATIONS["one-user-message"], "chatml", encode)
    check.that(len(labels) > 0 and set(labels) == {-100}, f"labels should all be -100, got {list(labels)}",
               hint="non_assistant_trained")


# --- generate_with_stop ------------------------------------------------------------------------
# The greedy continuation of "Once upon a time" by gpt2-tiny-trained is
#   ', there was a small horse named Ella. The bear said, "Yes! Let\'s draw ...'
# with " bear" as the two tokens " be" + "ar", and " said" one token (measured).

STORY = "Once upon a time"


@pytest.mark.points(2)
def test_generate_without_stops_is_greedy_decoding():
    ids = prompt_ids(STORY)
    want = oracle(hf_generate, base_model(), ids, 9)
    new_ids, text, reason = chat.generate_with_stop(base_model(), ids, 9, decode)
    check.equal(len(new_ids), 9, what="number of new tokens (max_new_tokens=9, nothing stops earlier)",
                hint="length_limit")
    check.equal(list(new_ids), want[0], what="new_ids (greedy: argmax of the last position's logits)")
    check.equal(text, want[1], what="text")
    check.equal(reason, "length", what="finish_reason", hint="finish_reason")


@pytest.mark.points(1)
def test_generate_returns_python_ints():
    new_ids, text, reason = chat.generate_with_stop(base_model(), prompt_ids(STORY), 4, decode)
    check.that(type(new_ids) is list and all(type(t) is int for t in new_ids),
               f"new_ids should be a plain list of Python ints, got {type(new_ids).__name__}", about=new_ids,
               hint="not_lists")
    check.that(type(text) is str and type(reason) is str, "text and finish_reason should be str",
               about=text, hint="not_lists")


@pytest.mark.points(2)
@pytest.mark.parametrize("stop", [["ear"], ["sai"]], ids=["ear-spans-two-tokens", "sai-inside-one-token"])
def test_stop_string_found_in_the_decoded_text(stop):
    ids = prompt_ids(STORY)
    want = oracle(hf_generate, base_model(), ids, 40, stop)
    new_ids, text, reason = chat.generate_with_stop(base_model(), ids, 40, decode, stop)
    check.equal(list(new_ids), want[0], what=f"new_ids with stop={stop} (up to the token that completes it)",
                hint="stop_per_token")
    check.equal(text, want[1], what="text (cut before the stop string)", hint=oracle(text_mistake, text, want[0], stop))
    check.equal(reason, "stop", what="finish_reason", hint="finish_reason")


@pytest.mark.points(2)
def test_a_stop_string_in_the_prompt_stops_nothing():
    ids = prompt_ids(STORY)
    stop = ["time", "upon"]  # both in the prompt, neither in the first 12 generated tokens
    want = oracle(hf_generate, base_model(), ids, 12, stop)
    new_ids, text, reason = chat.generate_with_stop(base_model(), ids, 12, decode, stop)
    check.equal(list(new_ids), want[0], what="new_ids (only the generated text is searched)", hint="prompt_searched")
    check.equal(text, want[1], what="text", hint=oracle(text_mistake, text, want[0], stop))
    check.equal(reason, "length", what="finish_reason", hint="prompt_searched")


@pytest.mark.points(1)
def test_text_is_cut_at_the_earliest_stop_string():
    # " be" completes both "b" and "The b"; "The b" starts earlier in the text
    ids = prompt_ids(STORY)
    stop = ["b", "The b"]
    want = oracle(hf_generate, base_model(), ids, 40, stop)
    new_ids, text, reason = chat.generate_with_stop(base_model(), ids, 40, decode, stop)
    check.equal(list(new_ids), want[0], what=f"new_ids with stop={stop}", hint="stop_per_token")
    check.equal(text, want[1], what="text (cut before the earliest stop string)",
                hint=oracle(text_mistake, text, want[0], stop))


@pytest.mark.points(1)
def test_a_stop_string_on_the_last_allowed_token_is_a_stop():
    # the 17th new token ("ar" of " bear") completes "ear" (measured): max_new_tokens=17 ends there too
    ids = prompt_ids(STORY)
    want = oracle(hf_generate, base_model(), ids, 17, ["ear"])
    new_ids, text, reason = chat.generate_with_stop(base_model(), ids, 17, decode, ["ear"])
    check.equal(list(new_ids), want[0], what="new_ids", hint="length_limit")
    check.equal(reason, "stop", what="finish_reason (a stop string ended it, on the last allowed token)",
                hint="finish_reason")
    check.equal(text, want[1], what="text", hint=oracle(text_mistake, text, want[0], ["ear"]))


@pytest.mark.points(1)
def test_an_absent_stop_string_runs_to_the_length():
    ids = prompt_ids(STORY)
    want = oracle(hf_generate, base_model(), ids, 20, ["zebra"])
    new_ids, text, reason = chat.generate_with_stop(base_model(), ids, 20, decode, ["zebra"])
    check.equal(list(new_ids), want[0], what="new_ids", hint="length_limit")
    check.equal(text, want[1], what="text (all of it)")
    check.equal(reason, "length", what="finish_reason", hint="finish_reason")


def chatml_prompt(question: str) -> torch.Tensor:
    """The ids of a one-question ChatML prompt, written out here: what the instruct model was tuned on."""
    return prompt_ids(f"<|im_start|>user\n{question}<|im_end|>\n<|im_start|>assistant\n")


@pytest.mark.points(2)
def test_eos_is_kept_in_the_ids_but_not_in_the_text():
    ids = chatml_prompt("What does a duck say?")
    want = oracle(hf_generate, instruct_model(), ids, 40, (), IM_END)
    new_ids, text, reason = chat.generate_with_stop(instruct_model(), ids, 40, decode, eos_token_id=IM_END)
    check.equal(list(new_ids), want[0], what="new_ids (ending with the eos, 513)",
                hint=oracle(ids_mistake, new_ids, want[0], IM_END))
    check.equal(text, want[1], what="text (the eos is not text)",
                hint=oracle(eos_text_mistake, text, want[1]))
    check.equal(reason, "stop", what="finish_reason (eos)", hint="finish_reason")


@pytest.mark.points(1)
def test_no_eos_token_id_means_no_eos():
    """eos_token_id=None (the default): the instruct model's <|im_end|> is just another token."""
    ids = chatml_prompt("What does a duck say?")
    want = oracle(hf_generate, instruct_model(), ids, 24)
    new_ids, text, reason = chat.generate_with_stop(instruct_model(), ids, 24, decode)
    check.equal(list(new_ids), want[0], what="new_ids (past <|im_end|>: there is no eos)",
                hint=oracle(ids_mistake, new_ids, want[0]))
    check.equal(reason, "length", what="finish_reason", hint="eos_default")


QUESTIONS = ["What is the opposite of big?", "What does a duck say?", "Tell me a story about a fox named Mia."]


@pytest.mark.points(3)
@pytest.mark.parametrize("question", QUESTIONS)
def test_instruct_model_ends_its_turn_where_the_base_model_rambles(question):
    """The instruct model, given the ChatML prompt, answers and ends its turn with <|im_end|>;
    the base model, given the same text (to it "<|im_start|>" is plain text), never writes
    "<|im_end|>" in 40 tokens.

    Bar: the instruct model's answers to these questions take 13 to 33 tokens with the eos
    (measured with the reference; 12 to 33 over the four questions of make_instruct.py's
    demo), so 40 leaves 7 or more to spare; the base model wrote no "<|im_end|>" in 40
    tokens on any of them."""
    ids = chatml_prompt(question)
    want = oracle(hf_generate, instruct_model(), ids, 40, (), IM_END)
    new_ids, answer, reason = chat.generate_with_stop(instruct_model(), ids, 40, decode, eos_token_id=IM_END)
    check.equal(reason, "stop", what="the instruct model's finish_reason (it ends its turn)", hint="eos_ignored")
    check.equal(list(new_ids), want[0], what="the instruct model's new_ids (its answer, then <|im_end|>)")
    check.equal(answer, want[1], what="the instruct model's answer")
    plain = torch.tensor([encode_plain(decode(ids[0].tolist()))])
    base_ids, base_text, base_reason = chat.generate_with_stop(base_model(), plain, 40, decode, ["<|im_end|>"])
    check.equal(base_reason, "length", what="the base model's finish_reason (it does not end a turn)")
    check.that("<|im_end|>" not in base_text, f"the base model's text should hold no <|im_end|>: {base_text!r}")
