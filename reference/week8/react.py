"""A ReAct agent loop (reference solution)."""
import ast
import operator
import re
from dataclasses import dataclass
from typing import Callable

STOPPED = "Agent stopped: max_steps reached."


class ParseError(ValueError):
    """The model's text is not a well-formed ReAct step."""


@dataclass(frozen=True)
class Action:
    tool: str
    tool_input: str
    thought: str = ""


@dataclass(frozen=True)
class FinalAnswer:
    answer: str
    thought: str = ""


_KEY = re.compile(r"^[ \t]*(thought|action[ \t]*input|action|final[ \t]*answer|observation)[ \t]*:", re.I | re.M)


def _fields(text: str) -> list[tuple[str, str]]:
    """(key, value) in order; key normalised to 'thought', 'action', 'action input', 'final answer'."""
    found = []
    matches = list(_KEY.finditer(text))
    for m, nxt in zip(matches, matches[1:] + [None]):
        key = " ".join(m.group(1).lower().split())
        if key == "observation":
            break
        value = text[m.end() : nxt.start() if nxt else len(text)]
        found.append((key, value.strip()))
    return found


def _first_line(s: str) -> str:
    return s.splitlines()[0].strip() if s else ""


def _unquote(s: str) -> str:
    if len(s) >= 2 and s[0] == s[-1] and s[0] in "\"'`":
        return s[1:-1].strip()
    return s


def parse_step(text: str) -> Action | FinalAnswer:
    fields = _fields(text)
    keys = [k for k, _ in fields]
    first = dict(reversed(fields))  # the first occurrence of each key wins
    thought = first.get("thought", "")
    if "final answer" in first:
        if "action" in first:
            raise ParseError("the step has both an Action and a Final Answer; give one of them")
        return FinalAnswer(answer=first["final answer"], thought=thought)
    if "action" not in first:
        raise ParseError("no 'Action:' or 'Final Answer:' line found")
    if "action input" not in first or keys.index("action input") < keys.index("action"):
        raise ParseError("'Action:' must be followed by an 'Action Input:' line")
    tool = _unquote(_first_line(first["action"]))
    if not tool:
        raise ParseError("'Action:' names no tool")
    return Action(tool=tool, tool_input=_unquote(_first_line(first["action input"])), thought=thought)


def _describe(name: str, fn: Callable) -> str:
    doc = (getattr(fn, "__doc__", None) or "").strip()
    return f"{name}: {doc.splitlines()[0]}" if doc else name


def build_prompt(question: str, tools: dict[str, Callable[[str], str]], scratchpad: str) -> str:
    tool_lines = "\n".join(_describe(name, fn) for name, fn in tools.items())
    return (
        "Answer the question. You can use these tools:\n"
        f"{tool_lines}\n\n"
        "Use this format:\n"
        "Thought: what to do next\n"
        "Action: the tool name\n"
        "Action Input: the tool's input\n"
        "Observation: the tool's result (written for you)\n"
        "... (Thought/Action/Action Input/Observation repeat)\n"
        "Thought: I know the answer\n"
        "Final Answer: the answer\n\n"
        f"Question: {question}\n"
        f"{scratchpad}"
    )


def _cut_at_observation(text: str) -> str:
    m = re.search(r"^[ \t]*observation[ \t]*:", text, re.I | re.M)
    return text[: m.start()] if m else text


def run_agent(
    llm: Callable[[str], str], tools: dict[str, Callable[[str], str]], question: str, max_steps: int = 8
) -> str:
    scratchpad = ""
    for _ in range(max_steps):
        output = _cut_at_observation(llm(build_prompt(question, tools, scratchpad))).strip()
        try:
            step = parse_step(output)
        except ParseError as err:
            observation = f"Error: could not parse your step ({err}). Use the format above."
        else:
            if isinstance(step, FinalAnswer):
                return step.answer
            if step.tool not in tools:
                observation = f"Error: unknown tool {step.tool!r}. Available tools: {', '.join(tools)}."
            else:
                try:
                    observation = str(tools[step.tool](step.tool_input))
                except Exception as err:  # the model should see the failure and recover
                    observation = f"Error: {type(err).__name__}: {err}"
        scratchpad += f"{output}\nObservation: {observation}\n"
    return STOPPED


_BINARY = {ast.Add: operator.add, ast.Sub: operator.sub, ast.Mult: operator.mul, ast.Div: operator.truediv,
           ast.Pow: operator.pow, ast.Mod: operator.mod, ast.FloorDiv: operator.floordiv}
_UNARY = {ast.UAdd: operator.pos, ast.USub: operator.neg}


def _evaluate(node):
    if isinstance(node, ast.Expression):
        return _evaluate(node.body)
    if isinstance(node, ast.Constant) and type(node.value) in (int, float):
        return node.value
    if isinstance(node, ast.BinOp) and type(node.op) in _BINARY:
        left, right = _evaluate(node.left), _evaluate(node.right)
        if isinstance(node.op, ast.Pow) and abs(right) > 100:
            raise ValueError("exponent too large")
        return _BINARY[type(node.op)](left, right)
    if isinstance(node, ast.UnaryOp) and type(node.op) in _UNARY:
        return _UNARY[type(node.op)](_evaluate(node.operand))
    raise ValueError(f"unsupported expression: {ast.dump(node)[:60]}")


def calculator(expression: str) -> str:
    """Evaluate an arithmetic expression safely: numbers, + - * / // % **, unary +/-, parentheses."""
    try:
        tree = ast.parse(expression.strip(), mode="eval")
    except SyntaxError as err:
        raise ValueError(f"not an arithmetic expression: {expression!r}") from err
    return str(_evaluate(tree))
