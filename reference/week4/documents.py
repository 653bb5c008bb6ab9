"""PDF to training text, token chunks with overlap, Cosmopedia-style prompts (reference)."""

import io
import itertools
import math
import random
import re
from collections import Counter
from typing import Callable

import pypdf

from .dedup import deduplicate

# The prompt template of prompt_grid; the fields are {topic}, {audience} and {style}.
DEFAULT_TEMPLATE = "Write a {style} about {topic} for {audience}."


def _normal_form(lines: list[str]) -> str:
    """Lines (already whitespace-normalised) as text: runs of blank lines -> one, none at the edges."""
    out: list[str] = []
    for line in lines:
        if line or (out and out[-1]):
            out.append(line)
    while out and not out[-1]:
        out.pop()
    return "\n".join(out)


def extract_pages(pdf: bytes) -> list[str]:
    reader = pypdf.PdfReader(io.BytesIO(pdf))
    pages = []
    for page in reader.pages:
        text = page.extract_text(extraction_mode="layout")
        pages.append(_normal_form([" ".join(line.split()) for line in text.splitlines()]))
    return pages


def _key(line: str) -> str:
    return re.sub(r"\d+", "#", line)


def remove_boilerplate(pages: list[str], min_fraction: float = 0.5, edge_lines: int = 2) -> list[str]:
    # For each page, the positions (in its list of lines) of the candidate lines.
    split = [page.split("\n") for page in pages]
    candidates = []
    for lines in split:
        filled = [i for i, line in enumerate(lines) if line]
        candidates.append(set(filled[:edge_lines]) | set(filled[len(filled) - edge_lines:] if edge_lines else []))
    pages_with = Counter()
    for lines, where in zip(split, candidates):
        pages_with.update({_key(lines[i]) for i in where})
    frequent = {key for key, count in pages_with.items() if count >= 2 and count / len(pages) >= min_fraction}
    out = []
    for lines, where in zip(split, candidates):
        kept = [line for i, line in enumerate(lines) if not (i in where and _key(line) in frequent)]
        out.append(_normal_form(kept))
    return out


_ENDS_PARAGRAPH = re.compile(r"[.!?:][\"'\u201d\u2019)\]]*$")


def join_pages(pages: list[str]) -> str:
    text = ""
    for page in pages:
        if not page:
            continue
        if text:
            text += "\n\n" if _ENDS_PARAGRAPH.search(text.split("\n")[-1]) else "\n"
        text += page
    return text


def dehyphenate(text: str) -> str:
    return re.sub(r"(?<=[A-Za-z])-\n(?=[a-z])", "", text)


def unwrap(text: str) -> str:
    return "\n\n".join(paragraph.replace("\n", " ") for paragraph in text.split("\n\n"))


def pdf_to_text(pdf: bytes) -> str:
    return unwrap(dehyphenate(join_pages(remove_boilerplate(extract_pages(pdf)))))


def chunk_tokens(ids: list[int], chunk_size: int, overlap: int) -> list[list[int]]:
    if not 0 <= overlap < chunk_size:
        raise ValueError(f"need 0 <= overlap < chunk_size, got overlap={overlap}, chunk_size={chunk_size}")
    step = chunk_size - overlap
    chunks = []
    start = 0
    while start < len(ids):
        chunks.append(list(ids[start:start + chunk_size]))
        if start + chunk_size >= len(ids):
            break
        start += step
    return chunks


def chunk_text(text: str, encode: Callable[[str], list[int]], decode: Callable[[list[int]], str],
               chunk_size: int, overlap: int) -> list[str]:
    return [decode(chunk) for chunk in chunk_tokens(encode(text), chunk_size, overlap)]


def prompt_grid(topics: list[str], audiences: list[str], styles: list[str], n: int, seed: int,
                template: str = DEFAULT_TEMPLATE) -> list[dict[str, str]]:
    grid = list(itertools.product(topics, audiences, styles))
    if n > len(grid):
        raise ValueError(f"n={n} exceeds the grid's {len(grid)} combinations")
    rows = []
    for topic, audience, style in random.Random(seed).sample(grid, n):
        rows.append({"topic": topic, "audience": audience, "style": style,
                     "prompt": template.format(topic=topic, audience=audience, style=style)})
    return rows


def distinct_n(texts: list[str], n: int) -> float:
    grams = []
    for text in texts:
        words = text.lower().split()
        grams.extend(tuple(words[i:i + n]) for i in range(len(words) - n + 1))
    if not grams:
        return 0.0
    return len(set(grams)) / len(grams)


def coverage_entropy(rows: list[dict[str, str]], key: str) -> float:
    counts = Counter(row[key] for row in rows)
    total = sum(counts.values())
    return float(sum(c / total * math.log2(total / c) for c in counts.values())) if total else 0.0


def dedup_generations(texts: list[str], threshold: float = 0.7) -> list[int]:
    return deduplicate(texts, threshold=threshold)
