"""Kata: a ReAct agent loop (Yao et al., 2022).

A ReAct agent alternates reasoning and acting. The model writes a step as text:

    Thought: I need the population first.
    Action: lookup
    Action Input: population of Paris

the program runs the tool and appends `Observation: <result>` to the transcript, and the
model is called again with everything so far, until it writes

    Thought: I know the answer.
    Final Answer: 2.1 million

This kata is the plumbing around the model: parsing its steps robustly, running tools
safely, and keeping the loop bounded. The model is any `Callable[[str], str]` (the tests
use a scripted fake that replays canned responses and records the prompts it gets).

Must catch: crashing (instead of reporting back to the model) on an unknown tool, a tool
that raises, or a malformed step; observations missing from the next prompt; treating a
model-written (hallucinated) "Observation:" as real, or parsing past it; running past
max_steps; keys matched case-sensitively; a calculator built on eval().

Run time: `pytest katas/week8/test_react.py` takes about 4 s with a correct solution on a
2-core laptop CPU. Much longer means something in your code is slow (see the hints); a test
that runs past its limit fails with TIMEOUT, naming your function, and the kata's other
tests of that function are skipped.
"""
from dataclasses import dataclass
from typing import Callable

# What run_agent returns when max_steps model calls produced no Final Answer (given, not a task).
STOPPED = "Agent stopped: max_steps reached."


class ParseError(ValueError):
    """The model's text is not a well-formed ReAct step (a ValueError subclass)."""


@dataclass(frozen=True)
class Action:
    """A tool call: run `tools[tool](tool_input)`."""

    tool: str
    tool_input: str
    thought: str = ""


@dataclass(frozen=True)
class FinalAnswer:
    """The model's answer; the loop ends."""

    answer: str
    thought: str = ""


def parse_step(text: str) -> Action | FinalAnswer:
    """Parse one model output into an `Action` or a `FinalAnswer`; raise `ParseError` otherwise.

    Keys: `Thought:`, `Action:`, `Action Input:`, `Final Answer:` (and `Observation:`).
    - A key starts a line (leading spaces/tabs allowed); case is ignored; spaces/tabs are
      allowed between the words and before the colon (`action  input :` is a key).
      A key's value runs from its colon to the next key (or the end of the text).
    - Text before the first key and lines that start with no key are tolerated.
    - Everything from the first `Observation:` line on is ignored: observations come from
      the tools, never from the model, even if it writes one.
    - `Final Answer:` -> FinalAnswer(answer=its value, stripped; may span lines).
    - Otherwise `Action:` then `Action Input:` -> Action(tool=first line of the Action value,
      tool_input=first line of the Action Input value), both stripped and with one pair of
      surrounding quotes (" ' or `) removed: `Action Input: "2 + 2"` gives `2 + 2`.
    - `thought` is the first Thought's value, stripped ("" if none). If a key repeats,
      its first occurrence counts.
    ParseError (with a message saying what is wrong) when: there is neither an Action nor
    a Final Answer; an Action has no Action Input after it; the tool name is empty; both an
    Action and a Final Answer appear (before any Observation line).

    Worked example: "thought:  add them\\nACTION : calculator\\naction input: '2+2'\\nObservation: 5"
    -> Action(tool="calculator", tool_input="2+2", thought="add them").
    """
    raise NotImplementedError


def build_prompt(question: str, tools: dict[str, Callable[[str], str]], scratchpad: str) -> str:
    """The prompt for the next model call.

    Must contain: every tool's name (with the first line of its docstring, if any), the
    format above, `Question: <question>`, and the scratchpad (all previous steps with their
    observations) at the end, so the model continues after it.
    """
    raise NotImplementedError


def run_agent(
    llm: Callable[[str], str], tools: dict[str, Callable[[str], str]], question: str, max_steps: int = 8
) -> str:
    """Run the ReAct loop and return the final answer (a str).

    Each step: call `llm(build_prompt(question, tools, scratchpad))` exactly once; cut its
    output at the first `Observation:` line; parse it.
    - FinalAnswer -> return its answer.
    - Action -> observation = str(tools[tool](tool_input)).
      Unknown tool -> observation "Error: unknown tool '<name>'. Available tools: ..." .
      A tool that raises -> observation "Error: <ExceptionType>: <message>"; never crash.
    - ParseError -> observation "Error: could not parse your step (<message>). ..." .
    Then append "<the cut output>\\nObservation: <observation>\\n" to the scratchpad, so the
    next prompt contains every previous step and observation.
    At most `max_steps` model calls; if none gave a Final Answer, return `STOPPED`.
    """
    raise NotImplementedError


def calculator(expression: str) -> str:
    """A safe arithmetic tool: `calculator("2 * (3 + 4)") == "14"`.

    Supports int and float literals, + - * / // % **, unary + and -, parentheses, with
    Python's precedence and results (`str` of the Python value: "7 / 2" -> "3.5",
    "2 ** 10" -> "1024"). Anything else (names, calls, attributes, strings, ...) raises
    ValueError, as does an exponent whose absolute value exceeds 100 (keeps `9**9**9` from
    hanging the agent), and syntax errors. Never use eval/exec: the expression comes from
    a model, which may have read a malicious web page. Parse it yourself (a small
    recursive-descent parser) or walk `ast.parse(expression, mode="eval")`, allowing only
    the node types above. Division by zero raises ZeroDivisionError (run_agent reports it).
    """
    raise NotImplementedError
