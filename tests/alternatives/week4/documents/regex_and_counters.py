"""Documents written differently: whitespace and blank-line runs normalised with regular
expressions over the whole page, boilerplate found with one Counter of per-page key sets and
removed by walking in from both ends of each page, pages joined after stripping closing
quotes, hyphenated lines joined one line at a time, windows from the ceil count, the grid
sampled by index, distinct-n with a Counter and the entropy with numpy."""

import io
import itertools
import random
import re
from collections import Counter
from typing import Callable

import numpy as np
import pypdf

from .dedup import deduplicate as _deduplicate

DEFAULT_TEMPLATE = "Write a {style} about {topic} for {audience}."


def _normalise(text: str) -> str:
    lines = [re.sub(r"\s+", " ", line).strip() for line in text.splitlines()]
    return re.sub(r"\n{3,}", "\n\n", "\n".join(lines)).strip("\n")


def extract_pages(pdf: bytes) -> list[str]:
    return [_normalise(page.extract_text(extraction_mode="layout")) for page in pypdf.PdfReader(io.BytesIO(pdf)).pages]


def _candidates(lines: list[str], edge_lines: int) -> set[int]:
    found: set[int] = set()
    for order in (range(len(lines)), range(len(lines) - 1, -1, -1)):
        taken = 0
        for i in order:
            if taken == edge_lines:
                break
            if lines[i]:
                found.add(i)
                taken += 1
    return found


def remove_boilerplate(pages: list[str], min_fraction: float = 0.5, edge_lines: int = 2) -> list[str]:
    key = lambda line: re.sub(r"[0-9]+", "#", line)  # noqa: E731
    lines_of = [page.split("\n") for page in pages]
    where = [_candidates(lines, edge_lines) for lines in lines_of]
    counts = Counter(itertools.chain.from_iterable({key(lines[i]) for i in w} for lines, w in zip(lines_of, where)))
    drop = {k for k, c in counts.items() if c > 1 and c >= min_fraction * len(pages) - 1e-12}
    return [_normalise("\n".join(line for i, line in enumerate(lines) if i not in w or key(line) not in drop))
            for lines, w in zip(lines_of, where)]


def join_pages(pages: list[str]) -> str:
    full = [page for page in pages if page]
    if not full:
        return ""
    parts = [full[0]]
    for before, page in zip(full, full[1:]):
        last = before.rsplit("\n", 1)[-1].rstrip("\"'\u201d\u2019)]")
        parts.append("\n\n" if last[-1:] in (".", "!", "?", ":") and last else "\n")
        parts.append(page)
    return "".join(parts)


def dehyphenate(text: str) -> str:
    lines = text.split("\n")
    out = [lines[0]]
    for line in lines[1:]:
        prev = out[-1]
        if len(prev) >= 2 and prev[-1] == "-" and prev[-2].isascii() and prev[-2].isalpha() \
                and line[:1].isascii() and line[:1].islower():
            out[-1] = prev[:-1] + line
        else:
            out.append(line)
    return "\n".join(out)


def unwrap(text: str) -> str:
    return re.sub(r"(?<!\n)\n(?!\n)", " ", text)


def pdf_to_text(pdf: bytes) -> str:
    pages = extract_pages(pdf)
    return unwrap(dehyphenate(join_pages(remove_boilerplate(pages))))


def chunk_tokens(ids: list[int], chunk_size: int, overlap: int) -> list[list[int]]:
    if overlap < 0 or overlap >= chunk_size:
        raise ValueError("overlap must be in [0, chunk_size)")
    step = chunk_size - overlap
    count = 0 if not ids else 1 + max(0, -(-(len(ids) - chunk_size) // step))
    return [list(ids[k * step:k * step + chunk_size]) for k in range(count)]


def chunk_text(text: str, encode: Callable[[str], list[int]], decode: Callable[[list[int]], str],
               chunk_size: int, overlap: int) -> list[str]:
    ids = encode(text)
    return list(map(decode, chunk_tokens(ids, chunk_size, overlap)))


def prompt_grid(topics: list[str], audiences: list[str], styles: list[str], n: int, seed: int,
                template: str = DEFAULT_TEMPLATE) -> list[dict[str, str]]:
    grid = [(t, a, s) for t in topics for a in audiences for s in styles]
    if not 0 <= n <= len(grid):
        raise ValueError("n must be between 0 and the grid size")
    picks = random.Random(seed).sample(range(len(grid)), n)
    names = ("topic", "audience", "style")
    rows = [dict(zip(names, grid[i])) for i in picks]
    for row in rows:
        row["prompt"] = template.format(**row)
    return rows


def distinct_n(texts: list[str], n: int) -> float:
    counts: Counter = Counter()
    for text in texts:
        words = text.lower().split()
        counts.update(zip(*(words[k:] for k in range(n))))
    total = sum(counts.values())
    return len(counts) / total if total else 0.0


def coverage_entropy(rows: list[dict[str, str]], key: str) -> float:
    if not rows:
        return 0.0
    counts = np.array(list(Counter(row[key] for row in rows).values()), dtype=np.float64)
    p = counts / counts.sum()
    return float(np.sum(p * np.log2(1.0 / p)))


def dedup_generations(texts: list[str], threshold: float = 0.7) -> list[int]:
    return list(_deduplicate(list(texts), threshold))
