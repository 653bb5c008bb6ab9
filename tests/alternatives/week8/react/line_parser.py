"""react written differently: a line-by-line key scanner, a list-based history, a recursive-descent calculator."""
from dataclasses import dataclass

STOPPED = "Agent stopped: max_steps reached."


class ParseError(ValueError):
    pass


@dataclass(frozen=True)
class Action:
    tool: str
    tool_input: str
    thought: str = ""


@dataclass(frozen=True)
class FinalAnswer:
    answer: str
    thought: str = ""


KEYS = ["final answer", "action input", "observation", "thought", "action"]


def _key_of(line):
    """(key, rest) if the line starts with a key, else None."""
    head, sep, rest = line.partition(":")
    if not sep:
        return None
    name = " ".join(head.split()).lower()
    return (name, rest) if name in KEYS else None


def _sections(text):
    sections = []
    for line in text.splitlines():
        found = _key_of(line)
        if found:
            if found[0] == "observation":
                break
            sections.append([found[0], [found[1]]])
        elif sections:
            sections[-1][1].append(line)
    return [(k, "\n".join(v).strip()) for k, v in sections]


def _clean(value):
    value = value.split("\n")[0].strip() if value else ""
    for q in "\"'`":
        if len(value) >= 2 and value.startswith(q) and value.endswith(q):
            return value[1:-1].strip()
    return value


def parse_step(text):
    sections = _sections(text)
    first = {}
    order = []
    for k, v in sections:
        if k not in first:
            first[k] = v
            order.append(k)
    thought = first.get("thought", "")
    if "final answer" in first and "action" in first:
        raise ParseError("both an action and a final answer")
    if "final answer" in first:
        return FinalAnswer(first["final answer"], thought)
    if "action" not in first:
        raise ParseError("no action or final answer")
    if "action input" not in first or order.index("action input") < order.index("action"):
        raise ParseError("action without action input")
    tool = _clean(first["action"])
    if not tool:
        raise ParseError("empty tool name")
    return Action(tool, _clean(first["action input"]), thought)


def build_prompt(question, tools, scratchpad):
    lines = ["You answer questions with tools. Tools:"]
    for name, fn in tools.items():
        doc = (fn.__doc__ or "").strip().split("\n")[0]
        lines.append(f"- {name}" + (f": {doc}" if doc else ""))
    lines += ["", "Format: Thought: / Action: / Action Input: / Observation: ... then Final Answer:", "",
              f"Question: {question}", scratchpad]
    return "\n".join(lines)


def run_agent(llm, tools, question, max_steps=8):
    history = []
    for _ in range(max_steps):
        raw = llm(build_prompt(question, tools, "".join(history)))
        kept = []
        for line in raw.splitlines():
            found = _key_of(line)
            if found and found[0] == "observation":
                break
            kept.append(line)
        output = "\n".join(kept).strip()
        try:
            parsed = parse_step(output)
        except ParseError as e:
            obs = f"Error: could not parse your step ({e})."
        else:
            if isinstance(parsed, FinalAnswer):
                return parsed.answer
            tool = tools.get(parsed.tool)
            if tool is None:
                obs = f"Error: unknown tool '{parsed.tool}'. Available tools: {', '.join(tools)}."
            else:
                try:
                    obs = str(tool(parsed.tool_input))
                except Exception as e:
                    obs = f"Error: {type(e).__name__}: {e}"
        history.append(output + "\nObservation: " + obs + "\n")
    return STOPPED


class _Parser:
    """expr := term (('+'|'-') term)*; term := unary (('*'|'/'|'//'|'%') unary)*;
    unary := ('+'|'-') unary | power; power := atom ('**' unary)?; atom := number | '(' expr ')'."""

    def __init__(self, text):
        self.tokens = self._tokenize(text)
        self.i = 0

    @staticmethod
    def _tokenize(text):
        tokens, i = [], 0
        while i < len(text):
            c = text[i]
            if c.isspace():
                i += 1
            elif c.isdigit() or c == ".":
                j = i
                while j < len(text) and (text[j].isdigit() or text[j] == "."):
                    j += 1
                if j < len(text) and text[j] in "eE":
                    k = j + 1
                    if k < len(text) and text[k] in "+-":
                        k += 1
                    if k < len(text) and text[k].isdigit():
                        j = k
                        while j < len(text) and text[j].isdigit():
                            j += 1
                tokens.append(("num", text[i:j]))
                i = j
            elif text.startswith("**", i) or text.startswith("//", i):
                tokens.append(("op", text[i : i + 2]))
                i += 2
            elif c in "+-*/%()":
                tokens.append(("op", c))
                i += 1
            else:
                raise ValueError(f"unexpected character {c!r}")
        return tokens

    def peek(self):
        return self.tokens[self.i][1] if self.i < len(self.tokens) else None

    def take(self):
        tok = self.tokens[self.i]
        self.i += 1
        return tok

    def parse(self):
        value = self.expr()
        if self.i != len(self.tokens):
            raise ValueError("trailing input")
        return value

    def expr(self):
        value = self.term()
        while self.peek() in ("+", "-"):
            op = self.take()[1]
            value = value + self.term() if op == "+" else value - self.term()
        return value

    def term(self):
        value = self.unary()
        while self.peek() in ("*", "/", "//", "%"):
            op = self.take()[1]
            rhs = self.unary()
            value = {"*": lambda: value * rhs, "/": lambda: value / rhs, "//": lambda: value // rhs,
                     "%": lambda: value % rhs}[op]()
        return value

    def unary(self):
        if self.peek() in ("+", "-"):
            op = self.take()[1]
            v = self.unary()
            return v if op == "+" else -v
        return self.power()

    def power(self):
        base = self.atom()
        if self.peek() == "**":
            self.take()
            exponent = self.unary()
            if abs(exponent) > 100:
                raise ValueError("exponent too large")
            return base**exponent
        return base

    def atom(self):
        if self.i >= len(self.tokens):
            raise ValueError("unexpected end of expression")
        kind, text = self.take()
        if kind == "num":
            try:
                return float(text) if any(c in text for c in ".eE") else int(text)
            except ValueError:
                raise ValueError(f"bad number {text!r}") from None
        if text == "(":
            value = self.expr()
            if self.peek() != ")":
                raise ValueError("missing ')'")
            self.take()
            return value
        raise ValueError(f"unexpected {text!r}")


def calculator(expression):
    return str(_Parser(expression).parse())
