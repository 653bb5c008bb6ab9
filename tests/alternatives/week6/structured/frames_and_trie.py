"""Structured outputs written differently: schema nodes and parser frames are frozen
dataclasses; an object frame walks its members itself (opening brace, key text, value,
comma, closing brace) instead of expanding into literal pieces; integer prefixes are
checked by the lengths an extension can have; the processor walks a trie of the token
strings once per row, sharing the matcher's work between tokens with common prefixes;
the LC GLM is fitted by iteratively reweighted least squares."""

import json
import math
from dataclasses import dataclass
from typing import Any, Callable, Literal

import numpy as np
import torch
import transformers
from pydantic import BaseModel, Field, ValidationError

PRINTABLE = frozenset(chr(c) for c in range(0x20, 0x7F)) - {'"', "\\"}
VERDICTS = ("1", "2", "tie")


@dataclass(frozen=True)
class Obj:
    members: tuple  # ((key text '"k":', node), ...)


@dataclass(frozen=True)
class Arr:
    item: Any
    lo: int
    hi: int


@dataclass(frozen=True)
class Str:
    limit: int


@dataclass(frozen=True)
class Choice:
    options: tuple


@dataclass(frozen=True)
class Int:
    lo: int
    hi: int


# Frames on the stack (the last element is the top).
@dataclass(frozen=True)
class ObjF:
    node: Obj
    member: int  # which member is next
    pos: int  # characters of the text before that member's value ("{" or "," + key + ":") already read


@dataclass(frozen=True)
class ArrF:
    node: Arr
    count: int
    need_item: bool  # after "[" (maybe "]") or after "," (an item)
    opened: bool


@dataclass(frozen=True)
class StrF:
    node: Str
    opened: bool
    n: int


@dataclass(frozen=True)
class ChoiceF:
    node: Choice
    typed: str


@dataclass(frozen=True)
class IntF:
    node: Int
    text: str


def _plain_int(v) -> bool:
    return type(v) is int


def _build(schema, defs, seen=frozenset()):
    if not isinstance(schema, dict):
        raise ValueError("not a schema")
    keys = set(schema) - {"title", "description"}
    if "$ref" in keys:
        name = schema["$ref"].split("/")[-1]
        if keys != {"$ref"} or not schema["$ref"].startswith("#/$defs/") or name not in defs or name in seen:
            raise ValueError(f"bad $ref: {schema}")
        return _build(defs[name], defs, seen | {name})
    t = schema.get("type")
    keys -= {"type", "$defs"}
    if t == "object" and keys <= {"properties", "required"}:
        props = schema.get("properties", {})
        if set(schema.get("required", [])) == set(props):
            return Obj(tuple((("{" if i == 0 else ",") + json.dumps(k) + ":", _build(v, defs, seen))
                             for i, (k, v) in enumerate(props.items())))
    elif t == "string" and keys == {"enum"}:
        vals = schema["enum"]
        if vals and all(isinstance(v, str) and set(v) <= PRINTABLE for v in vals):
            return Choice(tuple('"' + v + '"' for v in vals))
    elif t == "string" and keys == {"maxLength"}:
        if _plain_int(schema["maxLength"]) and schema["maxLength"] >= 0:
            return Str(schema["maxLength"])
    elif t == "integer" and keys == {"minimum", "maximum"}:
        lo, hi = schema["minimum"], schema["maximum"]
        if _plain_int(lo) and _plain_int(hi) and lo <= hi:
            return Int(lo, hi)
    elif t == "boolean" and not keys:
        return Choice(("true", "false"))
    elif t == "array" and {"items", "maxItems"} <= keys <= {"items", "maxItems", "minItems"}:
        lo, hi = schema.get("minItems", 0), schema["maxItems"]
        if _plain_int(lo) and _plain_int(hi) and 0 <= lo <= hi:
            return Arr(_build(schema["items"], defs, seen), lo, hi)
    raise ValueError(f"outside the subset: {schema}")


def _int_ok(text: str, lo: int, hi: int) -> bool:
    """Some integer in [lo, hi] is written with `text` at its start."""
    if text == "":
        return True
    neg = text[0] == "-"
    body = text[1:] if neg else text
    if body == "":
        return lo < 0
    if not body.isdigit() or not body.isascii() or (body[0] == "0" and (len(body) > 1 or neg)):
        return False
    if body == "0":
        return lo <= 0 <= hi
    longest = len(str(max(abs(lo), abs(hi))))
    for length in range(len(body), longest + 1):
        scale = 10 ** (length - len(body))
        a, b = int(body) * scale, (int(body) + 1) * scale - 1
        if neg:
            a, b = -b, -a
        if max(a, lo) <= min(b, hi):
            return True
    return False


def _int_done(text, lo, hi):
    return text not in ("", "-") and _int_ok(text, lo, hi) and lo <= int(text) <= hi


def _open(node):
    if isinstance(node, Obj):
        return ObjF(node, 0, 0)
    if isinstance(node, Arr):
        return ArrF(node, 0, True, False)
    if isinstance(node, Str):
        return StrF(node, False, 0)
    if isinstance(node, Choice):
        return ChoiceF(node, "")
    return IntF(node, "")


def _step(stack: tuple, ch: str):
    """(new stack) or None; a finished frame is popped by its parent's turn."""
    while stack:
        top, below = stack[-1], stack[:-1]
        if isinstance(top, ObjF):
            members = top.node.members
            if top.member == len(members):  # every member read (or none to read)
                if not members and top.pos == 0:
                    return below + (ObjF(top.node, 0, 1),) if ch == "{" else None
                return below if ch == "}" else None
            head = members[top.member][0]
            if top.pos < len(head):
                if head[top.pos] != ch:
                    return None
                if top.pos + 1 < len(head):
                    return below + (ObjF(top.node, top.member, top.pos + 1),)
                return below + (ObjF(top.node, top.member + 1, 0), _open(members[top.member][1]))
            return None
        if isinstance(top, ArrF):
            if not top.opened:
                return below + (ArrF(top.node, 0, True, True),) if ch == "[" else None
            if ch == "]" and top.count >= top.node.lo and (not top.need_item or top.count == 0):
                return below
            if top.need_item and (top.count > 0 or top.node.hi > 0):
                if top.count == 0 and top.node.hi == 0:
                    return None
                stack = below + (ArrF(top.node, top.count + 1, False, True), _open(top.node.item))
                continue
            if not top.need_item and ch == "," and top.count < top.node.hi:
                return below + (ArrF(top.node, top.count, True, True),)
            return None
        if isinstance(top, StrF):
            if not top.opened:
                return below + (StrF(top.node, True, 0),) if ch == '"' else None
            if ch == '"':
                return below
            if ch in PRINTABLE and top.n < top.node.limit:
                return below + (StrF(top.node, True, top.n + 1),)
            return None
        if isinstance(top, ChoiceF):
            typed = top.typed + ch
            if typed in top.node.options:
                return below
            if any(o.startswith(typed) for o in top.node.options):
                return below + (ChoiceF(top.node, typed),)
            return None
        if isinstance(top, IntF):
            if ch in "0123456789-" and _int_ok(top.text + ch, top.node.lo, top.node.hi):
                return below + (IntF(top.node, top.text + ch),)
            if _int_done(top.text, top.node.lo, top.node.hi):
                stack = below
                continue
            return None
    return None


class JsonPrefixMatcher:
    def __init__(self, schema: dict):
        self.node = _build(schema, schema.get("$defs", {}))

    def start(self) -> Any:
        return (_open(self.node),)

    def advance(self, state: Any, ch: str) -> Any | None:
        return _step(state, ch)

    def is_complete(self, state: Any) -> bool:
        if not state:
            return True
        top = state[-1]
        return len(state) == 1 and isinstance(top, IntF) and _int_done(top.text, top.node.lo, top.node.hi)

    def can_extend(self, state: Any) -> bool:
        if not state:
            return False
        top = state[-1]
        if len(state) == 1 and isinstance(top, IntF):
            return any(_int_ok(top.text + d, top.node.lo, top.node.hi) for d in "0123456789")
        return True

    def _walk(self, text):
        state = self.start()
        for ch in text:
            state = _step(state, ch)
            if state is None:
                break
        return state

    def is_valid_prefix(self, text: str) -> bool:
        return self._walk(text) is not None

    def is_complete_document(self, text: str) -> bool:
        state = self._walk(text)
        return state is not None and self.is_complete(state)


class JsonSchemaLogitsProcessor(transformers.LogitsProcessor):
    def __init__(self, schema: dict, token_strings: list[str], eos_token_id: int, prompt_length: int):
        self.matcher = JsonPrefixMatcher(schema)
        self.eos_token_id = eos_token_id
        self.prompt_length = prompt_length
        self.token_strings = list(token_strings)
        self.trie = {}  # char -> (ids ending here, subtrie)
        for t, s in enumerate(token_strings):
            node = [[], self.trie]
            for ch in s:
                node = node[1].setdefault(ch, [[], {}])
            if s:
                node[0].append(t)

    def _keep(self, state, trie, out):
        for ch, (ids, sub) in trie.items():
            nxt = _step(state, ch)
            if nxt is not None:
                out.extend(ids)
                self._keep(nxt, sub, out)

    def __call__(self, input_ids: torch.LongTensor, scores: torch.FloatTensor) -> torch.FloatTensor:
        result = scores.clone()
        vocab = scores.shape[1]
        for b in range(input_ids.shape[0]):
            text = "".join(self.token_strings[int(t)] for t in input_ids[b, self.prompt_length:])
            state = self.matcher._walk(text)
            if state is None:
                raise ValueError(f"row {b}: {text!r} is no prefix of a document")
            keep = []
            done = self.matcher.is_complete(state)
            if self.matcher.can_extend(state):
                self._keep(state, self.trie, keep)
            if done:
                keep.append(self.eos_token_id)
            mask = torch.ones(vocab, dtype=torch.bool)
            mask[[k for k in keep if k < vocab]] = False
            result[b, mask] = float("-inf")
        return result


class RubricScore(BaseModel):
    """One criterion's score from an LLM judge (given).

    Its schema is in the subset too: `JsonSchemaLogitsProcessor(RubricScore.model_json_schema(), ...)`
    makes a local judge that always answers in this shape."""

    criterion: Literal["helpfulness", "correctness", "clarity"]
    score: int = Field(ge=1, le=5)
    justification: str = Field(max_length=200)


def extract_json_object(text: str) -> str | None:
    start = text.find("{")
    while start != -1:
        depth, i, quoted = 0, start, False
        while i < len(text):
            c = text[i]
            if quoted:
                if c == "\\":
                    i += 1
                elif c == '"':
                    quoted = False
            elif c == '"':
                quoted = True
            elif c in "{}":
                depth += 1 if c == "{" else -1
                if depth == 0:
                    return text[start:i + 1]
            i += 1
        start = text.find("{", start + 1)
    return None


def score_with_rubric(judge: Callable[[str], str], prompt: str, model_cls: type[BaseModel],
                      max_retries: int = 2) -> BaseModel:
    errors = []
    for attempt in range(1 + max_retries):
        asked = prompt if not errors else f"{prompt}\n\nYour previous answer was invalid: {errors[-1]}. Answer with JSON only."
        candidate = extract_json_object(judge(asked))
        if candidate is None:
            errors.append("no JSON object found")
            continue
        try:
            return model_cls.model_validate_json(candidate)
        except ValidationError as exc:
            errors.append(str(exc))
    raise ValueError(f"gave up after {len(errors)} answers; last error: {errors[-1]}")


def _validate(ab, ba):
    if len(ab) == 0 or len(ab) != len(ba):
        raise ValueError("need two non-empty lists of the same length")
    for v in (*ab, *ba):
        if v not in VERDICTS:
            raise ValueError(f"unknown verdict {v!r}")


def swap_consistency(ab: list[str], ba: list[str]) -> float:
    _validate(ab, ba)
    winner_ab = {"1": "A", "2": "B", "tie": "="}
    winner_ba = {"1": "B", "2": "A", "tie": "="}
    return float(np.mean([winner_ab[x] == winner_ba[y] for x, y in zip(ab, ba)]))


def first_position_rate(ab: list[str], ba: list[str]) -> tuple[float, float]:
    from scipy import stats

    _validate(ab, ba)
    k = sum(v == "1" for v in (*ab, *ba))
    n = k + sum(v == "2" for v in (*ab, *ba))
    if n == 0:
        raise ValueError("no decided verdicts")
    return k / n, float(stats.binomtest(k, n, p=0.5, alternative="two-sided").pvalue)


def debiased_preferences(ab: list[str], ba: list[str]) -> list[float]:
    _validate(ab, ba)
    out = []
    for x, y in zip(ab, ba):
        a_first, a_second = x == "1", y == "2"
        b_first, b_second = x == "2", y == "1"
        out.append(1.0 if a_first and a_second else 0.0 if b_first and b_second else 0.5)
    return out


def soft_preference(logprob_model: float, logprob_baseline: float) -> float:
    from scipy.special import expit

    return float(expit(logprob_model - logprob_baseline))


def length_controlled_win_rate(preferences: list[float], len_model: list[int],
                               len_baseline: list[int]) -> tuple[float, float]:
    n = len(preferences)
    if n < 2 or len(len_model) != n or len(len_baseline) != n:
        raise ValueError("need two or more pairs, with matching lengths")
    y = np.array(preferences, dtype=np.float64)
    if np.any((y < 0) | (y > 1)):
        raise ValueError("preferences outside [0, 1]")
    diff = np.array([a - b for a, b in zip(len_model, len_baseline)], dtype=np.float64)
    scale = np.std(diff, ddof=1)
    if scale == 0:
        raise ValueError("all length differences are equal")
    X = np.column_stack([np.ones(n), np.tanh(diff / scale)])
    beta = np.zeros(2)
    for _ in range(200):  # IRLS: weighted least squares on the working response
        eta = X @ beta
        mu = 1 / (1 + np.exp(-eta))
        w = mu * (1 - mu)
        z = eta + (y - mu) / w
        new = np.linalg.lstsq(X * np.sqrt(w)[:, None], z * np.sqrt(w), rcond=None)[0]
        if np.max(np.abs(new - beta)) < 1e-13:
            beta = new
            break
        beta = new
    return 100 * float(y.mean()), 100 * float(1 / (1 + np.exp(-beta[0])))
