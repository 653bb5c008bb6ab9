"""Structured outputs: JSON-schema-constrained decoding, rubric scores, judge statistics (reference)."""

import json
import math
from typing import Any, Callable, Literal

import numpy as np
import torch
import transformers
from pydantic import BaseModel, Field, ValidationError

PRINTABLE = frozenset(chr(c) for c in range(0x20, 0x7F)) - {'"', "\\"}
VERDICTS = ("1", "2", "tie")


class JsonPrefixMatcher:
    """Which texts begin (or are) a canonical JSON document of a schema."""

    def __init__(self, schema: dict):
        self.root = _compile(schema, schema.get("$defs", {}), ())
        self._memo = {}

    def start(self):
        return (self.root,)

    def advance(self, state, ch: str):
        key = (state, ch)
        if key not in self._memo:
            self._memo[key] = _advance(state, ch)
        return self._memo[key]

    def is_complete(self, state) -> bool:
        return len(state) == 0 or (len(state) == 1 and state[0][0] == "int" and _int_complete(*state[0][1:]))

    def can_extend(self, state) -> bool:
        if not self.is_complete(state):
            return True
        return len(state) == 1 and _int_can_extend(*state[0][1:])

    def is_valid_prefix(self, text: str) -> bool:
        return self._run(text) is not None

    def is_complete_document(self, text: str) -> bool:
        state = self._run(text)
        return state is not None and self.is_complete(state)

    def _run(self, text):
        state = self.start()
        for ch in text:
            state = self.advance(state, ch)
            if state is None:
                return None
        return state


# A compiled schema node is a hashable tuple:
#   ("obj", ((key, node), ...))   ("arr", item, min_items, max_items)   ("str", max_length)
#   ("choice", (option, ...)) for enums and booleans (options as written: '"cat"', "true")
#   ("integer", minimum, maximum)
# A state is a tuple of frames, the top first: a node not yet begun, ("lit", text) still to
# write, ("int", lo, hi, text), ("str*", max_length, written) inside a string,
# ("choice*", options, typed), ("arr*", item, min, max, count, phase).

_ANNOTATIONS = {"title", "description"}


def _compile(schema: dict, defs: dict, seen: tuple):
    if not isinstance(schema, dict):
        raise ValueError(f"not a schema: {schema!r}")
    if "$ref" in schema:
        if set(schema) - {"$ref"} - _ANNOTATIONS:
            raise ValueError(f"$ref with other keywords: {schema}")
        ref = schema["$ref"]
        if not ref.startswith("#/$defs/") or ref[8:] not in defs:
            raise ValueError(f"unknown $ref {ref!r}")
        if ref in seen:
            raise ValueError(f"recursive $ref {ref!r}")
        return _compile(defs[ref[8:]], defs, seen + (ref,))
    kind = schema.get("type")
    keys = set(schema) - _ANNOTATIONS - {"type", "$defs"}
    if kind == "object":
        props, required = schema.get("properties", {}), schema.get("required", [])
        if keys - {"properties", "required"} or set(required) != set(props):
            raise ValueError(f"object outside the subset (extra keywords or optional properties): {schema}")
        return ("obj", tuple((k, _compile(v, defs, seen)) for k, v in props.items()))
    if kind == "string" and "enum" in schema:
        values = schema["enum"]
        if keys != {"enum"} or not values or not all(isinstance(v, str) and set(v) <= PRINTABLE for v in values):
            raise ValueError(f"string enum outside the subset: {schema}")
        return ("choice", tuple(dict.fromkeys(f'"{v}"' for v in values)))
    if kind == "string":
        if keys != {"maxLength"} or not _is_int(schema["maxLength"]) or schema["maxLength"] < 0:
            raise ValueError(f"a string needs maxLength (and nothing else): {schema}")
        return ("str", schema["maxLength"])
    if kind == "integer":
        if keys != {"minimum", "maximum"} or not (_is_int(schema["minimum"]) and _is_int(schema["maximum"])) \
                or schema["minimum"] > schema["maximum"]:
            raise ValueError(f"an integer needs integer minimum <= maximum (and nothing else): {schema}")
        return ("integer", schema["minimum"], schema["maximum"])
    if kind == "boolean":
        if keys:
            raise ValueError(f"boolean with keywords: {schema}")
        return ("choice", ("true", "false"))
    if kind == "array":
        lo, hi = schema.get("minItems", 0), schema.get("maxItems")
        if keys - {"minItems"} != {"items", "maxItems"} or not (_is_int(lo) and _is_int(hi)) or not 0 <= lo <= hi:
            raise ValueError(f"an array needs items and maxItems (minItems optional): {schema}")
        return ("arr", _compile(schema["items"], defs, seen), lo, hi)
    raise ValueError(f"schema outside the subset: {schema}")


def _is_int(value) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _expand(node):
    """The frames that write `node`, the first on top."""
    tag = node[0]
    if tag == "obj":
        if not node[1]:
            return (("lit", "{}"),)
        frames = []
        for i, (key, value) in enumerate(node[1]):
            frames += [("lit", ("{" if i == 0 else ",") + json.dumps(key) + ":"), value]
        return tuple(frames) + (("lit", "}"),)
    if tag == "str":
        return (("lit", '"'), ("str*", node[1], 0))
    if tag == "choice":
        return (("choice*", node[1], ""),)
    if tag == "integer":
        return (("int", node[1], node[2], ""),)
    if tag == "arr":
        return (("lit", "["), ("arr*", node[1], node[2], node[3], 0, "first"))
    return (node,)


def _advance(state, ch):
    while state:
        top, rest = state[0], state[1:]
        tag = top[0]
        if tag in ("obj", "str", "choice", "arr", "integer"):
            state = _expand(top) + rest
            continue
        if tag == "lit":
            if top[1][0] != ch:
                return None
            return ((("lit", top[1][1:]),) if len(top[1]) > 1 else ()) + rest
        if tag == "int":
            _, lo, hi, text = top
            if ch in "-0123456789" and _int_prefix_ok(text + ch, lo, hi):
                return (("int", lo, hi, text + ch),) + rest
            if _int_complete(lo, hi, text):
                state = rest  # the number ended; the character belongs to what follows
                continue
            return None
        if tag == "str*":
            _, max_length, written = top
            if ch == '"':
                return rest
            if ch in PRINTABLE and written < max_length:
                return (("str*", max_length, written + 1),) + rest
            return None
        if tag == "choice*":
            typed = top[2] + ch
            if not any(o.startswith(typed) for o in top[1]):
                return None
            return rest if typed in top[1] else (("choice*", top[1], typed),) + rest
        if tag == "arr*":
            _, item, lo, hi, count, phase = top
            if ch == "]" and count >= lo:
                return rest
            if phase == "first" and hi >= 1:
                state = (item, ("arr*", item, lo, hi, 1, "after")) + rest
                continue
            if phase == "after" and ch == "," and count < hi:
                return (item, ("arr*", item, lo, hi, count + 1, "after")) + rest
            return None
        raise AssertionError(top)
    return None


def _int_prefix_ok(text, lo, hi) -> bool:
    """Some integer in [lo, hi], written as json.dumps writes it, starts with `text`."""
    negative = text.startswith("-")
    digits = text[1:] if negative else text
    if not digits:
        return not negative or lo <= -1
    if not digits.isdigit() or (digits[0] == "0" and (len(digits) > 1 or negative)):
        return False
    if digits == "0":
        return lo <= 0 <= hi
    value, width = int(digits), 1
    while True:  # extensions with m more digits: [value * 10**m, value * 10**m + 10**m - 1]
        low, high = value * width, value * width + width - 1
        if negative:
            low, high = -high, -low
            if high < lo:
                return False
        elif low > hi:
            return False
        if low <= hi and high >= lo:
            return True
        width *= 10


def _int_complete(lo, hi, text) -> bool:
    return _int_prefix_ok(text, lo, hi) and text not in ("", "-") and lo <= int(text) <= hi


def _int_can_extend(lo, hi, text) -> bool:
    return any(_int_prefix_ok(text + d, lo, hi) for d in "0123456789")


class JsonSchemaLogitsProcessor(transformers.LogitsProcessor):
    """Masks every token that would leave the schema's canonical documents."""

    def __init__(self, schema: dict, token_strings: list[str], eos_token_id: int, prompt_length: int):
        self.matcher = JsonPrefixMatcher(schema)
        self.token_strings = list(token_strings)
        self.eos_token_id = eos_token_id
        self.prompt_length = prompt_length
        self._masks = {}

    def __call__(self, input_ids: torch.LongTensor, scores: torch.FloatTensor) -> torch.FloatTensor:
        allowed = torch.zeros(scores.shape, dtype=torch.bool)
        for row in range(input_ids.shape[0]):
            ids = input_ids[row, self.prompt_length:].tolist()
            text = "".join(self.token_strings[i] for i in ids)
            if text not in self._masks:
                self._masks[text] = self._mask(text, scores.shape[1])
            allowed[row] = self._masks[text]
        return scores.masked_fill(~allowed.to(scores.device), float("-inf"))

    def _mask(self, text, vocab_size):
        m = self.matcher
        state = m._run(text)
        if state is None:
            raise ValueError(f"the generated text {text!r} is no prefix of a document of the schema")
        mask = torch.zeros(vocab_size, dtype=torch.bool)
        complete = m.is_complete(state)
        if not (complete and not m.can_extend(state)):
            for t, piece in enumerate(self.token_strings[:vocab_size]):
                s = state
                for ch in piece:
                    s = m.advance(s, ch)
                    if s is None:
                        break
                mask[t] = bool(piece) and s is not None
        if complete:
            mask[self.eos_token_id] = True
        return mask


class RubricScore(BaseModel):
    """One criterion's score from an LLM judge (given)."""

    criterion: Literal["helpfulness", "correctness", "clarity"]
    score: int = Field(ge=1, le=5)
    justification: str = Field(max_length=200)


def extract_json_object(text: str) -> str | None:
    for start, first in enumerate(text):
        if first != "{":
            continue
        depth, in_string, escaped = 0, False, False
        for end in range(start, len(text)):
            ch = text[end]
            if in_string:
                if escaped:
                    escaped = False
                elif ch == "\\":
                    escaped = True
                elif ch == '"':
                    in_string = False
            elif ch == '"':
                in_string = True
            elif ch == "{":
                depth += 1
            elif ch == "}":
                depth -= 1
                if depth == 0:
                    return text[start:end + 1]
    return None


def score_with_rubric(judge: Callable[[str], str], prompt: str, model_cls: type[BaseModel],
                      max_retries: int = 2) -> BaseModel:
    asked = prompt
    for _ in range(max_retries + 1):
        raw = extract_json_object(judge(asked))
        if raw is None:
            error = "no JSON object found"
        else:
            try:
                return model_cls.model_validate_json(raw)
            except ValidationError as exc:
                error = str(exc)
        asked = prompt + f"\n\nYour previous answer was invalid: {error}. Answer with JSON only."
    raise ValueError(f"no valid answer after {max_retries + 1} attempts: {error}")


def _paired(ab: list[str], ba: list[str]) -> None:
    if len(ab) != len(ba) or not ab:
        raise ValueError("ab and ba need the same, nonzero, number of verdicts")
    if any(v not in VERDICTS for v in list(ab) + list(ba)):
        raise ValueError(f"verdicts are '1', '2' or 'tie'")


def swap_consistency(ab: list[str], ba: list[str]) -> float:
    _paired(ab, ba)
    same = sum((x, y) in (("1", "2"), ("2", "1"), ("tie", "tie")) for x, y in zip(ab, ba))
    return same / len(ab)


def first_position_rate(ab: list[str], ba: list[str]) -> tuple[float, float]:
    from scipy.stats import binomtest

    _paired(ab, ba)
    decided = [v for v in list(ab) + list(ba) if v != "tie"]
    if not decided:
        raise ValueError("every verdict is a tie")
    first = decided.count("1")
    return first / len(decided), float(binomtest(first, len(decided), 0.5).pvalue)


def debiased_preferences(ab: list[str], ba: list[str]) -> list[float]:
    _paired(ab, ba)
    return [1.0 if (x, y) == ("1", "2") else 0.0 if (x, y) == ("2", "1") else 0.5 for x, y in zip(ab, ba)]


def soft_preference(logprob_model: float, logprob_baseline: float) -> float:
    z = logprob_model - logprob_baseline
    return 1.0 / (1.0 + math.exp(-z)) if z >= 0 else math.exp(z) / (1.0 + math.exp(z))


def length_controlled_win_rate(preferences: list[float], len_model: list[int],
                               len_baseline: list[int]) -> tuple[float, float]:
    p = np.asarray(preferences, dtype=np.float64)
    d = np.asarray(len_model, dtype=np.float64) - np.asarray(len_baseline, dtype=np.float64)
    if not (len(p) == len(len_model) == len(len_baseline)) or len(p) < 2:
        raise ValueError("need at least two pairs, with one preference and two lengths each")
    if ((p < 0) | (p > 1)).any():
        raise ValueError("preferences are probabilities in [0, 1]")
    sd = d.std(ddof=1)
    if sd == 0:
        raise ValueError("every length difference is the same: the length term cannot be fitted")
    X = np.stack([np.ones_like(d), np.tanh(d / sd)], axis=1)
    beta = np.zeros(2)
    for _ in range(100):  # Newton's method on the soft-label log-likelihood
        q = 1.0 / (1.0 + np.exp(-(X @ beta)))
        grad = X.T @ (p - q)
        hess = (X * (q * (1 - q))[:, None]).T @ X
        step = np.linalg.solve(hess, grad)
        beta = beta + step
        if np.abs(step).max() < 1e-12:
            break
    lc = 1.0 / (1.0 + math.exp(-beta[0]))
    return float(100 * p.mean()), float(100 * lc)
