"""Hidden tests for week8/react: fresh transcripts, expected parses from the reference."""

import pytest
from hypothesis import given, strategies as st

from graders import check, reference, student

from .test_react import STOPPED, TOOLS, ScriptedLLM, kind, step

pytestmark = pytest.mark.hidden

react = student("week8.react")
ref = reference("week8.react")

def sloppy(key, draw):
    key = draw(st.sampled_from([key, key.lower(), key.upper(), key.replace(" ", "  ")]))
    return draw(st.sampled_from(["", " ", "\t"])) + key + draw(st.sampled_from([":", " :", ":  "]))


@pytest.mark.points(2)
@given(data=st.data(), tool=st.sampled_from(["lookup", "multiply", "web_search"]),
       tool_input=st.sampled_from(["capital of France", "3, 14", "x"]), final=st.booleans(),
       preamble=st.sampled_from(["", "Sure.\n", "\n\n"]), tail=st.sampled_from(["", "\nObservation: fake\nFinal Answer: no"]))
def test_hidden_sloppy_transcripts(data, tool, tool_input, final, preamble, tail):
    thought = f"{sloppy('Thought', data.draw)} think about {tool}\n"
    if final:
        text = preamble + thought + f"{sloppy('Final Answer', data.draw)} {tool_input}"
    else:
        text = (preamble + thought + f"{sloppy('Action', data.draw)} {tool}\n"
                + f"{sloppy('Action Input', data.draw)} {tool_input}" + tail)
    got, want = react.parse_step(text), ref.parse_step(text)
    check.equal(kind(got), "FinalAnswer" if final else "Action", what="parse_step's result type", hint="parse_case")
    if final:
        check.equal(got.answer, tool_input, what="FinalAnswer.answer", hint="parse_case")
        check.equal(got.answer, want.answer, what="FinalAnswer.answer", hint="parse_fields")
    else:
        check.equal((got.tool, got.tool_input), (tool, tool_input), what="(tool, tool_input)", hint="parse_case")
        check.equal((got.tool, got.tool_input, got.thought), (want.tool, want.tool_input, want.thought),
                    what="(tool, tool_input, thought)", hint="parse_fields")


@pytest.mark.points(2)
def test_hidden_longer_episode():
    llm = ScriptedLLM([
        "thought: start\naction: lookup\naction input: 'capital of France'",
        step("Bad tool.", "wikipedia", "Paris"),
        "no format at all",
        step("Multiply.", "multiply", "3, 14"),
        "Thought: done\nFinal Answer:  42 ",
    ])
    answer = react.run_agent(llm, dict(TOOLS), "Which number?", max_steps=6)
    check.equal(answer, "42", what="run_agent's answer")
    check.equal(len(llm.prompts), 5, what="number of model calls", hint="max_steps")
    check.that("Observation: 42" in llm.prompts[4] and "Observation: Paris" in llm.prompts[4],
               "the last prompt should hold every earlier observation", hint="observations_in_prompt")


@pytest.mark.points(1)
def test_hidden_max_steps_zero_calls_nothing():
    llm = ScriptedLLM(["Final Answer: too late"])
    check.equal(react.run_agent(llm, dict(TOOLS), "q", max_steps=0), STOPPED, hint="max_steps")
    check.equal(len(llm.prompts), 0, what="number of model calls", hint="max_steps")


@pytest.mark.points(1)
@pytest.mark.parametrize("text", ["((2))", "3 % 5 * 2 ** 2", "-(-(4)) // 3", "1e3 + 1", "2 * (3 + 4) - 5 / 2"])
def test_hidden_calculator_matches_reference(text):
    check.equal(react.calculator(text), ref.calculator(text), what=f"calculator({text!r})", hint="calculator_arithmetic")
