"""Public tests for week6/structured.

Oracles: a regular expression of each schema's canonical documents, built here from the
schema and matched with the `regex` module's partial matching (a text is a valid prefix iff
it partially matches); pydantic's `Model.model_validate_json`, `json.loads` + `jsonschema`
and a canonical re-dump on everything the course's tiny story model generates under your
processor (transformers' `generate`); hypothesis-made documents of a schema and mutations
of them; `json.JSONDecoder.raw_decode` for the end of a JSON object; pydantic's own
`ValidationError` text; `scipy.stats.binomtest`; `scipy.special.expit`; sklearn's
unregularised `LogisticRegression` on duplicated rows with sample weights for the
length-controlled win rate. The judges are scripted fakes that keep every prompt.

`token_strings` (token t decoded alone; "" for special tokens and bytes that are not UTF-8
alone) is built here from the checkpoint's tokenizer; your processor is given it.
"""

from __future__ import annotations

import functools
import json
import random
from pathlib import Path
from typing import Annotated, Literal

import jsonschema
import numpy as np
import pytest
import regex
import torch
from hypothesis import given, settings, strategies as st
from pydantic import BaseModel, Field, ValidationError

from graders import check, in_one_crossing, oracle, student, unwrap
from graders.testing import hinted, randn

structured = student("week6.structured")

CHECKPOINT = Path(__file__).resolve().parents[2] / "checkpoints" / "gpt2-tiny-trained"
EOS = 511


# --- schemas ------------------------------------------------------------------------------------


class Pet(BaseModel):
    kind: Literal["cat", "dog", "owl"]
    name: str = Field(max_length=8)


class Story(BaseModel):
    hero: Pet
    age: int = Field(ge=-5, le=120)
    happy: bool
    tags: list[Annotated[str, Field(max_length=4)]] = Field(max_length=2)


class Verdict(BaseModel):
    """The rubric score's shape (RubricScore is given in your file; the tests use their own copy)."""

    criterion: Literal["helpfulness", "correctness", "clarity"]
    score: int = Field(ge=1, le=5)
    justification: str = Field(max_length=200)


STORY = Story.model_json_schema()
AGE = {"type": "integer", "minimum": 0, "maximum": 120}
SIGNED = {"type": "integer", "minimum": -5, "maximum": 120}
ABOVE_FIVE = {"type": "integer", "minimum": 5, "maximum": 120}
PAIR = {"type": "object", "properties": {"a": {"type": "integer", "minimum": 0, "maximum": 9},
                                         "b": {"type": "array", "items": {"type": "boolean"}, "minItems": 1,
                                               "maxItems": 2}},
        "required": ["a", "b"]}
STORY_DOC = '{"hero":{"kind":"cat","name":"Lily"},"age":3,"happy":true,"tags":["a","bb"]}'


# --- the oracle: a regular expression of the canonical documents --------------------------------

STRING_CHAR = r'[ !#-\[\]-~]'  # 0x20-0x7E except " and \


def pattern(schema: dict, defs: dict | None = None) -> str:
    """A regular expression that matches exactly the canonical documents of `schema`."""
    defs = schema.get("$defs", defs or {})
    if "$ref" in schema:
        return pattern(defs[schema["$ref"].rsplit("/", 1)[1]], defs)
    kind = schema["type"]
    if kind == "object":
        members = [regex.escape(json.dumps(k)) + ":" + pattern(v, defs) for k, v in schema["properties"].items()]
        return r"\{" + ",".join(members) + r"\}"
    if kind == "string" and "enum" in schema:
        return "(?:" + "|".join(regex.escape(json.dumps(v)) for v in schema["enum"]) + ")"
    if kind == "string":
        return '"' + STRING_CHAR + "{0,%d}" % schema["maxLength"] + '"'
    if kind == "integer":
        return "(?:" + "|".join(str(v) for v in range(schema["minimum"], schema["maximum"] + 1)) + ")"
    if kind == "boolean":
        return "(?:true|false)"
    item, lo, hi = pattern(schema["items"], defs), schema.get("minItems", 0), schema["maxItems"]
    if hi == 0:
        return r"\[\]"
    items = "(?:" + item + "(?:," + item + "){%d,%d})" % (max(lo - 1, 0), hi - 1)
    return r"\[" + items + ("?" if lo == 0 else "") + r"\]"


_COMPILED = {}


def _compiled(schema: dict):
    key = json.dumps(schema)
    if key not in _COMPILED:
        _COMPILED[key] = regex.compile(pattern(schema))
    return _COMPILED[key]


def valid_prefix(schema: dict, text: str) -> bool:
    """Some canonical document of `schema` starts with `text` (partial matching)."""
    return _compiled(schema).fullmatch(text, partial=True) is not None


def complete(schema: dict, text: str) -> bool:
    return _compiled(schema).fullmatch(text) is not None


def can_extend(schema: dict, text: str) -> bool:
    return any(valid_prefix(schema, text + chr(c)) for c in range(0x20, 0x7F))


def canonical(obj, schema: dict, defs: dict | None = None) -> str:
    """json.dumps with no whitespace and the keys in schema order."""
    defs = schema.get("$defs", defs or {})
    if "$ref" in schema:
        return canonical(obj, defs[schema["$ref"].rsplit("/", 1)[1]], defs)
    if schema.get("type") == "object":
        return "{" + ",".join(json.dumps(k) + ":" + canonical(obj[k], v, defs) for k, v in schema["properties"].items()) + "}"
    if schema.get("type") == "array":
        return "[" + ",".join(canonical(x, schema["items"], defs) for x in obj) + "]"
    return json.dumps(obj, separators=(",", ":"))


def instances(schema: dict, defs: dict | None = None):
    """A hypothesis strategy of valid instances of `schema` (Python values)."""
    defs = schema.get("$defs", defs or {})
    if "$ref" in schema:
        return instances(defs[schema["$ref"].rsplit("/", 1)[1]], defs)
    kind = schema["type"]
    if kind == "object":
        return st.fixed_dictionaries({k: instances(v, defs) for k, v in schema["properties"].items()})
    if kind == "string" and "enum" in schema:
        return st.sampled_from(schema["enum"])
    if kind == "string":
        alphabet = [chr(c) for c in range(0x20, 0x7F) if chr(c) not in '"\\']
        return st.text(alphabet=alphabet, max_size=schema["maxLength"])
    if kind == "integer":
        return st.integers(schema["minimum"], schema["maximum"])
    if kind == "boolean":
        return st.booleans()
    return st.lists(instances(schema["items"], defs), min_size=schema.get("minItems", 0), max_size=schema["maxItems"])


def documents(schema: dict):
    return instances(schema).map(lambda obj: canonical(obj, schema))


# --- the model, its tokens ----------------------------------------------------------------------


@functools.cache
def tokenizer():
    """The checkpoint's byte-level BPE (the `tokenizers` library: no transformers needed)."""
    from tokenizers import Tokenizer

    return Tokenizer.from_file(str(CHECKPOINT / "tokenizer.json"))


def encode(text: str) -> list[int]:
    return tokenizer().encode(text).ids


@functools.cache
def model():
    from transformers import GPT2LMHeadModel

    return GPT2LMHeadModel.from_pretrained(CHECKPOINT).eval()


@functools.cache
def _token_strings() -> tuple[str, ...]:
    tok = tokenizer()
    special = {i for i, t in tok.get_added_tokens_decoder().items() if t.special}
    out = []
    for t in range(tok.get_vocab_size()):
        text = tok.decode([t], skip_special_tokens=False)
        out.append("" if t in special or "\ufffd" in text else text)
    return tuple(out)


def token_strings() -> list[str]:
    """Token t decoded alone; "" for special ids and ids whose bytes are not UTF-8 alone."""
    return list(_token_strings())


def ids_of(pieces: list[str]) -> list[int]:
    """The ids of the given token strings (each one token of the vocabulary)."""
    strings = _token_strings()
    return [strings.index(p) for p in pieces]


def token_mask(schema: dict, text: str, first_char_only: bool = False, eos_when_complete: bool = True) -> torch.Tensor:
    """Which tokens may follow `text` ([V] bool): the contract, or a mistake's variant."""
    strings = _token_strings()
    done = complete(schema, text)
    if done and not can_extend(schema, text):
        allowed = [False] * len(strings)
    else:
        allowed = [bool(s) and valid_prefix(schema, text + (s[0] if first_char_only else s)) for s in strings]
    allowed[EOS] = done and eos_when_complete
    return torch.tensor(allowed)


def masked(scores: torch.Tensor, allowed: torch.Tensor) -> torch.Tensor:
    return scores.masked_fill(~allowed, float("-inf"))


def batch_masks(schema, texts, **variant):
    return torch.stack([token_mask(schema, t, **variant) for t in texts])


def mask_mistake(got: torch.Tensor, schema, texts) -> str | None:
    """The mistake a [B, V] kept-token mask shows, or None."""
    if torch.equal(got, batch_masks(schema, texts[:1] * len(texts))):
        return "row_zero_mask"
    if torch.equal(got, batch_masks(schema, texts, first_char_only=True)):
        return "first_char_only"
    return None


def expected_scores(schema, texts, scores):
    """The processor's output: scores of tokens that may follow each row's text, -inf elsewhere."""
    return masked(scores, batch_masks(schema, texts))


# --- JsonPrefixMatcher ---------------------------------------------------------------------------


INTEGER_CASES = [  # (text, schema, mistake shown when a matcher gets it wrong)
    ("1", AGE, "integer_range_prefix"), ("12", AGE, "integer_range_prefix"), ("120", AGE, "integer_range_prefix"),
    ("13", AGE, "integer_range_prefix"), ("121", AGE, "integer_range_prefix"), ("1200", AGE, "integer_range_prefix"),
    ("-", AGE, "integer_minus_sign"), ("0", AGE, "integer_leading_zero"), ("01", AGE, "integer_leading_zero"),
    ("00", AGE, "integer_leading_zero"), ("-", SIGNED, "integer_minus_sign"), ("-6", SIGNED, "integer_range_prefix"),
    ("-0", SIGNED, "integer_leading_zero"), ("-5", SIGNED, "integer_range_prefix"), ("-1", SIGNED, "integer_minus_sign"),
    ("-10", SIGNED, "integer_range_prefix"), ("--", SIGNED, "integer_minus_sign"),
    ("0", ABOVE_FIVE, "integer_leading_zero"), ("4", ABOVE_FIVE, "integer_range_prefix"),
    ("1", ABOVE_FIVE, "integer_range_prefix"),
]


@pytest.mark.points(3)
@pytest.mark.parametrize("text,schema,mistake", INTEGER_CASES)
def test_integer_prefixes_the_worked_example(text, schema, mistake):
    """An integer prefix is valid iff some digit extension lies in [minimum, maximum]; "0"
    and "-0..." never extend; "-" needs a negative minimum. At the top level and as a member."""
    m = structured.JsonPrefixMatcher(schema)
    check.equal(m.is_valid_prefix(text), valid_prefix(schema, text), what=f"is_valid_prefix({text!r}) in {schema}",
                hint=mistake)
    check.equal(m.is_complete_document(text), complete(schema, text),
                what=f"is_complete_document({text!r}) in {schema}", hint=mistake)
    member = {"type": "object", "properties": {"n": schema}, "required": ["n"]}
    inner = structured.JsonPrefixMatcher(member)
    for doc in ('{"n":' + text, '{"n":' + text + "}"):
        check.equal(inner.is_valid_prefix(doc), valid_prefix(member, doc), what=f"is_valid_prefix({doc!r})",
                    hint=mistake)


@pytest.mark.points(2)
@pytest.mark.parametrize("text", ["0", "12", "120", "-", "", "9"])
def test_states_complete_and_extend(text):
    """start / advance / is_complete / can_extend, read one character at a time: "12" in
    [0, 120] is complete and can extend, "0" and "120" are complete and cannot."""
    m = structured.JsonPrefixMatcher(AGE)
    state = m.start()
    for ch in text:
        state = m.advance(state, ch)
    if valid_prefix(AGE, text):
        check.equal(m.is_complete(state), complete(AGE, text), what=f"is_complete after {text!r}",
                    hint="integer_range_prefix")
        check.equal(m.can_extend(state), can_extend(AGE, text), what=f"can_extend after {text!r}",
                    hint="integer_leading_zero" if text == "0" else "integer_range_prefix")
    else:
        check.that(state is None, f"advance should return None after {text!r} in [0, 120]", hint="integer_minus_sign")


@pytest.mark.points(1)
def test_advance_leaves_its_state_unchanged():
    """States are immutable: the processor tries one state with every token."""
    m = structured.JsonPrefixMatcher(PAIR)
    s = m.start()
    wrong = m.advance(s, "x")
    first = m.advance(s, "{")
    again = m.advance(s, "{")
    quote = m.advance(again, '"')
    check.that(wrong is None, "advance(start, 'x') should be None: no document starts with x")
    closed = m.advance(first, "}")
    check.that(first is not None and again is not None and quote is not None,
               "advance(start, '{') twice, then '\"', should work: advance must not change the state it is given")
    check.that(closed is None, "'{}' is no document of an object with required keys")


@pytest.mark.points(3)
def test_the_story_worked_example():
    m = structured.JsonPrefixMatcher(STORY)
    prefixes = [m.is_valid_prefix(STORY_DOC[:k]) for k in range(len(STORY_DOC) + 1)]
    check.equal(prefixes, [valid_prefix(STORY, STORY_DOC[:k]) for k in range(len(STORY_DOC) + 1)],
                what="is_valid_prefix of every prefix of the worked example")
    check.equal(m.is_complete_document(STORY_DOC), complete(STORY, STORY_DOC), what="is_complete_document(the example)")
    check.equal(m.is_complete_document(STORY_DOC[:-1]), complete(STORY, STORY_DOC[:-1]),
                what="is_complete_document(the example without its last '}')")
    for text, mistake in [('{"hero": ', "whitespace_allowed"), ('{ "hero"', "whitespace_allowed"),
                          ('{"hero":{"kind":"cat",\n', "whitespace_allowed"), ('{"age"', "key_order"),
                          ('{"hero":{"name"', "key_order"), ('{"hero":{"kind":"cat","name":"Lily the"', "max_length_off_by_one"),
                          ('{"hero":{"kind":"cat","name":"Lily the c', "max_length_off_by_one"),
                          ('{"hero":{"kind":"cow"', "enum_ignored"), ('{"hero":{"kind":"Cat', "enum_ignored"),
                          ('{"hero":{"kind":"cat","name":"Lily the"}', "max_length_off_by_one")]:
        check.equal(m.is_valid_prefix(text), valid_prefix(STORY, text), what=f"is_valid_prefix({text!r})", hint=mistake)


@pytest.mark.points(2)
@pytest.mark.parametrize("text,mistake", [
    ('{"hero":{"kind":"dog","name":"a\\', "string_characters"),
    ('{"hero":{"kind":"dog","name":"a\\"', "string_characters"),
    ('{"hero":{"kind":"dog","name":"a\n', "string_characters"),
    ('{"hero":{"kind":"dog","name":"\t', "string_characters"),
    ('{"hero":{"kind":"dog","name":"~ !#[]{}:,"', "string_characters"),
    ('{"hero":{"kind":"dog","name":""},"age":0,"happy":t', "enum_ignored"),
    ('{"hero":{"kind":"dog","name":""},"age":0,"happy":True', "enum_ignored"),
    ('{"hero":{"kind":"dog","name":""},"age":0,"happy":"true"', "enum_ignored"),
    ('{"hero":{"kind":"dog","name":""},"age":0,"happy":false,"tags":[]}', "array_bounds"),
    ('{"hero":{"kind":"dog","name":""},"age":0,"happy":false,"tags":["","",""', "array_bounds"),
    ('{"hero":{"kind":"dog","name":""},"age":0,"happy":false,"tags":["",""]}', "array_bounds"),
    ('{"hero":{"kind":"dog","name":""},"age":0,"happy":false,"tags":["12345"', "max_length_off_by_one"),
    ('{"hero":{"kind":"dog","name":""},"age":0,"happy":false,"tags":["1234"]}', "max_length_off_by_one"),
    ('{"hero":{"kind":"dog","name":""},"age":0,"happy":false,"tags":[,', "array_bounds"),
    ('{"hero":{"kind":"dog","name":""},"age":0,"happy":false,"tags":["",]', "array_bounds"),
])
def test_strings_enums_booleans_arrays(text, mistake):
    m = structured.JsonPrefixMatcher(STORY)
    check.equal(m.is_valid_prefix(text), valid_prefix(STORY, text), what=f"is_valid_prefix({text!r})", hint=mistake)
    check.equal(m.is_complete_document(text), complete(STORY, text), what=f"is_complete_document({text!r})",
                hint=mistake)


@pytest.mark.points(1)
@pytest.mark.parametrize("text", ['{"a":3,"b":[]}', '{"a":3,"b":[true]}', '{"a":3,"b":[true,false]}',
                                  '{"a":3,"b":[true,false,', '{"a":3,"b":[false,true]'])
def test_min_items(text):
    m = structured.JsonPrefixMatcher(PAIR)
    check.equal(m.is_valid_prefix(text), valid_prefix(PAIR, text), what=f"is_valid_prefix({text!r})", hint="array_bounds")
    check.equal(m.is_complete_document(text), complete(PAIR, text), what=f"is_complete_document({text!r})",
                hint="array_bounds")


class WithDefault(BaseModel):
    a: int = Field(default=3, ge=0, le=9)


class WithOptional(BaseModel):
    a: int | None = Field(ge=0, le=9)


class WithFloat(BaseModel):
    a: float


class WithPattern(BaseModel):
    a: str = Field(max_length=4, pattern="^a+$")


class WithConst(BaseModel):
    a: Literal["only"]


OUTSIDE = [
    WithDefault.model_json_schema(), WithOptional.model_json_schema(), WithFloat.model_json_schema(),
    WithPattern.model_json_schema(), WithConst.model_json_schema(),
    {"type": "string"}, {"type": "integer", "minimum": 0}, {"type": "integer", "maximum": 3},
    {"type": "array", "items": {"type": "boolean"}}, {"type": "null"}, {"type": "number", "minimum": 0, "maximum": 1},
    {"type": "object", "properties": {"a": {"type": "boolean"}}, "required": [], "title": "NotRequired"},
    {"type": "string", "maxLength": 3, "minLength": 1},
]


@pytest.mark.points(2)
@pytest.mark.parametrize("schema", OUTSIDE, ids=lambda s: s.get("title", s.get("type", "?")))
def test_schemas_outside_the_subset_raise(schema):
    with check.raises(ValueError, hint="schema_subset"):
        structured.JsonPrefixMatcher(schema)


def _verdicts(schema, texts):
    """Glue: is_valid_prefix and is_complete_document of every text (one crossing)."""
    m = unwrap(structured.JsonPrefixMatcher)(schema)
    return [[m.is_valid_prefix(t) for t in texts], [m.is_complete_document(t) for t in texts]]


def _every_prefix(doc):
    return [doc[:k] for k in range(len(doc) + 1)]


@pytest.mark.points(3)
@settings(max_examples=30)
@given(doc=documents(STORY))
def test_every_prefix_of_a_valid_document_is_accepted(doc):
    """Hypothesis makes valid Story instances and dumps them canonically: every prefix is
    valid, and only the whole document is complete."""
    texts = _every_prefix(doc)
    got = in_one_crossing(structured, _verdicts, STORY, texts)
    check.equal(got[0], [True] * len(texts), what=f"is_valid_prefix of every prefix of {doc!r}",
                hint=oracle(prefix_mistake, got[0], doc))
    check.equal(got[1], [False] * (len(texts) - 1) + [True], what=f"is_complete_document of every prefix of {doc!r}")


def prefix_mistake(verdicts, doc):
    """Which mistake rejects a valid prefix of `doc` (for the hint), or None."""
    if False not in verdicts:
        return None
    bad = doc[:verdicts.index(False)]
    if bad.count('"') % 2 == 1:  # inside a string (canonical strings hold no quotes)
        return "max_length_off_by_one"
    if bad and bad[-1] in "-0123456789":
        return "integer_range_prefix"
    return None


def mutations(schema):
    """(original, mutated text, what changed): one character inserted or deleted, or two
    members of an object swapped."""
    junk = st.sampled_from([" ", "\n", "\t", ",", "0", "1", "-", '"', "x", "}", "]", "{", ":", "\\"])

    @st.composite
    def mutate(draw):
        doc = draw(documents(schema))
        how = draw(st.sampled_from(["insert", "delete", "swap"]))
        if how == "swap":
            obj = json.loads(doc)
            keys = list(obj)
            i = draw(st.integers(0, len(keys) - 2))
            keys[i], keys[i + 1] = keys[i + 1], keys[i]
            return doc, "{" + ",".join(json.dumps(k) + ":" + json.dumps(obj[k], separators=(",", ":")) for k in keys) + "}", how
        at = draw(st.integers(0, len(doc) - (how == "delete")))
        if how == "delete":
            return doc, doc[:at] + doc[at + 1:], how
        ch = draw(junk)
        return doc, doc[:at] + ch + doc[at:], "whitespace" if ch.isspace() else how
    return mutate()


@pytest.mark.points(3)
@settings(max_examples=40)
@given(case=mutations(STORY))
def test_mutated_documents(case):
    """An inserted space, newline or character, a deleted character, or two keys swapped:
    accepted exactly when the schema's canonical documents allow it."""
    doc, text, how = case
    texts = [text, text[:len(text) // 2]]
    got = in_one_crossing(structured, _verdicts, STORY, texts)
    hint = {"whitespace": "whitespace_allowed", "swap": "key_order"}.get(how)
    check.equal(got[0], [valid_prefix(STORY, t) for t in texts], what=f"is_valid_prefix of {text!r} (from {doc!r}) and its first half",
                hint=hint)
    check.equal(got[1], [complete(STORY, t) for t in texts], what=f"is_complete_document of {text!r} (from {doc!r})",
                hint=hint)


# --- JsonSchemaLogitsProcessor --------------------------------------------------------------------

PROMPT = "Lily the cat: "


def story_rows():
    """Three rows of 18 characters, one token each: three different places in the hero's kind."""
    return ['{"hero":{"kind":"c', '{"hero":{"kind":"o', '{"hero":{"kind":"d']


def char_rows(prompt_ids, texts):
    """[B, T] ids: the prompt, then each text one character (one token) at a time."""
    return torch.tensor([prompt_ids + ids_of(list(text)) for text in texts])


def _pieces(text):
    """Split text into token strings of the vocabulary, greedily longest first."""
    strings = set(_token_strings()) - {""}
    out = []
    while text:
        k = max(k for k in range(1, len(text) + 1) if text[:k] in strings)
        out.append(text[:k])
        text = text[k:]
    return out


@pytest.mark.points(3)
def test_processor_keeps_exactly_the_valid_tokens_per_row():
    """Three rows at three different places of a Story, one call: each row gets its own mask
    (the text after prompt_length), every whole token string is checked, the kept scores
    are unchanged and the rest are -inf."""
    prompt = encode(PROMPT)
    texts = story_rows()
    ids = char_rows(prompt, texts)
    scores = randn(3, 512, seed=11)
    proc = structured.JsonSchemaLogitsProcessor(STORY, token_strings(), EOS, len(prompt))
    out = proc(ids, scores.clone())  # (your processor may change its scores in place; these stay as made)
    check.equal(torch.isfinite(out), batch_masks(STORY, texts), what="which tokens keep their score, per row",
                hint=oracle(mask_mistake, torch.isfinite(out), STORY, texts))
    check.close(out, oracle(expected_scores, STORY, texts, scores), hint="kept_scores_changed")


@pytest.mark.points(2)
def test_a_multi_character_token_must_fit_whole():
    """In '"name":"' with 7 of 8 characters written, "he" would make 9: the first character
    fits, the token does not. In the enum '"kind":"c', "ar" starts right and ends wrong."""
    prompt = encode(PROMPT)
    texts = ['{"hero":{"kind":"dog","name":"The dog', '{"hero":{"kind":"cat","name":"Ann"},"']
    ids = char_rows(prompt, texts)
    scores = randn(2, 512, seed=12)
    proc = structured.JsonSchemaLogitsProcessor(STORY, token_strings(), EOS, len(prompt))
    out = proc(ids, scores.clone())  # (your processor may change its scores in place; these stay as made)
    check.equal(torch.isfinite(out), batch_masks(STORY, texts), what="which tokens keep their score",
                hint=oracle(mask_mistake, torch.isfinite(out), STORY, texts))


@pytest.mark.points(2)
@pytest.mark.parametrize("text,mistake", [("", "eos_too_early"), ("1", "eos_forced_too_soon"),
                                          ("12", "eos_forced_too_soon"), ("120", "eos_not_forced"),
                                          ("0", "eos_not_forced"), ("13", "eos_forced_too_soon")])
def test_eos_only_when_complete_and_alone_when_it_cannot_extend(text, mistake):
    """The integer root [0, 120]: "" no eos; "12" eos and the tokens that fit ("0");
    "120" and "0" eos alone."""
    prompt = encode(PROMPT)
    ids = torch.tensor([prompt + ids_of(list(text))])
    scores = randn(1, 512, seed=13, dtype=torch.float64)
    proc = structured.JsonSchemaLogitsProcessor(AGE, token_strings(), EOS, len(prompt))
    out = proc(ids, scores.clone())  # (your processor may change its scores in place; these stay as made)
    check.equal(torch.isfinite(out), batch_masks(AGE, [text]), what=f"kept tokens after {text!r} (root integer in [0, 120])",
                hint=mistake)
    check.close(out, masked(scores, torch.isfinite(out)), hint="kept_scores_changed",
                what="the kept scores, unchanged and in the dtype of scores (float64)")


@pytest.mark.points(2)
def test_a_complete_story_leaves_only_eos():
    prompt = encode(PROMPT)
    ids = torch.tensor([prompt + ids_of(_pieces(STORY_DOC))])
    proc = structured.JsonSchemaLogitsProcessor(STORY, token_strings(), EOS, len(prompt))
    out = proc(ids, randn(1, 512, seed=14))
    check.equal(torch.isfinite(out), batch_masks(STORY, [STORY_DOC]), what="kept tokens after a whole Story",
                hint="eos_not_forced")


@pytest.mark.points(2)
@pytest.mark.parametrize("prompt_text", ["12", "{", "3"])
def test_the_prompt_is_not_part_of_the_document(prompt_text):
    """prompt_length counts the prompt tokens at the start of every row; only the tokens
    after them are the document ("12" as prompt, "1" generated: the text is "1")."""
    prompt = ids_of(list(prompt_text))
    ids = torch.tensor([prompt + ids_of(["1"])])
    proc = structured.JsonSchemaLogitsProcessor(AGE, token_strings(), EOS, len(prompt))
    out = hinted("prompt_included", proc, ids, randn(1, 512, seed=15))
    check.equal(torch.isfinite(out), batch_masks(AGE, ["1"]), what=f"kept tokens after prompt {prompt_text!r}, text '1'",
                hint="prompt_included")


@pytest.mark.points(1)
def test_a_row_that_left_the_schema_raises():
    ids = torch.tensor([ids_of(["x", "{", " "])])
    proc = structured.JsonSchemaLogitsProcessor(STORY, token_strings(), EOS, 1)
    with check.raises(ValueError):
        proc(ids, randn(1, 512, seed=16))


def _generate(schema, prompt, rows, seed, do_sample):
    """Glue: generate under the student's processor; per row (text before eos, ended with eos)."""
    from transformers import LogitsProcessorList

    strings = _token_strings()
    ids = torch.tensor([encode(prompt)] * rows)
    proc = unwrap(structured.JsonSchemaLogitsProcessor)(schema, list(strings), EOS, ids.shape[1])
    options = {"do_sample": True, "temperature": 1.0, "top_k": 0} if do_sample else {"do_sample": False}
    with torch.random.fork_rng(), torch.no_grad():
        torch.manual_seed(seed)
        out = model().generate(ids, attention_mask=torch.ones_like(ids), max_new_tokens=128 - ids.shape[1],
                               logits_processor=LogitsProcessorList([proc]), pad_token_id=EOS, eos_token_id=EOS,
                               **options)
    results = []
    for row in out[:, ids.shape[1]:].tolist():
        ended = EOS in row
        results.append(["".join(strings[t] for t in (row[:row.index(EOS)] if ended else row)), ended])
    return results


def document_problem(model_cls, schema, text, ended) -> str | None:
    """What is wrong with a generated document (pydantic, json + jsonschema, the canonical
    re-dump), or None."""
    if not ended:
        return "generation did not end with eos"
    try:
        model_cls.model_validate_json(text)
        obj = json.loads(text)
        jsonschema.validate(obj, schema)
    except (ValidationError, ValueError, jsonschema.ValidationError) as exc:
        return f"{type(exc).__name__}: {exc}"
    if canonical(obj, schema) != text:
        return "not in canonical form (whitespace, key order)"
    return None


@pytest.mark.points(3)
def test_generated_stories_validate():
    """gpt2-tiny-trained under your processor: greedy, then 4 samples at temperature 1 in one
    batch (the rows diverge, so each needs its own mask). Every output parses with
    Story.model_validate_json, passes jsonschema and is canonical."""
    greedy = in_one_crossing(structured, _generate, STORY, PROMPT, 1, 0, False)
    sampled = in_one_crossing(structured, _generate, STORY, PROMPT, 4, 1, True)
    for text, ended in greedy:
        check.that(oracle(document_problem, Story, STORY, text, ended) is None,
                   f"greedy output {text!r}: {oracle(document_problem, Story, STORY, text, ended)}")
    for text, ended in sampled:
        check.that(oracle(document_problem, Story, STORY, text, ended) is None,
                   f"sampled output {text!r} (batch of 4): {oracle(document_problem, Story, STORY, text, ended)}",
                   hint="row_zero_mask")


# --- rubric scores --------------------------------------------------------------------------------


BALANCED = regex.compile(r'\{(?:[^{}"]|"(?:[^"\\]|\\.)*"|(?R))*\}')  # strings skipped, braces nested


def balanced_object(text: str) -> str | None:
    """The leftmost balanced {...} (a recursive regular expression that steps over strings)."""
    found = BALANCED.search(text)
    return None if found is None else found.group()


def raw_decoded(text: str) -> str | None:
    """json's end of the object that starts at the first '{' where a JSON object starts."""
    decoder = json.JSONDecoder()
    for i, ch in enumerate(text):
        if ch == "{":
            try:
                return text[i:decoder.raw_decode(text, i)[1]]
            except json.JSONDecodeError:
                continue
    return None


@pytest.mark.points(2)
@pytest.mark.parametrize("text,mistake", [
    ('Sure! {"why": "use {x} \\"}\\"", "score": 4} hope it helps {}', "braces_in_strings"),
    ('{"a": {"b": [1, {"c": 2}]}, "d": "}"}', "braces_in_strings"),
    ('Here: {"justification": "a } b", "score": 3}.', "braces_in_strings"),
    ('{"q": "\\\\"} trailing }', "escaped_quote"),
    ('{"q": "say \\"{\\" twice"}', "escaped_quote"),
    ('no object here {broken and then {"ok": true}', None),
])
def test_extract_json_object(text, mistake):
    check.equal(structured.extract_json_object(text), balanced_object(text), what=f"extract_json_object({text!r})",
                hint=mistake)
    check.equal(structured.extract_json_object(text), raw_decoded(text), what=f"extract_json_object({text!r}) (valid JSON)",
                hint=mistake)


@pytest.mark.points(1)
@pytest.mark.parametrize("text", ["no braces at all", "{ never closed", "}{"])
def test_extract_json_object_none(text):
    check.equal(structured.extract_json_object(text), None, what=f"extract_json_object({text!r})")


class ScriptedJudge:
    """Replays canned answers in order and keeps every prompt it was given."""

    def __init__(self, answers):
        self.answers = list(answers)
        self.prompts = []

    def __call__(self, prompt):
        self.prompts.append(prompt)
        return self.answers[min(len(self.prompts), len(self.answers)) - 1]


def _score(answers, prompt, model_cls, max_retries):
    """Glue: score_with_rubric with a scripted judge; (the result as a dict or the error's
    type, the prompts the judge saw)."""
    judge = ScriptedJudge(answers)
    options = {} if max_retries is None else {"max_retries": max_retries}
    model_cls = unwrap(structured.RubricScore) if model_cls is None else model_cls  # None: the given RubricScore
    try:
        out = unwrap(structured.score_with_rubric)(judge, prompt, model_cls, **options)
    except ValueError as exc:
        return ["raised " + type(exc).__name__, judge.prompts]
    return [[type(out).__name__, out.model_dump()], judge.prompts]


def reask(prompt, answer, model_cls):
    """The re-ask the contract writes after `answer` (pydantic's own error text)."""
    raw = balanced_object(answer)
    if raw is None:
        error = "no JSON object found"
    else:
        try:
            model_cls.model_validate_json(raw)
        except ValidationError as exc:
            error = str(exc)
    return prompt + f"\n\nYour previous answer was invalid: {error}. Answer with JSON only."


GOOD = '{"criterion": "clarity", "score": 4, "justification": "Short and clear."}'
PROMPT_JUDGE = "Rate the answer's clarity from 1 to 5. Answer in JSON."


@pytest.mark.points(1)
def test_score_with_rubric_first_answer_fits():
    got = in_one_crossing(structured, _score, ["Sure! " + GOOD + " Anything else?"], PROMPT_JUDGE, Verdict, None)
    check.equal(got[0], ["Verdict", Verdict.model_validate_json(GOOD).model_dump()], what="the validated answer")
    check.equal(got[1], [PROMPT_JUDGE], what="the prompts the judge saw")


@pytest.mark.points(2)
@pytest.mark.parametrize("bad", [
    '{"criterion": "clarity", "score": 7, "justification": "Great."}',
    '{"criterion": "style", "score": 3, "justification": "ok"}',
    "I would say four out of five.",
    '{"criterion": "clarity", "score": 4, "justification": "' + "x" * 201 + '"}',
    '{"criterion": "clarity", "score": 4,}',
])
def test_score_with_rubric_reasks_with_the_error(bad):
    """One invalid answer, then a good one: the second prompt is the ORIGINAL prompt plus the
    error (pydantic's str(ValidationError), or "no JSON object found")."""
    got = in_one_crossing(structured, _score, [bad, GOOD], PROMPT_JUDGE, Verdict, None)
    check.equal(got[0], ["Verdict", Verdict.model_validate_json(GOOD).model_dump()], what="the validated answer",
                hint="reask_text")
    check.equal(got[1], [PROMPT_JUDGE, reask(PROMPT_JUDGE, bad, Verdict)], what="the prompts the judge saw",
                hint="reask_text")


@pytest.mark.points(2)
@pytest.mark.parametrize("max_retries", [None, 0, 1, 4])
def test_score_with_rubric_gives_up_after_max_retries(max_retries):
    """max_retries re-asks after the first attempt (default 2: three calls), then ValueError;
    every re-ask is the original prompt plus the latest error (never the earlier re-ask)."""
    answers = ["no", '{"score": 2}', "still no", '{"criterion": "clarity"}', "nope", "never"]
    got = in_one_crossing(structured, _score, answers, PROMPT_JUDGE, Verdict, max_retries)
    calls = 1 + (2 if max_retries is None else max_retries)
    check.equal(got[0], "raised ValueError", what="what score_with_rubric does when every answer is invalid",
                hint="retries_off_by_one")
    check.equal(len(got[1]), calls, what="calls to the judge", hint="retries_off_by_one")
    check.equal(got[1], [PROMPT_JUDGE] + [reask(PROMPT_JUDGE, a, Verdict) for a in answers[:calls - 1]],
                what="the prompts the judge saw", hint="reask_text")


@pytest.mark.points(1)
def test_the_given_rubric_score_is_in_the_subset():
    """RubricScore's schema is one a JsonPrefixMatcher reads (a local judge can be constrained)."""
    m = structured.JsonPrefixMatcher(structured.RubricScore.model_json_schema())
    doc = '{"criterion":"clarity","score":5,"justification":"ok"}'
    whole = m.is_complete_document(doc)
    six = m.is_valid_prefix('{"criterion":"clarity","score":6')
    check.that(whole, f"{doc} is a RubricScore document")
    check.that(not six, "score 6 is outside 1..5", hint="integer_range_prefix")


# --- judge statistics -----------------------------------------------------------------------------

MAP = {"1": "2", "2": "1", "tie": "tie"}  # a verdict in the (B, A) order, mapped to the (A, B) order


def random_verdicts(seed, n, first_bias=0.3, tie=0.15):
    rng = random.Random(seed)
    ab, ba = [], []
    for _ in range(n):
        truth = rng.choice(["1", "2", "tie"]) if rng.random() < tie * 3 else rng.choice(["1", "2"])
        a = "1" if rng.random() < first_bias else truth
        b = "1" if rng.random() < first_bias else MAP[truth]
        ab.append(a)
        ba.append(b)
    return ab, ba


@pytest.mark.points(1)
def test_swap_consistency_example():
    check.close(structured.swap_consistency(["1", "1", "tie"], ["2", "1", "tie"]), 2 / 3,
                hint="swap_positions_unmapped")


@pytest.mark.points(1)
@pytest.mark.parametrize("seed", [1, 2])
def test_swap_consistency(seed):
    ab, ba = random_verdicts(seed, 50)
    check.close(structured.swap_consistency(ab, ba), float(np.mean([MAP[y] == x for x, y in zip(ab, ba)])),
                hint="swap_positions_unmapped")


def binomial(ab, ba, alternative="two-sided"):
    from scipy.stats import binomtest

    decided = [v for v in ab + ba if v != "tie"]
    k, n = decided.count("1"), len(decided)
    return [k / n, float(binomtest(k, n, 0.5, alternative=alternative).pvalue)]


def rate_mistake(got, ab, ba):
    if isinstance(got, (tuple, list)) and len(got) == 2:
        verdicts = ab + ba
        if abs(got[0] - verdicts.count("1") / len(verdicts)) < 1e-12:
            return "ties_counted"
        if any(abs(got[1] - binomial(ab, ba, alt)[1]) < 1e-12 for alt in ("greater", "less")):
            return "binomial_one_sided"
    return None


@pytest.mark.points(2)
@pytest.mark.parametrize("seed,n,bias", [(3, 40, 0.3), (4, 25, 0.0), (5, 60, 0.1)])
def test_first_position_rate(seed, n, bias):
    ab, ba = random_verdicts(seed, n, first_bias=bias)
    got = structured.first_position_rate(ab, ba)
    want = oracle(binomial, ab, ba)
    check.equal(len(got), 2, what="first_position_rate returns (rate, p_value)")
    check.close(got[0], want[0], what="rate", hint=oracle(rate_mistake, got, ab, ba))
    check.close(got[1], want[1], what="p-value", hint=oracle(rate_mistake, got, ab, ba))


@pytest.mark.points(1)
def test_first_position_rate_example():
    got = structured.first_position_rate(["1", "1", "tie"], ["1", "2", "tie"])
    check.close(got[0], 3 / 4, what="rate", hint="ties_counted")


@pytest.mark.points(1)
def test_debiased_preferences_every_combination():
    ab = ["1", "1", "1", "2", "2", "2", "tie", "tie", "tie"]
    ba = ["1", "2", "tie"] * 3
    check.equal(structured.debiased_preferences(ab, ba), [0.5, 1.0, 0.5, 0.0, 0.5, 0.5, 0.5, 0.5, 0.5],
                hint="debias_one_order")


@pytest.mark.points(1)
@pytest.mark.parametrize("fn", ["swap_consistency", "first_position_rate", "debiased_preferences"])
@pytest.mark.parametrize("ab,ba", [(["1"], ["1", "2"]), ([], []), (["1", "A"], ["2", "1"]), (["tie"], ["yes"])])
def test_verdict_functions_reject_bad_input(fn, ab, ba):
    with check.raises(ValueError):
        getattr(structured, fn)(ab, ba)


@pytest.mark.points(1)
def test_first_position_rate_all_ties_raises():
    with check.raises(ValueError):
        structured.first_position_rate(["tie", "tie"], ["tie", "tie"])


@pytest.mark.points(1)
@pytest.mark.parametrize("lm,lb", [(-1.2, -0.3), (0.0, 0.0), (-30.0, -2.0), (1000.0, 0.0), (0.0, 1000.0), (-745.0, 10.0)])
def test_soft_preference(lm, lb):
    from scipy.special import expit

    got = hinted("soft_preference_overflow", structured.soft_preference, lm, lb)
    check.that(isinstance(got, float), f"soft_preference returns a Python float, got {type(got).__name__}")
    check.close(got, float(expit(lm - lb)), hint="soft_preference_overflow")


# --- length-controlled win rate -------------------------------------------------------------------


def simulated_judge(seed, n, theta=-0.3, phi=1.5, mean_d=0.0, sd_d=300.0, soft=True):
    """Preferences from a judge that likes length: p ~ sigmoid(theta + phi * tanh(d / sd)).
    Some are soft (a soft_preference), some debiased hard/tie verdicts."""
    rng = np.random.default_rng(seed)
    d = np.round(rng.normal(mean_d, sd_d, n)).astype(int)
    base = rng.integers(200, 900, n)
    eta = theta + phi * np.tanh(d / sd_d) + rng.normal(0, 0.5, n)
    q = 1 / (1 + np.exp(-eta))
    hard = rng.random(n) < q
    kind = rng.random(n)
    p = np.where(kind < 0.5, q, np.where(kind < 0.8, hard.astype(float), 0.5)) if soft else hard.astype(float)
    return [float(x) for x in p], [int(x) for x in base + d], [int(x) for x in base]


def sklearn_lc(preferences, len_model, len_baseline, ddof=1, hard=False):
    """(raw, LC) from sklearn's unregularised logistic regression on rows [1, x], duplicated
    with labels 1 and 0 and weights p and 1 - p."""
    from sklearn.linear_model import LogisticRegression

    p = np.asarray(preferences, dtype=np.float64)
    if hard:
        p = np.round(p)
    d = np.asarray(len_model, dtype=np.float64) - np.asarray(len_baseline, dtype=np.float64)
    x = np.tanh(d / d.std(ddof=ddof))
    X = np.stack([np.ones_like(x), x], axis=1)
    fit = LogisticRegression(C=np.inf, fit_intercept=False, tol=1e-10, max_iter=1000)
    fit.fit(np.concatenate([X, X]), np.concatenate([np.ones_like(p), np.zeros_like(p)]),
            sample_weight=np.concatenate([p, 1 - p]))
    theta = fit.coef_[0][0]
    return [100 * float(np.asarray(preferences).mean()), 100 / (1 + np.exp(-theta))]


def lc_mistake(got, preferences, len_model, len_baseline):
    if isinstance(got, (tuple, list)) and len(got) == 2:
        for hint, options in (("lc_hard_labels", {"hard": True}), ("lc_ddof", {"ddof": 0})):
            if abs(got[1] - sklearn_lc(preferences, len_model, len_baseline, **options)[1]) < 1e-4:
                return hint
    return None


LC_TOLERANCE = {"rtol": 1e-6, "atol": 1e-6, "reason": "sklearn's lbfgs stops at tol=1e-10 on the gradient"}


@pytest.mark.points(3)
@pytest.mark.parametrize("seed,n,mean_d", [(7, 400, 0.0), (8, 60, 80.0), (9, 25, -40.0)])
def test_length_controlled_win_rate(seed, n, mean_d):
    prefs, lm, lb = simulated_judge(seed, n, mean_d=mean_d)
    got = structured.length_controlled_win_rate(prefs, lm, lb)
    want = oracle(sklearn_lc, prefs, lm, lb)
    check.equal(len(got), 2, what="length_controlled_win_rate returns (raw, lc)")
    check.close(got[1], want[1], what="length-controlled win rate (percent)",
                hint=oracle(lc_mistake, got, prefs, lm, lb), **LC_TOLERANCE)
    check.close(got[0], want[0], what="raw win rate (percent)", **LC_TOLERANCE)


@pytest.mark.points(1)
def test_length_control_takes_away_the_length_bonus():
    """The same judge, answers 150 characters longer on average: the raw win rate rises a
    lot, the LC win rate much less (it is the prediction at zero length difference)."""
    prefs0, lm0, lb0 = simulated_judge(10, 400, mean_d=0.0)
    prefs1, lm1, lb1 = simulated_judge(10, 400, mean_d=150.0)
    even = structured.length_controlled_win_rate(prefs0, lm0, lb0)
    longer = structured.length_controlled_win_rate(prefs1, lm1, lb1)
    check.that(longer[0] - even[0] > 2 * abs(longer[1] - even[1]),
               f"raw {even[0]:.1f} -> {longer[0]:.1f}, LC {even[1]:.1f} -> {longer[1]:.1f}: LC should move much less")


@pytest.mark.points(1)
@pytest.mark.parametrize("prefs,lm,lb", [([0.5], [10], [5]), ([0.5, 1.0], [10, 12], [5]), ([0.5, 1.2], [10, 12], [5, 9]),
                                         ([0.5, 1.0, 0.0], [10, 12, 8], [5, 7, 3])])
def test_length_controlled_win_rate_bad_input(prefs, lm, lb):
    with check.raises(ValueError):
        structured.length_controlled_win_rate(prefs, lm, lb)
