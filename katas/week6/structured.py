"""Week 6 — structured outputs: JSON-schema-constrained decoding, rubric scores, judge statistics.

An application that reads a model's answer as data needs JSON that parses and fits a
schema, every time. Three tools, built here:

1. Constrained decoding (`JsonPrefixMatcher`, `JsonSchemaLogitsProcessor`): at every step
   of generation, mask each token that would make the text stop being the beginning of a
   valid document. What is left can only end as a valid document: even the course's tiny
   story model (`checkpoints/gpt2-tiny-trained`) then writes JSON that pydantic accepts.
   (This is what outlines, llguidance and vLLM's guided decoding do, with a compiled
   automaton instead of trying every token.)
2. LLM-as-a-judge with a schema (`RubricScore`, `extract_json_object`,
   `score_with_rubric`): when you cannot constrain the judge (an API model), pull the
   first JSON object out of its answer, validate it with pydantic, and re-ask with the
   error when it does not fit.
3. Judge statistics: judges prefer whatever is shown first, and longer answers. Measure it
   (`swap_consistency`, `first_position_rate`), cancel it (`debiased_preferences`,
   `soft_preference`) and correct for length (`length_controlled_win_rate`, AlpacaEval's
   length-controlled win rate, fitted without regularisation).

The schema subset (what pydantic v2's `Model.model_json_schema()` writes for these types;
"title" and "description" keys are ignored everywhere; anything else raises ValueError):

| JSON schema | pydantic | canonical text |
| --- | --- | --- |
| `{"type": "object", "properties": {...}, "required": [...]}`, every property required | a `BaseModel` (a field with a default is NOT required: ValueError) | `{"a":1,"b":true}` keys in the order of "properties" |
| `{"$ref": "#/$defs/Pet"}` | a nested model | the model's object |
| `{"type": "string", "maxLength": n}` | `str = Field(max_length=n)` | `"..."`, at most n characters, each 0x20-0x7E except `"` and `\\` (no escapes) |
| `{"type": "string", "enum": [...]}` | `Literal["cat", "dog"]` | one of the values, quoted |
| `{"type": "integer", "minimum": lo, "maximum": hi}` | `int = Field(ge=lo, le=hi)` | as `json.dumps` writes it: `0`, `-5`, `120` (no `+`, no leading zero, no `-0`) |
| `{"type": "boolean"}` | `bool` | `true` / `false` |
| `{"type": "array", "items": {...}, "maxItems": n}` (+ optional `"minItems"`) | `list[...] = Field(max_length=n)` | `[1,2]` |

Every string needs maxLength (or enum), every integer both bounds, every array maxItems:
so every document is finite, and generation always ends. The canonical form is
`json.dumps(obj, separators=(",", ":"))` with keys in schema order: no whitespace at all.
One form only, so the mask is small and a document is valid iff its every prefix is.

Tokens are strings here: `token_strings[t]` is token t decoded alone (the tests build it
from the tokenizer: `tokenizer.decode([t])`, or `""` for special tokens and for tokens whose
bytes are not valid UTF-8 alone, which the mask never allows).

Run the tests:   pytest katas/week6/test_structured.py
Hints:           kata hint week6/structured

Run time: `pytest katas/week6/test_structured.py` takes about 10 s with a correct solution
on a 2-core laptop CPU. Much longer means something in your code is slow (see the hints).
"""

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
    """Which texts begin (or are) a canonical JSON document of a schema.

    A *state* is whatever your matcher needs to remember after reading some text (a stack
    of what is still to be written, say). States are immutable values: `advance` returns a
    new state and never changes the one it is given, so the processor can try one state
    with every token of the vocabulary. A hashable state (a tuple) lets you memoise.

    A prefix is valid iff SOME continuation makes it a complete canonical document. For an
    integer that means: some digit extension of the text is in [minimum, maximum].
    Worked example, [0, 120]: "1", "12", "120", "13" are valid (13 itself is in range),
    "121" and "-" are not; "0" is complete and cannot extend ("01" is not JSON); "12" is
    complete and can extend ("120"). With [-5, 120]: "-" is valid, "-6" and "-0" are not.
    An integer ends where the next character is not part of it: '{"age":12}' is read as
    12, then "}".

    Worked example, Story{hero: Pet{kind: "cat"|"dog"|"owl", name: str <= 8},
    age: int -5..120, happy: bool, tags: list[str <= 4] <= 2}:
        '{"hero":{"kind":"cat","name":"Lily"},"age":3,"happy":true,"tags":["a","bb"]}'
    is complete and every prefix of it is valid; '{"hero": ' (a space), '{"age"' (keys out
    of order), '"name":"Lily the cat"' (9 characters over 8) are not valid prefixes.
    """

    def __init__(self, schema: dict):
        """Read `schema` (a dict, as `model_json_schema()` returns it; `$ref`s point into
        its "$defs"). Raise ValueError for anything outside the subset: a property that is
        not required, "anyOf" (Optional), "number", "const", a string without maxLength
        or enum, an integer without both bounds, an array without maxItems, ..."""
        raise NotImplementedError

    def start(self) -> Any:
        """The state before any text is read."""
        raise NotImplementedError

    def advance(self, state: Any, ch: str) -> Any | None:
        """The state after reading the one character `ch` in `state`, or None when no
        document begins with the text read so far + ch. Never changes `state`."""
        raise NotImplementedError

    def is_complete(self, state: Any) -> bool:
        """Whether the text read is a whole document (an integer at the top level is
        complete as soon as it is in range, though more digits may follow)."""
        raise NotImplementedError

    def can_extend(self, state: Any) -> bool:
        """Whether some character can still follow (False only at the end of a document
        that cannot grow: after the last "}", or after "0" at the top level)."""
        raise NotImplementedError

    def is_valid_prefix(self, text: str) -> bool:
        """Whether some document begins with `text` ("" is valid)."""
        raise NotImplementedError

    def is_complete_document(self, text: str) -> bool:
        """Whether `text` is exactly a canonical document of the schema."""
        raise NotImplementedError


class JsonSchemaLogitsProcessor(transformers.LogitsProcessor):
    """A transformers logits processor that keeps generation inside the schema.

    `model.generate(ids, logits_processor=LogitsProcessorList([processor]), ...)` calls
    `processor(input_ids, scores)` before choosing each token: `input_ids` [B, T] are the
    prompt and the tokens generated so far, `scores` [B, V] the next token's logits.

    Per row b, the text is the concatenation of `token_strings[t]` for the ids of row b
    AFTER `prompt_length` (the prompt is not JSON). Then:
    - token t keeps its score iff text + token_strings[t] is a valid prefix. Check the
      WHOLE token string: '",' closes a string AND starts the next member, and must fit
      both ("" is never allowed: it would not move);
    - eos_token_id keeps its score iff the text is a complete document; when the document
      is complete and cannot extend, eos is the only token left (the integer root "12" in
      [0, 120] keeps eos and the "0" token; "120" keeps only eos);
    - every other score becomes -inf. The kept scores are unchanged (no renormalising).

    Every row has its own text and its own mask (a batch of 4 samples diverges after one
    step). Return a tensor of the shape and dtype of `scores` (a new one, or `scores`
    changed in place). A row whose text is not a valid prefix raises ValueError.
    """

    def __init__(self, schema: dict, token_strings: list[str], eos_token_id: int, prompt_length: int):
        """`schema` as for JsonPrefixMatcher; `token_strings[t]` token t's text ("" for
        special tokens and bytes that are not UTF-8 alone); `prompt_length` the number of
        prompt tokens at the start of every row."""
        raise NotImplementedError

    def __call__(self, input_ids: torch.LongTensor, scores: torch.FloatTensor) -> torch.FloatTensor:
        """`scores` [B, V] with every token that leaves the schema at -inf (see the class)."""
        raise NotImplementedError


class RubricScore(BaseModel):
    """One criterion's score from an LLM judge (given).

    Its schema is in the subset too: `JsonSchemaLogitsProcessor(RubricScore.model_json_schema(), ...)`
    makes a local judge that always answers in this shape."""

    criterion: Literal["helpfulness", "correctness", "clarity"]
    score: int = Field(ge=1, le=5)
    justification: str = Field(max_length=200)


def extract_json_object(text: str) -> str | None:
    """The first balanced {...} of `text`, as it is written there; None if there is none.

    Scan from the first "{": count "{" +1 and "}" -1, and the object ends where the count
    returns to 0. Braces inside JSON strings do not count: a '"' opens a string, and a '"'
    that is not escaped (after an odd number of backslashes) closes it. A "{" that never
    closes is skipped: the search goes on from the next "{".

    Worked example:
        'Sure! {"why": "use {x} \\"}\\"", "score": 4} hope it helps {}'
        -> '{"why": "use {x} \\"}\\"", "score": 4}'
    (whether the object is valid JSON is for pydantic to say, not this function.)
    """
    raise NotImplementedError


def score_with_rubric(judge: Callable[[str], str], prompt: str, model_cls: type[BaseModel],
                      max_retries: int = 2) -> BaseModel:
    """Ask `judge` (a function: prompt text -> answer text) and return its answer as a
    `model_cls` instance, re-asking when it does not fit.

    Each attempt: answer = judge(asked); raw = extract_json_object(answer); if raw is None
    the error is "no JSON object found", else `model_cls.model_validate_json(raw)` either
    returns the result or raises a pydantic ValidationError, whose `str(exc)` is the error.
    The first attempt asks `prompt`; every re-ask asks the ORIGINAL prompt plus the latest
    error:

        prompt + f"\\n\\nYour previous answer was invalid: {error}. Answer with JSON only."

    At most 1 + max_retries attempts (max_retries=2: the judge is called 3 times at most,
    max_retries=0: once); when all fail, raise ValueError naming the last error.
    """
    raise NotImplementedError


def swap_consistency(ab: list[str], ba: list[str]) -> float:
    """The share of pairs whose two verdicts agree once positions are mapped back.

    Verdicts are positional: "1" (the answer shown first wins), "2" or "tie". `ab[i]` was
    judged with A shown first, `ba[i]` with B first, so "A wins" reads "1" in ab and "2"
    in ba. Consistent pairs: ("1", "2"), ("2", "1"), ("tie", "tie"). ("1", "1") is the
    judge picking whatever came first. Example: ab = ["1", "1", "tie"], ba = ["2", "1",
    "tie"] -> 2/3. ValueError for lists of different lengths, empty lists, or a verdict
    other than "1", "2", "tie" (the same for the next two functions).
    """
    raise NotImplementedError


def first_position_rate(ab: list[str], ba: list[str]) -> tuple[float, float]:
    """(share of decided verdicts that pick position 1, two-sided binomial p-value vs 0.5).

    Pool both orders (ab + ba), leave ties out: k = number of "1", n = number of non-ties;
    rate = k / n and the p-value is the two-sided exact binomial test of k successes in n
    trials with p = 0.5 (scipy.stats.binomtest(k, n).pvalue): a judge can be biased
    towards either position. ValueError when every verdict is a tie.
    Example: ab = ["1", "1", "tie"], ba = ["1", "2", "tie"] -> rate 3/4.
    """
    raise NotImplementedError


def debiased_preferences(ab: list[str], ba: list[str]) -> list[float]:
    """Per pair, the preference for A that survives swapping: 1.0 if A wins in both orders
    (ab[i] == "1" and ba[i] == "2"), 0.0 if A loses in both, otherwise 0.5 (a tie, or a
    judge that only followed the position)."""
    raise NotImplementedError


def soft_preference(logprob_model: float, logprob_baseline: float) -> float:
    """sigmoid(logprob_model - logprob_baseline) = P(judge says model), from the judge's
    log-probabilities of the two verdict tokens. A Python float in [0, 1], also for
    differences of +-1000 (no OverflowError: never exp of a large positive number)."""
    raise NotImplementedError


def length_controlled_win_rate(preferences: list[float], len_model: list[int],
                               len_baseline: list[int]) -> tuple[float, float]:
    """(raw win rate, length-controlled win rate), both in percent.

    preferences[i] in [0, 1] is how much the judge preferred the model's answer i (soft:
    0.5 is a tie, 0.73 a soft_preference). d = len_model - len_baseline (characters),
    x = tanh(d / std(d, ddof=1)) (the sample std: `np.std(d, ddof=1)`, NOT numpy's default).
    Fit p_i ~ sigmoid(theta + phi * x_i) by unregularised maximum likelihood with the soft
    labels as they are (never rounded):
        maximise sum_i  p_i log sigmoid(eta_i) + (1 - p_i) log(1 - sigmoid(eta_i)),
        eta_i = theta + phi * x_i
    (Newton's method: gradient X^T (p - q), Hessian X^T diag(q(1-q)) X, X = [1, x].)
    raw = 100 * mean(p); LC = 100 * sigmoid(theta): the win rate the judge would give at
    zero length difference. Longer answers win more raw votes; LC takes that away.
    ValueError for fewer than two pairs, lists of different lengths, a preference outside
    [0, 1], or length differences that are all equal (std 0).
    """
    raise NotImplementedError
