"""Documents written with plain loops: a small state machine per page for the blank lines,
candidate positions counted from both ends, a regex on the whole text so far to decide how
pages join, a hand loop over the windows, the grid built by nested loops, and the entropy
with math.log."""

import io
import math
import random
import re
from typing import Callable

import pypdf

from . import dedup

DEFAULT_TEMPLATE = "Write a {style} about {topic} for {audience}."

_END = re.compile("[.!?:][\"'\u201d\u2019)\\]]*\\Z")


def _tidy(lines: list[str]) -> str:
    out: list[str] = []
    pending_blank = False
    for line in lines:
        line = " ".join(line.split())
        if not line:
            pending_blank = bool(out)
            continue
        if pending_blank:
            out.append("")
            pending_blank = False
        out.append(line)
    return "\n".join(out)


def extract_pages(pdf: bytes) -> list[str]:
    reader = pypdf.PdfReader(io.BytesIO(pdf))
    result = []
    for index in range(len(reader.pages)):
        result.append(_tidy(reader.pages[index].extract_text(extraction_mode="layout").splitlines()))
    return result


def remove_boilerplate(pages: list[str], min_fraction: float = 0.5, edge_lines: int = 2) -> list[str]:
    def key(line):
        return re.sub(r"\d+", "#", line)

    table = []
    for page in pages:
        lines = page.split("\n")
        nonblank = [i for i in range(len(lines)) if lines[i] != ""]
        chosen = set()
        for k in range(min(edge_lines, len(nonblank))):
            chosen.add(nonblank[k])
            chosen.add(nonblank[len(nonblank) - 1 - k])
        table.append((lines, chosen))
    pages_per_key: dict[str, int] = {}
    for lines, chosen in table:
        for k in set(key(lines[i]) for i in chosen):
            pages_per_key[k] = pages_per_key.get(k, 0) + 1
    boiler = set()
    for k, c in pages_per_key.items():
        if c >= 2 and c / len(pages) >= min_fraction:
            boiler.add(k)
    result = []
    for lines, chosen in table:
        keep = []
        for i in range(len(lines)):
            if i in chosen and key(lines[i]) in boiler:
                continue
            keep.append(lines[i])
        result.append(_tidy(keep))
    return result


def join_pages(pages: list[str]) -> str:
    text = ""
    for page in pages:
        if page == "":
            continue
        if text == "":
            text = page
        elif _END.search(text):
            text = text + "\n\n" + page
        else:
            text = text + "\n" + page
    return text


def dehyphenate(text: str) -> str:
    return re.compile(r"(?<=[a-zA-Z])-\n(?=[a-z])").sub("", text)


def unwrap(text: str) -> str:
    paragraphs = text.split("\n\n")
    return "\n\n".join(" ".join(p.split("\n")) for p in paragraphs)


def pdf_to_text(pdf: bytes) -> str:
    text = join_pages(remove_boilerplate(extract_pages(pdf)))
    text = dehyphenate(text)
    return unwrap(text)


def chunk_tokens(ids: list[int], chunk_size: int, overlap: int) -> list[list[int]]:
    if not (overlap >= 0 and chunk_size > overlap):
        raise ValueError("bad overlap")
    out = []
    for start in range(0, len(ids), chunk_size - overlap):
        out.append(ids[start:start + chunk_size])
        if start + chunk_size >= len(ids):
            break
    return [list(w) for w in out]


def chunk_text(text: str, encode: Callable[[str], list[int]], decode: Callable[[list[int]], str],
               chunk_size: int, overlap: int) -> list[str]:
    out = []
    for window in chunk_tokens(encode(text), chunk_size, overlap):
        out.append(decode(window))
    return out


def prompt_grid(topics: list[str], audiences: list[str], styles: list[str], n: int, seed: int,
                template: str = DEFAULT_TEMPLATE) -> list[dict[str, str]]:
    grid = []
    for topic in topics:
        for audience in audiences:
            for style in styles:
                grid.append((topic, audience, style))
    if n > len(grid):
        raise ValueError("more prompts than combinations")
    rng = random.Random()
    rng.seed(seed)
    out = []
    for topic, audience, style in rng.sample(grid, n):
        out.append({"topic": topic, "audience": audience, "style": style,
                    "prompt": template.format(**{"topic": topic, "audience": audience, "style": style})})
    return out


def distinct_n(texts: list[str], n: int) -> float:
    seen = set()
    total = 0
    for text in texts:
        words = text.lower().split()
        for i in range(0, len(words) - n + 1):
            seen.add(tuple(words[i:i + n]))
            total += 1
    return 0.0 if total == 0 else len(seen) / total


def coverage_entropy(rows: list[dict[str, str]], key: str) -> float:
    counts: dict[str, int] = {}
    for row in rows:
        counts[row[key]] = counts.get(row[key], 0) + 1
    n = len(rows)
    h = 0.0
    for c in counts.values():
        h -= (c / n) * math.log(c / n) / math.log(2)
    return h


def dedup_generations(texts: list[str], threshold: float = 0.7) -> list[int]:
    return dedup.deduplicate(texts, threshold=threshold)
