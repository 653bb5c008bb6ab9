"""How a CommonMark renderer reads a report: what is Markdown, what sits inside a code block."""


def outside_code_blocks(markdown: str) -> list[str]:
    """The lines a renderer reads as Markdown (not inside a fenced code block)."""
    lines, fence = [], None
    for line in markdown.splitlines():
        if fence is None and line.startswith("```"):
            fence = line[: len(line) - len(line.lstrip("`"))]
        elif fence is not None and set(line.strip()) == {"`"} and len(line.strip()) >= len(fence):
            fence = None  # a closing fence: backticks only, at least as many as the opening
        elif fence is None:
            lines.append(line)
    return lines
