"""Structured outputs written differently: the schema becomes a regular expression of its
canonical documents, and a prefix is valid iff the `regex` module's partial matching says
some match can still start with it (the state is the text itself). The processor caches
each row's verdicts by text; the judge statistics use collections.Counter and scipy's
binomial distribution; the LC GLM is fitted with scipy.optimize.minimize (BFGS on the
exact gradient)."""

import json
import math
from collections import Counter
from typing import Any, Callable, Literal

import numpy as np
import regex
import torch
import transformers
from pydantic import BaseModel, Field, ValidationError

PRINTABLE = frozenset(chr(c) for c in range(0x20, 0x7F)) - {'"', "\\"}
VERDICTS = ("1", "2", "tie")

_META = {"title", "description"}


def _int_pattern(lo: int, hi: int) -> str:
    return "(?:" + "|".join(str(v) for v in range(lo, hi + 1)) + ")"


def _to_regex(schema: dict, defs: dict, stack: tuple) -> str:
    if not isinstance(schema, dict):
        raise ValueError("schema must be a dict")
    if "$ref" in schema:
        name = schema["$ref"].removeprefix("#/$defs/")
        if set(schema) - _META != {"$ref"} or name not in defs or name in stack:
            raise ValueError(f"bad $ref in {schema}")
        return _to_regex(defs[name], defs, stack + (name,))
    rest = {k: v for k, v in schema.items() if k not in _META and k != "$defs"}
    kind = rest.pop("type", None)
    if kind == "object":
        props = rest.pop("properties", {})
        required = rest.pop("required", [])
        if rest or sorted(required) != sorted(props):
            raise ValueError(f"unsupported object {schema}")
        body = ",".join(regex.escape(json.dumps(k)) + ":" + _to_regex(v, defs, stack) for k, v in props.items())
        return r"\{" + body + r"\}"
    if kind == "string":
        if set(rest) == {"enum"}:
            values = rest["enum"]
            if not values or any(not isinstance(v, str) or not set(v) <= PRINTABLE for v in values):
                raise ValueError(f"unsupported enum {schema}")
            return "(?:" + "|".join(regex.escape('"' + v + '"') for v in values) + ")"
        if set(rest) == {"maxLength"} and type(rest["maxLength"]) is int and rest["maxLength"] >= 0:
            return '"[ !#-\\[\\]-~]{0,' + str(rest["maxLength"]) + '}"'
        raise ValueError(f"unsupported string {schema}")
    if kind == "integer":
        if set(rest) != {"minimum", "maximum"} or type(rest["minimum"]) is not int or type(rest["maximum"]) is not int \
                or rest["minimum"] > rest["maximum"]:
            raise ValueError(f"unsupported integer {schema}")
        return _int_pattern(rest["minimum"], rest["maximum"])
    if kind == "boolean" and not rest:
        return "(?:true|false)"
    if kind == "array":
        items, hi, lo = rest.pop("items", None), rest.pop("maxItems", None), rest.pop("minItems", 0)
        if rest or items is None or type(hi) is not int or type(lo) is not int or not 0 <= lo <= hi:
            raise ValueError(f"unsupported array {schema}")
        item = _to_regex(items, defs, stack)
        if hi == 0:
            return r"\[\]"
        inner = "(?:" + item + "(?:," + item + "){" + str(max(lo - 1, 0)) + "," + str(hi - 1) + "})"
        return r"\[" + inner + ("?" if lo == 0 else "") + r"\]"
    raise ValueError(f"unsupported schema {schema}")


class JsonPrefixMatcher:
    def __init__(self, schema: dict):
        self.pattern = regex.compile(_to_regex(schema, schema.get("$defs", {}), ()))

    def start(self) -> Any:
        return ""

    def advance(self, state: Any, ch: str) -> Any | None:
        text = state + ch
        return text if self.pattern.fullmatch(text, partial=True) else None

    def is_complete(self, state: Any) -> bool:
        return self.pattern.fullmatch(state) is not None

    def can_extend(self, state: Any) -> bool:
        return any(self.pattern.fullmatch(state + chr(c), partial=True) for c in range(0x20, 0x7F))

    def is_valid_prefix(self, text: str) -> bool:
        return self.pattern.fullmatch(text, partial=True) is not None

    def is_complete_document(self, text: str) -> bool:
        return self.pattern.fullmatch(text) is not None


class JsonSchemaLogitsProcessor(transformers.LogitsProcessor):
    def __init__(self, schema: dict, token_strings: list[str], eos_token_id: int, prompt_length: int):
        self.m = JsonPrefixMatcher(schema)
        self.strings = list(token_strings)
        self.eos = eos_token_id
        self.start = prompt_length
        self.cache = {}

    def allowed(self, text: str, vocab: int) -> list[int]:
        if text not in self.cache:
            m = self.m
            if not m.is_valid_prefix(text):
                raise ValueError(f"row text {text!r} left the schema")
            done = m.is_complete(text)
            keep = []
            if not done or m.can_extend(text):
                keep = [t for t, s in enumerate(self.strings[:vocab]) if s and m.is_valid_prefix(text + s)]
            if done:
                keep.append(self.eos)
            self.cache[text] = keep
        return self.cache[text]

    def __call__(self, input_ids: torch.LongTensor, scores: torch.FloatTensor) -> torch.FloatTensor:
        out = torch.full_like(scores, float("-inf"))
        for b, row in enumerate(input_ids.tolist()):
            keep = self.allowed("".join(self.strings[t] for t in row[self.start:]), scores.shape[-1])
            out[b, keep] = scores[b, keep]
        return out


class RubricScore(BaseModel):
    """One criterion's score from an LLM judge (given).

    Its schema is in the subset too: `JsonSchemaLogitsProcessor(RubricScore.model_json_schema(), ...)`
    makes a local judge that always answers in this shape."""

    criterion: Literal["helpfulness", "correctness", "clarity"]
    score: int = Field(ge=1, le=5)
    justification: str = Field(max_length=200)


def extract_json_object(text: str) -> str | None:
    starts = [i for i, c in enumerate(text) if c == "{"]
    for s in starts:
        i, depth = s, 0
        while i < len(text):
            c = text[i]
            if c == '"':
                i += 1
                while i < len(text) and text[i] != '"':
                    i += 2 if text[i] == "\\" else 1
            elif c == "{":
                depth += 1
            elif c == "}":
                depth -= 1
                if not depth:
                    return text[s:i + 1]
            i += 1
    return None


def score_with_rubric(judge: Callable[[str], str], prompt: str, model_cls: type[BaseModel],
                      max_retries: int = 2) -> BaseModel:
    attempts, question, last = 0, prompt, ""
    while attempts <= max_retries:
        attempts += 1
        found = extract_json_object(judge(question))
        if found is not None:
            try:
                return model_cls.model_validate_json(found)
            except ValidationError as exc:
                last = str(exc)
        else:
            last = "no JSON object found"
        question = "".join([prompt, "\n\nYour previous answer was invalid: ", last, ". Answer with JSON only."])
    raise ValueError(last)


def _check(ab, ba):
    if not ab or len(ab) != len(ba) or not set(ab) | set(ba) <= set(VERDICTS):
        raise ValueError("bad verdicts")


def swap_consistency(ab: list[str], ba: list[str]) -> float:
    _check(ab, ba)
    flip = {"1": "2", "2": "1", "tie": "tie"}
    return sum(flip[y] == x for x, y in zip(ab, ba)) / len(ab)


def first_position_rate(ab: list[str], ba: list[str]) -> tuple[float, float]:
    from scipy.stats import binom

    _check(ab, ba)
    counts = Counter(ab) + Counter(ba)
    k, n = counts["1"], counts["1"] + counts["2"]
    if n == 0:
        raise ValueError("only ties")
    p = min(1.0, 2 * min(binom.cdf(k, n, 0.5), binom.sf(k - 1, n, 0.5)))  # symmetric: two-sided
    return k / n, float(p)


def debiased_preferences(ab: list[str], ba: list[str]) -> list[float]:
    _check(ab, ba)
    table = {("1", "2"): 1.0, ("2", "1"): 0.0}
    return [table.get(pair, 0.5) for pair in zip(ab, ba)]


def soft_preference(logprob_model: float, logprob_baseline: float) -> float:
    z = float(logprob_model) - float(logprob_baseline)
    return float(np.exp(-np.logaddexp(0.0, -z)))


def length_controlled_win_rate(preferences: list[float], len_model: list[int],
                               len_baseline: list[int]) -> tuple[float, float]:
    from scipy.optimize import minimize

    if len(preferences) != len(len_model) or len(len_model) != len(len_baseline) or len(preferences) < 2:
        raise ValueError("lengths differ or fewer than two pairs")
    p = np.array(preferences, dtype=float)
    if p.min() < 0 or p.max() > 1:
        raise ValueError("preferences must lie in [0, 1]")
    d = np.subtract(len_model, len_baseline).astype(float)
    n = len(d)
    sd = math.sqrt(((d - d.mean()) ** 2).sum() / (n - 1))
    if sd == 0:
        raise ValueError("constant length differences")
    x = np.tanh(d / sd)

    def loss(beta):
        eta = beta[0] + beta[1] * x
        return float(np.sum(np.logaddexp(0, eta) - p * eta))

    def grad(beta):
        r = 1 / (1 + np.exp(-(beta[0] + beta[1] * x))) - p
        return np.array([r.sum(), (r * x).sum()])

    fit = minimize(loss, np.zeros(2), jac=grad, method="BFGS", options={"gtol": 1e-11, "maxiter": 1000})
    return 100 * float(p.mean()), 100 / (1 + math.exp(-fit.x[0]))
