"""Public tests for week8/react.

The model is a scripted fake: it replays canned responses and records every prompt it
receives, so the tests can see exactly what your loop showed it. The tools are small
test functions (a lookup table, a multiplier, one that always fails). The calculator is
checked against expression trees the test evaluates itself with the `operator` module.
"""

import operator

import pytest
from hypothesis import given, strategies as st

from graders import check, in_one_crossing, oracle, student, type_name, unwrap
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


@pytest.mark.points(1)
def test_parse_the_docstrings_worked_example():
    step = hinted("parse_case", react.parse_step,
                  "thought:  add them\nACTION : calculator\naction input: '2+2'\nObservation: 5")
    check_action(step, "calculator", "2+2", "parse_case", thought="add them")


@pytest.mark.points(1)
@pytest.mark.parametrize("text,final", [
    ("Thought: I could write Action: lookup here, but I will not.\nFinal Answer: 3", True),
    ("Thought: the last Observation: was empty\nAction: lookup\nAction Input: capital of France", False),
    ("Thought: sure\nFinal Answer: the key Action: is text here", True),
])
def test_parse_keys_count_only_at_the_start_of_a_line(text, final):
    step = hinted("key_mid_line", react.parse_step, text)
    if final:
        check.equal(kind(step), "FinalAnswer", what="parse_step's result type", hint="key_mid_line")
        check.equal(step.answer, text.split("Final Answer:", 1)[1].strip(), what="FinalAnswer.answer", hint="key_mid_line")
    else:
        check_action(step, "lookup", "capital of France", "key_mid_line",
                     thought="the last Observation: was empty")


@pytest.mark.points(1)
@pytest.mark.parametrize("text,answer", [
    ("Thought: done\nFinal Answer: first line\nsecond line\n\n", "first line\nsecond line"),
    ("final\tANSWER :   42  ", "42"),
])
def test_parse_final_answer_is_its_whole_stripped_value(text, answer):
    step = hinted("parse_fields", react.parse_step, text)
    check.equal(kind(step), "FinalAnswer", what="parse_step's result type", hint="parse_case")
    check.equal(step.answer, answer, what="FinalAnswer.answer", hint="parse_fields")


@pytest.mark.points(1)
def test_parse_takes_the_first_line_of_the_action_and_no_thought_is_empty():
    step = hinted("parse_fields", react.parse_step, "Action: lookup\nthe table tool\nAction Input: capital of France\n"
                                                    "more input on a second line")
    check_action(step, "lookup", "capital of France", "parse_fields", thought="")


@pytest.mark.points(1)
@pytest.mark.parametrize("value,expected", [
    ("\"'quoted'\"", "'quoted'"),     # one pair removed, the inner pair stays
    ("`2 + 2`", "2 + 2"),
    ("\"unbalanced'", "\"unbalanced'"),  # no matching pair: unchanged
    ("'unbalanced\"", "'unbalanced\""),  # (whichever of the two comes first)
    ("`2 + 2'", "`2 + 2'"),
    ("''", ""),                          # a bare pair: the empty input
    ("'", "'"),
])
def test_parse_removes_one_pair_of_quotes(value, expected):
    step = hinted("quotes", react.parse_step, f"Thought: t\nAction: 'lookup'\nAction Input: {value}")
    check_action(step, "lookup", expected, "quotes")


@pytest.mark.points(1)
def test_parse_the_first_occurrence_of_a_key_counts():
    text = ("Thought: first\nThought: second\nAction: lookup\nAction Input: one\n"
            "Action: multiply\nAction Input: two")
    check_action(hinted("repeated_keys", react.parse_step, text), "lookup", "one", "repeated_keys", thought="first")


def _parse_failure(text):
    """Glue: what parse_step raises for `text`, as (class names of the exception, its message); None
    if it returns."""
    try:
        unwrap(react.parse_step)(text)
    except NotImplementedError:
        raise
    except Exception as exc:  # noqa: BLE001 -- any exception is data here
        return [c.__name__ for c in type(exc).__mro__], str(exc)
    return None


@pytest.mark.points(1)
@pytest.mark.parametrize("text", [
    "I think the answer is 42.",
    "Thought: hmm\nAction: lookup",
    "Thought: hmm\nAction:\nAction Input: capital of France",
    "Action: lookup\nAction Input: x\nFinal Answer: Paris",
])
def test_parse_raises_parse_error_with_a_message(text):
    failure = in_one_crossing(react, _parse_failure, text)
    names, message = failure if failure is not None else (["nothing"], "")
    check.that(failure is not None, f"parse_step({text!r}) should raise ParseError, but it returned",
               hint="parse_malformed")
    check.that("ParseError" in names and "ValueError" in names,
               f"parse_step({text!r}) should raise ParseError (a ValueError subclass), raised {names[0]}",
               hint="parse_malformed")
    check.that(bool(message.strip()), f"the ParseError for {text!r} should say what is wrong (its message is empty)",
               hint="parse_malformed")


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


@pytest.mark.parametrize("observation", [
    pytest.param("Observation: Lyon", marks=pytest.mark.points(2), id="as_written"),
    pytest.param("  observation : Lyon", marks=pytest.mark.points(1), id="any_case_and_spacing"),
])
def test_agent_ignores_an_observation_written_by_the_model(observation):
    llm = ScriptedLLM([
        f"Thought: look it up\nAction: lookup\nAction Input: capital of France\n{observation}\nFinal Answer: Lyon",
        "Thought: The table says Paris.\nFinal Answer: Paris",
    ])
    answer = hinted("hallucinated_observation", react.run_agent, llm, dict(TOOLS), QUESTION)
    check.equal(answer, "Paris", what="run_agent's answer", hint="hallucinated_observation")
    check.that(len(llm.prompts) == 2 and "Observation: Paris" in llm.prompts[1] and "Lyon" not in llm.prompts[1],
               f"everything from the model's own {observation.strip()!r} line on must be cut, and the tool's "
               "observation (Paris) must take its place", hint="hallucinated_observation")
    check.that(len(llm.prompts) == 2 and "Observation: Paris" in llm.prompts[1] and "Lyon" not in llm.prompts[1],
               "the tool's observation (Paris) must replace the one the model invented (Lyon)",
               hint="hallucinated_observation")


@pytest.mark.points(1)
def test_agent_keeps_the_steps_in_order():
    llm = ScriptedLLM([
        step("Find the capital.", "lookup", "capital of France"),
        step("Now its population.", "lookup", "population of Paris"),
        step("Double it.", "multiply", "2161000, 2"),
        "Thought: I know the answer.\nFinal Answer: 4322000",
    ])
    react.run_agent(llm, dict(TOOLS), QUESTION)
    parts = [llm.responses[0], "Observation: Paris", llm.responses[1], "Observation: 2161000", llm.responses[2],
             "Observation: 4322000"]
    problem = oracle(order_problem, llm.prompts, parts)
    check.that(problem is None, problem, hint="observations_in_prompt")


def order_problem(prompts, parts):
    """None when the last prompt holds `parts` in this order; else what is wrong (only through oracle(...))."""
    last = prompts[-1] if prompts else ""
    where = [last.find(p) for p in parts]
    if -1 in where or where != sorted(where):
        return (f"the last prompt should hold the steps and observations in the order they happened: "
                f"{parts} found at {where} (-1: missing)")
    return None


@pytest.mark.points(1)
def test_agent_calls_the_tool_with_the_parsed_input_and_str_of_its_result():
    tools = {"echo": lambda text: f"echo<{text}>", "length": lambda text: len(text)}
    llm = ScriptedLLM([
        'Thought: echo it\nAction: echo\nAction Input: "2 + 2"   \nthat was the input',
        "Thought: count it\nAction: length\nAction Input: abcde",
        "Final Answer: done",
    ])
    answer = hinted("tool_input", react.run_agent, llm, tools, QUESTION)
    check.equal(answer, "done", what="run_agent's answer", hint="tool_input")
    check.that(len(llm.prompts) == 3 and "Observation: echo<2 + 2>" in llm.prompts[1],
               "the tool should get the parsed Action Input (first line, stripped, unquoted): expected "
               "'Observation: echo<2 + 2>' in the next prompt", hint="tool_input")
    check.that(len(llm.prompts) == 3 and "Observation: 5" in llm.prompts[2],
               "a tool's result is made a str for the observation: expected 'Observation: 5'", hint="tool_input")


@pytest.mark.points(1)
def test_unknown_tool_observation_lists_the_available_tools():
    llm = ScriptedLLM([step("Search the web.", "web_search", "capital of France"), "Final Answer: Paris"])
    react.run_agent(llm, dict(TOOLS), QUESTION)
    problem = oracle(unknown_tool_problem, llm.prompts, "web_search", list(TOOLS))
    check.that(problem is None, problem, hint="unknown_tool_message")


def unknown_tool_problem(prompts, unknown, names):
    """None when the 2nd prompt's error observation names `unknown` and every tool (only through oracle(...))."""
    after = prompts[1].split("Observation: Error", 1)[-1] if len(prompts) == 2 else ""
    observation = after.split("\n", 1)[0]
    if unknown in observation and all(name in observation for name in names):
        return None
    return (f"the observation for an unknown tool should name it and list the available tools {names}; "
            f"got 'Observation: Error{observation}'")


@pytest.mark.points(1)
def test_parse_error_observation_says_the_step_did_not_parse():
    llm = ScriptedLLM(["Paris, I believe.", "Final Answer: Paris"])
    react.run_agent(llm, dict(TOOLS), QUESTION)
    check.that(len(llm.prompts) == 2 and "Observation: Error: could not parse your step" in llm.prompts[1],
               "a step that does not parse should come back as 'Observation: Error: could not parse your step (...)'",
               hint="parse_error_recovery")


@pytest.mark.points(1)
def test_agent_default_max_steps_is_8():
    llm = ScriptedLLM([step("Again.", "lookup", "capital of France")] * 12)
    answer = react.run_agent(llm, dict(TOOLS), QUESTION)
    check.equal(len(llm.prompts), 8, what="number of model calls with the default max_steps", hint="max_steps")
    check.equal(answer, STOPPED, what="run_agent's result without a final answer", hint="max_steps")


@pytest.mark.points(1)
def test_agent_accepts_a_final_answer_at_the_last_step():
    llm = ScriptedLLM([step("Look.", "lookup", "capital of France")] * 2 + ["Final Answer: Paris"])
    answer = react.run_agent(llm, dict(TOOLS), QUESTION, max_steps=3)
    check.equal(answer, "Paris", what="run_agent's answer when the 3rd of max_steps=3 calls answers", hint="max_steps")


# --- build_prompt ----------------------------------------------------------------------------


def two_line_doc(text: str) -> str:
    """Reverse a string.

    This second line is detail the prompt may leave out.
    """
    return text[::-1]


@pytest.mark.points(1)
def test_build_prompt_lists_every_tool_with_its_docstring():
    tools = {"lookup": lookup, "reverse": two_line_doc, "nodoc": lambda text: text}
    prompt = hinted("tool_descriptions", react.build_prompt, QUESTION, tools, "")
    for name, doc in (("lookup", "Look a fact up in a small table."), ("reverse", "Reverse a string.")):
        check.that(name in prompt and doc in prompt,
                   f"the prompt should name the tool {name!r} with the first line of its docstring {doc!r}",
                   hint="tool_descriptions")
    check.that("nodoc" in prompt, "a tool without a docstring should still be named", hint="tool_descriptions")


@pytest.mark.points(1)
def test_build_prompt_holds_the_format_the_question_and_ends_with_the_scratchpad():
    scratchpad = step("Find the capital.", "lookup", "capital of France") + "\nObservation: Paris\n"
    prompt = react.build_prompt(QUESTION, dict(TOOLS), scratchpad)
    check.that(f"Question: {QUESTION}" in prompt, f"the prompt should contain 'Question: {QUESTION}'",
               hint="observations_in_prompt")
    check.that(all(key in prompt for key in ("Thought:", "Action:", "Action Input:", "Final Answer:")),
               "the prompt should show the format: Thought:, Action:, Action Input:, Final Answer:", hint="prompt_format")
    check.that(prompt.rstrip().endswith(scratchpad.rstrip()),
               "the prompt should end with the scratchpad, so that the model continues after it", hint="scratchpad_last")


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
    "().__class__", "[1, 2][0]", "2 ** 1000", "2 +", "lambda: 1", "1 if 2 else 3", "", "(1 + 2",
    "True + 1", "1j * 2", "None", "b'1' * 2",
])
def test_calculator_rejects_everything_else(text):
    hinted("calculator_safety", raises_value_error, react.calculator, text, "calculator_safety")


@pytest.mark.points(1)
@pytest.mark.parametrize("text,value", [("2 ** 100", 2 ** 100), ("2 ** -100", 2 ** -100), ("(-3) ** 100", (-3) ** 100),
                                        ("1.5 ** 100.0", 1.5 ** 100.0)])
def test_calculator_allows_exponents_up_to_100(text, value):
    got = hinted("exponent_limit", react.calculator, text)
    check.equal(got, str(value), what=f"calculator({text!r})", hint="exponent_limit")


@pytest.mark.points(1)
@pytest.mark.parametrize("text", ["2 ** 101", "2 ** -101", "9 ** 9 ** 9", "2 ** (50 + 51)", "10 ** 100.5"])
def test_calculator_rejects_exponents_over_100(text):
    hinted("exponent_limit", raises_value_error, react.calculator, text, "exponent_limit")


@pytest.mark.points(1)
@pytest.mark.parametrize("text", ["1 / 0", "5 // 0", "3 % 0", "2 * (1 / (3 - 3))"])
def test_calculator_division_by_zero_raises_zero_division_error(text):
    hinted("zero_division", raises_zero_division_error, react.calculator, text, "zero_division")


def raises_zero_division_error(fn, text, hint):
    with check.raises(ZeroDivisionError, hint=hint):
        fn(text)
