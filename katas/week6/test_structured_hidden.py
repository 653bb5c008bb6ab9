"""Hidden tests for week6/structured: fresh schemas (made by hypothesis), fresh integer ranges,
another schema and prompt for generation, fresh judge data. Expected values from the
regular-expression oracle, pydantic/jsonschema, scipy, sklearn and the reference."""

import random
from typing import Annotated, Literal

import pytest
import torch
from hypothesis import given, settings, strategies as st
from pydantic import BaseModel, Field

from graders import check, in_one_crossing, oracle, reference, student
from graders.testing import randn

from .test_structured import (EOS, _generate, _verdicts, batch_masks, char_rows, complete, document_problem, documents,
                              encode, mask_mistake, masked, random_verdicts, reask, simulated_judge, sklearn_lc,
                              token_strings, valid_prefix, _score)

pytestmark = pytest.mark.hidden

structured = student("week6.structured")
model_solution = reference("week6.structured")


# --- fresh schemas -----------------------------------------------------------------------------


@st.composite
def leaf_schemas(draw):
    kind = draw(st.sampled_from(["integer", "string", "enum", "boolean"]))
    if kind == "integer":
        lo = draw(st.integers(-300, 300))
        return {"type": "integer", "minimum": lo, "maximum": lo + draw(st.integers(0, 400))}
    if kind == "string":
        return {"type": "string", "maxLength": draw(st.integers(0, 4))}
    if kind == "enum":
        words = draw(st.lists(st.sampled_from(["a", "ab", "b", "yes", "no", "x y", "{}", "1"]), min_size=1, max_size=3,
                              unique=True))
        return {"type": "string", "enum": words}
    return {"type": "boolean"}


@st.composite
def object_schemas(draw):
    names = draw(st.lists(st.sampled_from(["a", "bb", "c_d", "key", "x"]), min_size=1, max_size=3, unique=True))
    props = {}
    for name in names:
        leaf = draw(leaf_schemas())
        if draw(st.booleans()):
            hi = draw(st.integers(0, 2))
            leaf = {"type": "array", "items": leaf, "minItems": draw(st.integers(0, hi)), "maxItems": hi}
        props[name] = leaf
    if draw(st.booleans()):  # a nested model by $ref
        return {"$defs": {"Inner": {"type": "object", "properties": props, "required": names, "title": "Inner"}},
                "type": "object", "properties": {"inner": {"$ref": "#/$defs/Inner"}, "flag": {"type": "boolean"}},
                "required": ["inner", "flag"], "title": "Outer"}
    return {"type": "object", "properties": props, "required": names, "title": "Fresh"}


@st.composite
def schema_and_document(draw):
    schema = draw(object_schemas())
    return schema, draw(documents(schema))


@pytest.mark.points(3)
@settings(max_examples=30)
@given(case=schema_and_document(), cut=st.integers(0, 200), junk=st.sampled_from([" ", ",", "0", "9", '"', "-", "]", "}", "a"]))
def test_hidden_fresh_schemas_prefixes_and_mutations(case, cut, junk):
    schema, doc = case
    at = cut % (len(doc) + 1)
    texts = [doc[:k] for k in range(len(doc) + 1)] + [doc[:at] + junk + doc[at:], doc[:at] + junk]
    got = in_one_crossing(structured, _verdicts, schema, texts)
    check.equal(got[0], oracle(lambda: [valid_prefix(schema, t) for t in texts]),
                what=f"is_valid_prefix of the prefixes of {doc!r} and two mutations, schema {schema}")
    check.equal(got[1], oracle(lambda: [complete(schema, t) for t in texts]),
                what=f"is_complete_document of the same texts, schema {schema}")


@pytest.mark.points(2)
@pytest.mark.parametrize("seed", [31, 32, 33, 34])
def test_hidden_fresh_integer_ranges(seed):
    rng = random.Random(seed)
    lo = rng.randint(-2000, 500)
    schema = {"type": "integer", "minimum": lo, "maximum": lo + rng.randint(0, 3000)}
    texts = ["", "-", "0", "-0", "00"] + [rng.choice(["", "-"]) + str(rng.randint(0, 5000))[:rng.randint(1, 4)]
                                          for _ in range(60)]
    got = in_one_crossing(structured, _verdicts, schema, texts)
    check.equal(got[0], oracle(lambda: [valid_prefix(schema, t) for t in texts]),
                what=f"is_valid_prefix in [{schema['minimum']}, {schema['maximum']}]", hint="integer_range_prefix")
    check.equal(got[1], oracle(lambda: [complete(schema, t) for t in texts]),
                what=f"is_complete_document in [{schema['minimum']}, {schema['maximum']}]", hint="integer_range_prefix")


# --- processor, another schema ------------------------------------------------------------------


class Recipe(BaseModel):
    dish: Literal["soup", "salad", "stew"]
    minutes: int = Field(ge=1, le=90)
    vegan: bool
    steps: list[Annotated[str, Field(max_length=3)]] = Field(min_length=1, max_length=2)


RECIPE = Recipe.model_json_schema()


@pytest.mark.points(2)
def test_hidden_processor_rows_of_a_fresh_schema():
    prompt = encode("Tom had a bowl. ")
    texts = ['{"dish":"sou', '{"dish":"sal', '{"dish":"ste']
    ids = char_rows(prompt, texts)
    scores = randn(3, 512, seed=41, dtype=torch.float64)
    proc = structured.JsonSchemaLogitsProcessor(RECIPE, token_strings(), EOS, len(prompt))
    out = proc(ids, scores.clone())  # (your processor may change its scores in place; these stay as made)
    check.equal(torch.isfinite(out), oracle(batch_masks, RECIPE, texts), what="kept tokens per row",
                hint=oracle(mask_mistake, torch.isfinite(out), RECIPE, texts))
    check.close(out, oracle(lambda: masked(scores, batch_masks(RECIPE, texts))), hint="kept_scores_changed")


@pytest.mark.points(2)
@pytest.mark.parametrize("text", ['{"dish":"soup","minutes":9', '{"dish":"soup","minutes":90',
                                  '{"dish":"stew","minutes":5,"vegan":true,"steps":[""', '{"dish":"stew","minutes":5,"vegan":true,"steps":["ab","c"]}'])
def test_hidden_processor_at_numbers_and_the_end(text):
    prompt = encode("Soup: ")
    ids = char_rows(prompt, [text])
    scores = randn(1, 512, seed=42)
    proc = structured.JsonSchemaLogitsProcessor(RECIPE, token_strings(), EOS, len(prompt))
    out = proc(ids, scores.clone())  # (your processor may change its scores in place; these stay as made)
    check.equal(torch.isfinite(out), oracle(batch_masks, RECIPE, [text]), what=f"kept tokens after {text!r}")


@pytest.mark.points(3)
def test_hidden_generated_recipes_validate():
    sampled = in_one_crossing(structured, _generate, RECIPE, "Tom had a bowl of ", 3, 7, True)
    for text, ended in sampled:
        check.that(oracle(document_problem, Recipe, RECIPE, text, ended) is None,
                   f"sampled output {text!r}: {oracle(document_problem, Recipe, RECIPE, text, ended)}",
                   hint="row_zero_mask")


# --- rubric -----------------------------------------------------------------------------------------


@pytest.mark.points(2)
@pytest.mark.parametrize("seed", [51, 52, 53])
def test_hidden_extract_json_object(seed):
    rng = random.Random(seed)
    parts = ["say ", "{", "}", '"', '\\"', "\\\\", "a", ":", " 1", ",", "{}", '"x}"', '"{y"', "[", "]"]
    for _ in range(30):
        text = "".join(rng.choice(parts) for _ in range(rng.randint(0, 14)))
        check.equal(structured.extract_json_object(text), model_solution.extract_json_object(text),
                    what=f"extract_json_object({text!r})", hint="braces_in_strings")


@pytest.mark.points(2)
def test_hidden_score_with_the_given_rubric_score():
    answers = ['```json\n{"criterion": "correctness", "score": 0, "justification": "wrong"}\n```',
               'Fine: {"criterion": "correctness", "score": 2, "justification": "half {right}"} ok']
    prompt = "Judge the correctness. JSON please."
    got = in_one_crossing(structured, _score, answers, prompt, None, 3)
    check.equal(got[0], oracle(lambda: ["RubricScore", {"criterion": "correctness", "score": 2,
                                                          "justification": "half {right}"}]), what="the validated answer")
    check.equal(got[1], oracle(lambda: [prompt, reask_given(prompt, answers[0])]), what="the prompts the judge saw",
                hint="reask_text")


class RubricScore(BaseModel):
    """A copy of the given class (pydantic's error text names the class)."""

    criterion: Literal["helpfulness", "correctness", "clarity"]
    score: int = Field(ge=1, le=5)
    justification: str = Field(max_length=200)


def reask_given(prompt, answer):
    """The re-ask after `answer`, with the given RubricScore's error text."""
    return reask(prompt, answer, RubricScore)


# --- judge statistics ---------------------------------------------------------------------------


@pytest.mark.points(2)
@pytest.mark.parametrize("seed", [61, 62, 63])
def test_hidden_judge_statistics(seed):
    ab, ba = random_verdicts(seed, 30 + seed % 7, first_bias=0.2)
    check.close(structured.swap_consistency(ab, ba), model_solution.swap_consistency(ab, ba),
                hint="swap_positions_unmapped")
    got = structured.first_position_rate(ab, ba)
    want = model_solution.first_position_rate(ab, ba)
    check.close(got[0], want[0], what="rate", hint="ties_counted")
    check.close(got[1], want[1], what="p-value", hint="binomial_one_sided")
    check.equal(structured.debiased_preferences(ab, ba), model_solution.debiased_preferences(ab, ba),
                hint="debias_one_order")


@pytest.mark.points(2)
@pytest.mark.parametrize("seed,n,mean_d", [(71, 200, 30.0), (72, 40, -60.0)])
def test_hidden_length_controlled_win_rate(seed, n, mean_d):
    prefs, lm, lb = simulated_judge(seed, n, theta=0.4, phi=1.0, mean_d=mean_d, sd_d=200.0)
    got = structured.length_controlled_win_rate(prefs, lm, lb)
    want = oracle(sklearn_lc, prefs, lm, lb)
    check.close(got[0], want[0], what="raw win rate", rtol=1e-6, atol=1e-6, reason="sklearn's tol=1e-10")
    check.close(got[1], want[1], what="LC win rate", rtol=1e-6, atol=1e-6, reason="sklearn's tol=1e-10",
                hint="lc_ddof")
