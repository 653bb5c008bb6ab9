"""Public tests for week8/react.

The model is a scripted fake: it replays canned responses and records every prompt it
receives, so the tests can see exactly what your loop showed it. The tools are small
test functions (a lookup table, a multiplier, one that always fails). The calculator is
checked against expression trees the test evaluates itself with the `operator` module.
"""

import operator

import pytest
from hypothesis import given, strategies as st

from graders import check, student, type_name
from graders.testing import hinted

react = student("week8.react")

STOPPED = "Agent stopped: max_steps reached."  # the contract's value of react.STOPPED


def raises_value_error(fn, text, hint):
    with check.raises(ValueError, hint=hint):
        fn(text)


def kind(step):
    return type_name(step)


def check_action(step, tool, tool_input, hint, thought=None):
    check.equal(kind(step), "Action", what="parse_step's result type", hint=hint)
    check.equal(step.tool, tool, what="Action.tool", hint=hint)
    check.equal(step.tool_input, tool_input, what="Action.tool_input", hint=hint)
    if thought is not None:
        check.equal(step.thought, thought, what="Action.thought", hint=hint)


# --- parse_step ------------------------------------------------------------------------------


@pytest.mark.points(1)
def test_parse_a_well_formed_action():
    step = react.parse_step("Thought: I need the capital first.\nAction: lookup\nAction Input: capital of France\n")
    check_action(step, "lookup", "capital of France", "parse_fields", thought="I need the capital first.")


@pytest.mark.points(1)
def test_parse_a_final_answer():
    step = react.parse_step("Thought: I know it now.\nFinal Answer: Paris, France\n")
    check.equal(kind(step), "FinalAnswer", what="parse_step's result type", hint="parse_fields")
    check.equal(step.answer, "Paris, France", what="FinalAnswer.answer", hint="parse_fields")
    check.equal(step.thought, "I know it now.", what="FinalAnswer.thought", hint="parse_fields")


@pytest.mark.points(2)
@pytest.mark.parametrize("text", [
    "thought: look it up\naction: lookup\naction input: capital of France",
    "THOUGHT:look it up\nACTION :lookup\nACTION INPUT :   capital of France   ",
    "Thought : look it up\n  Action:   lookup  \n\tAction  Input:capital of France\n\n",
    "Final answer coming soon.\nThought: look it up\nAction: lookup\nAction Input: capital of France",
])
def test_parse_tolerates_case_and_spacing(text):
    check_action(hinted("parse_case", react.parse_step, text), "lookup", "capital of France", "parse_case",
                 thought="look it up")


@pytest.mark.points(1)
@pytest.mark.parametrize("text", [
    'Thought: quote it\nAction: "lookup"\nAction Input: "capital of France"',
    "Thought: quote it\nAction: `lookup`\nAction Input: 'capital of France'\nI will wait for the result.",
])
def test_parse_strips_quotes_and_ignores_trailing_text(text):
    check_action(hinted("parse_fields", react.parse_step, text), "lookup", "capital of France", "parse_fields")


@pytest.mark.points(2)
def test_parse_stops_at_a_hallucinated_observation():
    text = ("Thought: look it up\nAction: lookup\nAction Input: capital of France\n"
            "Observation: Lyon\nThought: I know it\nFinal Answer: Lyon")
    step = hinted("hallucinated_observation", react.parse_step, text)
    check_action(step, "lookup", "capital of France", "hallucinated_observation")


@pytest.mark.points(2)
@pytest.mark.parametrize("text", [
    "",
    "I think the answer is 42.",
    "Thought: I should use a tool.",
    "Thought: hmm\nAction: lookup",
    "Action Input: capital of France\nAction: lookup",
    "Thought: hmm\nAction:\nAction Input: capital of France",
    "Action: lookup\nAction Input: x\nFinal Answer: Paris",
])
def test_parse_rejects_malformed_steps(text):
    hinted("parse_malformed", raises_value_error, react.parse_step, text, "parse_malformed")


# --- run_agent ------------------------------------------------------------------------------


class ScriptedLLM:
    """Replays canned responses in order and keeps every prompt it was given."""

    def __init__(self, responses):
        self.responses = list(responses)
        self.prompts = []

    def __call__(self, prompt):
        self.prompts.append(prompt)
        if len(self.prompts) > len(self.responses):
            return "Thought: I have nothing more to say.\nAction: lookup\nAction Input: nothing"
        return self.responses[len(self.prompts) - 1]


FACTS = {"capital of france": "Paris", "population of paris": "2161000"}


def lookup(query: str) -> str:
    """Look a fact up in a small table."""
    return FACTS[query.strip().lower()]


def multiply(args: str) -> str:
    """Multiply two integers given as 'a, b'."""
    a, b = (int(x) for x in args.split(","))
    return str(a * b)


def broken(_: str) -> str:
    """A tool that always fails."""
    raise RuntimeError("disk on fire")


TOOLS = {"lookup": lookup, "multiply": multiply, "broken": broken}
QUESTION = "What is twice the population of the capital of France?"


def step(thought, tool, tool_input):
    return f"Thought: {thought}\nAction: {tool}\nAction Input: {tool_input}"


@pytest.mark.points(3)
def test_agent_reaches_the_answer_and_shows_every_observation():
    llm = ScriptedLLM([
        step("Find the capital.", "lookup", "capital of France"),
        step("Now its population.", "lookup", "population of Paris"),
        step("Double it.", "multiply", "2161000, 2"),
        "Thought: I know the answer.\nFinal Answer: 4322000",
    ])
    answer = react.run_agent(llm, dict(TOOLS), QUESTION)
    check.equal(answer, "4322000", what="run_agent's answer")
    check.equal(len(llm.prompts), 4, what="number of model calls")
    observations = ["Paris", "2161000", "4322000"]
    for k, prompt in enumerate(llm.prompts):
        check.that(QUESTION in prompt, f"prompt {k + 1} should contain the question", hint="observations_in_prompt")
        for obs in observations[:k]:
            check.that(f"Observation: {obs}" in prompt,
                       f"prompt {k + 1} should contain every earlier observation, but 'Observation: {obs}' is missing",
                       hint="observations_in_prompt")
        for earlier in llm.responses[:k]:
            check.that(earlier in prompt, f"prompt {k + 1} should contain the model's earlier step {earlier!r}",
                       hint="observations_in_prompt")
    for name in TOOLS:
        check.that(name in llm.prompts[0], f"the first prompt should name the tool {name!r}")


@pytest.mark.points(2)
def test_tool_errors_become_observations():
    llm = ScriptedLLM([
        step("Try a tool that does not exist.", "search", "capital of France"),
        step("Try the broken tool.", "broken", "anything"),
        step("Ask the table something it lacks.", "lookup", "capital of Atlantis"),
        "Final Answer: I could not find out.",
    ])
    answer = hinted("tool_errors", react.run_agent, llm, dict(TOOLS), QUESTION)
    check.equal(answer, "I could not find out.", what="run_agent's answer", hint="tool_errors")
    check.equal(len(llm.prompts), 4, what="number of model calls", hint="tool_errors")
    check.that("Observation: Error" in llm.prompts[1] and "search" in llm.prompts[1].split("Observation: Error", 1)[1],
               "after an unknown tool the next prompt should hold 'Observation: Error: unknown tool ...' naming it",
               hint="tool_errors")
    check.that("Observation: Error: RuntimeError: disk on fire" in llm.prompts[2],
               "a tool that raises should give 'Observation: Error: RuntimeError: disk on fire'", hint="tool_errors")
    check.that("Observation: Error: KeyError" in llm.prompts[3],
               "a lookup that raises KeyError should give 'Observation: Error: KeyError: ...'", hint="tool_errors")


@pytest.mark.points(2)
@pytest.mark.parametrize("max_steps", [1, 3])
def test_agent_stops_at_max_steps(max_steps):
    llm = ScriptedLLM([step("Again.", "lookup", "capital of France")] * 10)
    answer = react.run_agent(llm, dict(TOOLS), QUESTION, max_steps=max_steps)
    check.equal(len(llm.prompts), max_steps, what="number of model calls", hint="max_steps")
    check.equal(answer, STOPPED, what="run_agent's result without a final answer", hint="max_steps")


@pytest.mark.points(1)
def test_agent_reports_parse_errors_and_continues():
    llm = ScriptedLLM(["I am fairly sure it is Paris.", "Thought: Use the format.\nFinal Answer: Paris"])
    answer = hinted("parse_error_recovery", react.run_agent, llm, dict(TOOLS), QUESTION)
    check.equal(answer, "Paris", what="run_agent's answer", hint="parse_error_recovery")
    check.that(len(llm.prompts) == 2 and "Observation: Error" in llm.prompts[1],
               "a step that does not parse should come back as 'Observation: Error: ...'", hint="parse_error_recovery")


@pytest.mark.points(2)
def test_agent_ignores_an_observation_written_by_the_model():
    llm = ScriptedLLM([
        "Thought: look it up\nAction: lookup\nAction Input: capital of France\nObservation: Lyon\nFinal Answer: Lyon",
        "Thought: The table says Paris.\nFinal Answer: Paris",
    ])
    answer = hinted("hallucinated_observation", react.run_agent, llm, dict(TOOLS), QUESTION)
    check.equal(answer, "Paris", what="run_agent's answer", hint="hallucinated_observation")
    check.that(len(llm.prompts) == 2 and "Observation: Paris" in llm.prompts[1] and "Lyon" not in llm.prompts[1],
               "the tool's observation (Paris) must replace the one the model invented (Lyon)",
               hint="hallucinated_observation")


# --- calculator ------------------------------------------------------------------------------

BINARY = {"+": operator.add, "-": operator.sub, "*": operator.mul, "/": operator.truediv,
          "//": operator.floordiv, "%": operator.mod, "**": operator.pow}


@st.composite
def expressions(draw, depth=3):
    """(text, value): a random fully parenthesised expression and its value, computed here."""
    if depth == 0 or draw(st.integers(0, 3)) == 0:
        if draw(st.booleans()):
            n = draw(st.integers(0, 50))
        else:
            n = draw(st.sampled_from([0.5, 1.25, 2.0, 3.75]))
        return str(n), n
    if draw(st.integers(0, 5)) == 0:
        text, value = draw(expressions(depth=depth - 1))
        return f"-({text})", -value
    op = draw(st.sampled_from(sorted(BINARY)))
    left, lv = draw(expressions(depth=depth - 1))
    if op == "**":
        e = draw(st.integers(0, 3))
        right, rv = str(e), e
        if lv == 0 or abs(lv) > 1e6:
            left, lv = "2", 2
    else:
        right, rv = draw(expressions(depth=depth - 1))
    if op in ("/", "//", "%") and rv == 0:
        right, rv = "7", 7
    space = draw(st.sampled_from(["", " ", "  "]))
    return f"({left}){space}{op}{space}({right})", BINARY[op](lv, rv)


@pytest.mark.points(2)
@given(expr=expressions())
def test_calculator_evaluates_arithmetic(expr):
    text, value = expr
    check.equal(react.calculator(text), str(value), what=f"calculator({text!r})", hint="calculator_arithmetic")


@pytest.mark.points(1)
@pytest.mark.parametrize("text,value", [
    ("2 + 3 * 4", 2 + 3 * 4), ("-2 ** 2", -2 ** 2), ("2 ** 3 ** 2", 2 ** 3 ** 2), ("7 // 2 % 3", 7 // 2 % 3),
    ("(1 + 2) * -3", (1 + 2) * -3), ("7 / 2", 7 / 2), ("10 - 4 - 3", 10 - 4 - 3), (" 1.5*4 ", 1.5 * 4),
])
def test_calculator_precedence(text, value):
    check.equal(react.calculator(text), str(value), what=f"calculator({text!r})", hint="calculator_arithmetic")


@pytest.mark.points(2)
@pytest.mark.parametrize("text", [
    "__import__('os').system('echo hacked')", "open('/etc/passwd').read()", "x + 1", "'a' * 3",
    "().__class__", "[1, 2][0]", "2 ** 1000", "2 +", "lambda: 1", "1 if 2 else 3",
])
def test_calculator_rejects_everything_else(text):
    hinted("calculator_safety", raises_value_error, react.calculator, text, "calculator_safety")
