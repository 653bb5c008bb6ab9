"""Week 4 — documents: PDF to training text, token chunks, Cosmopedia-style synthetic prompts.

Two jobs of a pretraining-data pipeline, and the small tools they need:

1. **PDF to text** (`extract_pages` -> `remove_boilerplate` -> `join_pages` -> `dehyphenate`
   -> `unwrap`, composed as `pdf_to_text`). A PDF has no paragraphs, only glyphs placed on
   pages. pypdf's *layout* mode places the text lines as they sit on the page, so the gap
   between two paragraphs comes out as blank lines (its default mode loses it). Every page
   repeats a running header and a footer ("Page 3 of 12") that must not end up in the
   training text hundreds of times; a paragraph may go on across a page break, and a word
   may be hyphenated at a line end ("gar-" / "den"), even at the end of a page.
2. **Chunks and synthetic prompts** (`chunk_tokens`, `chunk_text`, `prompt_grid`,
   `distinct_n`, `coverage_entropy`, `dedup_generations`). Long texts are cut into windows
   of tokens that overlap, so no sentence is only ever seen cut in half. Synthetic data in
   the style of Cosmopedia comes from prompts that combine a topic, an audience and a style
   (the grid of all combinations is what gives the data its diversity); a model writes one
   text per prompt, and near-copies are removed with week 4's MinHash `deduplicate`. Two
   numbers say how diverse the result is: distinct-n (the share of word n-grams that are
   unique) and the entropy of the topics (or audiences, styles) the prompts cover.

The text pipeline works on *normal-form* page texts: lines separated by "\\n", each line's
whitespace collapsed (`" ".join(line.split())`, so a blank line is ""), never two blank
lines in a row, no blank line at the start or the end. A page with no text is "".

Your tests write their PDFs themselves, with fpdf2 (Helvetica, one `multi_cell` per block
of lines, a header and a "Page k of n" footer on every page), from paragraphs they chose:
`pdf_to_text` must give back exactly those paragraphs, joined by a blank line. The last
test generates stories with `checkpoints/gpt2-tiny-trained` from the prompts of your
`prompt_grid`, greedily and by sampling, and measures them with your `dedup_generations` and
`distinct_n`: greedy decoding writes nearly the same story whatever the prompt. It is marked
slow (it imports transformers): `kata check week4/documents` runs it, plain `pytest` leaves it
out, and `pytest -m slow katas/week4/test_documents.py` runs it alone.

Run the tests:   pytest katas/week4/test_documents.py
Hints:           kata hint week4/documents

Run time: `pytest katas/week4/test_documents.py` takes about 4 s with a correct solution on
a 2-core laptop CPU, and the slow story test about 5 s more. Much longer means
something in your code is slow (see the hints); a test that runs past its limit fails with
TIMEOUT, naming your function, and the kata's other tests of that function are skipped.
"""

import io
import itertools
import random
import re
from typing import Callable

import pypdf

from .dedup import deduplicate

# The prompt template of prompt_grid; the fields are {topic}, {audience} and {style}.
DEFAULT_TEMPLATE = "Write a {style} about {topic} for {audience}."


def extract_pages(pdf: bytes) -> list[str]:
    """The text of each page of a PDF, in normal form: one string per page, in page order.

    Read the bytes with `pypdf.PdfReader(io.BytesIO(pdf))`; for every page take
    `page.extract_text(extraction_mode="layout")`. Layout mode keeps the vertical gaps: a
    paragraph break comes out as one or more blank lines, and the footer far below the text
    after many of them. (The default mode, `extract_text()`, puts every line right after the
    previous one: the paragraph breaks are lost, and nothing later can find them again.)

    Then normalise, line by line (`str.splitlines()`):
    - each line becomes `" ".join(line.split())`: layout mode pads with spaces (a centred
      footer comes with 40 spaces in front), and a line of spaces becomes blank "";
    - a run of blank lines becomes ONE blank line;
    - blank lines at the start and the end of the page are dropped;
    - the lines are joined with "\\n". A page without text gives "".

    Worked example: layout mode gives
        "Kata Press - Annual Report 2026\\n\\nThe garden was quiet.\\n\\n\\nBirds  sang\\nat dawn.\\n\\n\\n\\n        Page 1 of 3"
    and the page becomes
        "Kata Press - Annual Report 2026\\n\\nThe garden was quiet.\\n\\nBirds sang\\nat dawn.\\n\\nPage 1 of 3"
    """
    raise NotImplementedError


def remove_boilerplate(pages: list[str], min_fraction: float = 0.5, edge_lines: int = 2) -> list[str]:
    """The pages without their running headers and footers (pages in normal form, as
    `extract_pages` returns them; the result is in normal form too, one string per page).

    - Candidates: on each page, the first `edge_lines` and the last `edge_lines` NON-BLANK
      lines (blank lines do not count; on a short page the two sets may overlap, and
      `edge_lines=0` means no candidates, so nothing is removed).
    - Key of a line: the line with every run of digits replaced by "#"
      (`re.sub(r"\\d+", "#", line)`): "Page 3 of 12" and "Page 4 of 12" share the key
      "Page # of #". Keys are compared exactly (case and punctuation count).
    - A key is boilerplate when the number of pages that have it among their candidates
      (a page counts once) is at least 2 AND `count / len(pages) >= min_fraction`.
    - Every CANDIDATE line whose key is boilerplate is removed, on every page. A line that is
      not a candidate stays even when its key is boilerplate: body text that happens to
      look like a header is text.
    - The page is then put back in normal form (the blank line after a removed header
      would otherwise start the page). A page that had only boilerplate becomes "".

    Worked example: three pages, each headed "Kata Press - Annual Report 2026" and footed
    "Page 1 of 3", "Page 2 of 3", "Page 3 of 3", with page 2 as
        "Kata Press - Annual Report 2026\\n\\nApples grew well.\\nThe line below is not an edge:\\n"
        "Kata Press - Annual Report 1999\\nwas last year's title.\\nPears did too.\\n\\nPage 2 of 3"
    Both the header key and "Page # of #" are on 3 of 3 pages: those lines go. Page 2 becomes
        "Apples grew well.\\nThe line below is not an edge:\\nKata Press - Annual Report 1999\\n"
        "was last year's title.\\nPears did too."
    "Kata Press - Annual Report 1999" has the header's key but is not among the first or
    last two non-blank lines of its page, so it stays. With one page only, nothing is
    ever removed (a key needs 2 pages). With 5 pages and a line on 2 of them,
    min_fraction=0.5 keeps it (2/5 < 0.5) and min_fraction=0.4 removes it.
    """
    raise NotImplementedError


def join_pages(pages: list[str]) -> str:
    """The pages (normal form) as one text: does a paragraph end at the bottom of a page?

    Consecutive pages are joined by "\\n\\n" (a paragraph break) when the last line of the
    earlier page ends a paragraph: it ends with ".", "!", "?" or ":", after which closing
    quotes or brackets may follow (the regex `[.!?:]["'\\u201d\\u2019)\\]]*$`: `."`, `!)`, `?'`
    and `.\\u201d` all end a paragraph). Otherwise the paragraph goes on across the page
    break: the pages are joined by a single "\\n", as if it were one more line break.
    Empty pages ("", a page that had only a header and a footer) are skipped: they neither
    add text nor a separator. No pages, or only empty ones, give "".

    Worked example:
        join_pages(["It was late.", "Then the rain\\ncame down", "", "on the roof, hard."])
        == "It was late.\\n\\nThen the rain\\ncame down\\non the roof, hard."
    """
    raise NotImplementedError


def dehyphenate(text: str) -> str:
    """Join the words hyphenated at a line end: `re.sub(r"(?<=[A-Za-z])-\\n(?=[a-z])", "", text)`.

    A hyphen is removed, with the newline after it, only when a letter comes before it and
    a LOWERCASE letter right after the newline:
        "gar-\\nden" -> "garden"          "Every-\\nbody" -> "Everybody"
        "Anglo-\\nSaxon" unchanged (a capital: most likely a real hyphenated name)
        "- \\nThe", "1990-\\n1995" unchanged (no letter before the hyphen)
        "well-known" unchanged (no line end: hyphens inside a line are part of the word)
        "gar-\\n\\nden" unchanged (a paragraph break is not a line end inside a word)
    A compound broken at its own hyphen ("well-\\nknown") loses it ("wellknown"): the rule
    cannot tell; your tests never break a compound at a line end.
    """
    raise NotImplementedError


def unwrap(text: str) -> str:
    """Paragraphs on one line each: inside a paragraph every "\\n" becomes a space;
    paragraphs stay separated by "\\n\\n".

    `text` is made of paragraphs separated by exactly one blank line ("\\n\\n"), with single
    "\\n" line breaks inside them (what `join_pages` and `dehyphenate` give).
        unwrap("The rain\\ncame down.\\n\\nIt stopped\\nat noon.") == "The rain came down.\\n\\nIt stopped at noon."
    """
    raise NotImplementedError


def pdf_to_text(pdf: bytes) -> str:
    """The training text of a PDF: `unwrap(dehyphenate(join_pages(remove_boilerplate(extract_pages(pdf)))))`,
    with every function's defaults. The order matters: dehyphenate after join_pages (a word
    may be hyphenated across a page break) and before unwrap (which turns line ends into
    spaces)."""
    raise NotImplementedError


def chunk_tokens(ids: list[int], chunk_size: int, overlap: int) -> list[list[int]]:
    """Windows of `chunk_size` ids that overlap by `overlap`: ids[0:c], ids[s:s+c],
    ids[2s:2s+c], ... with step s = chunk_size - overlap, up to and including the FIRST
    window that reaches the end of `ids` (start + chunk_size >= len(ids)); that last window
    may be shorter than chunk_size. No window starts after it, so none lies wholly inside
    the one before.

    - For n ids (n > 0) that is 1 + max(0, ceil((n - chunk_size) / s)) windows.
    - `ids == []` gives `[]`; fewer ids than chunk_size give one (short) window.
    - `overlap=0` gives consecutive, disjoint windows (a partition of ids).
    - ValueError unless 0 <= overlap < chunk_size (a step of 0 or less would never end).
    Returns a list of lists of ints (copies: slices of `ids`).

    Worked example: 10 ids, chunk_size=4, overlap=1 (step 3):
        [ids[0:4], ids[3:7], ids[6:10]]            (the third reaches the end)
    11 ids add ids[9:11] (two ids: the tail is never dropped); 10 ids do NOT add ids[9:10],
    which lies inside ids[6:10].
    """
    raise NotImplementedError


def chunk_text(text: str, encode: Callable[[str], list[int]], decode: Callable[[list[int]], str],
               chunk_size: int, overlap: int) -> list[str]:
    """`text` cut into windows of TOKENS: `[decode(w) for w in chunk_tokens(encode(text), chunk_size, overlap)]`.

    Chunk sizes are counted in tokens because a model's context is counted in tokens (a
    window of 64 characters can be 15 tokens or 60). Same rules and ValueError as
    `chunk_tokens`."""
    raise NotImplementedError


def prompt_grid(topics: list[str], audiences: list[str], styles: list[str], n: int, seed: int,
                template: str = DEFAULT_TEMPLATE) -> list[dict[str, str]]:
    """`n` distinct prompts drawn from the grid of every (topic, audience, style).

    Exactly: `random.Random(seed).sample(list(itertools.product(topics, audiences, styles)), n)`:
    the grid in `itertools.product` order (topic slowest, style fastest), sampled without
    replacement by a fresh `random.Random(seed)` (not the global `random`, not a shuffle: the
    same seed must give the same prompts in any program). Each sampled (topic, audience,
    style) becomes the row
        {"topic": topic, "audience": audience, "style": style,
         "prompt": template.format(topic=topic, audience=audience, style=style)}
    in the sampled order. ValueError when n exceeds the size of the grid
    (len(topics) * len(audiences) * len(styles)).

    Worked example: the grid of (["volcanoes", "tides"], ["children"], ["story", "poem"]) is
        [("volcanoes", "children", "story"), ("volcanoes", "children", "poem"),
         ("tides", "children", "story"), ("tides", "children", "poem")]
    and `random.Random(0).sample(grid, 2)` picks ("tides", "children", "poem") then
    ("volcanoes", "children", "poem"), so with seed=0 and n=2 the first row is
        {"topic": "tides", "audience": "children", "style": "poem",
         "prompt": "Write a poem about tides for children."}
    A grid listed in another order (styles first, or nested loops in another nesting)
    holds the same combinations but gives other samples.
    """
    raise NotImplementedError


def distinct_n(texts: list[str], n: int) -> float:
    """distinct-n of a corpus: the number of UNIQUE word n-grams divided by the number of all
    word n-grams, over all the texts together.

    Words are `text.lower().split()`. The n-grams of each text are taken within that text
    (len(words) - n + 1 of them; none for a text of fewer than n words: unlike week 4's
    shingles there is no short n-gram), never across two texts. Uniqueness is over the
    whole corpus: an n-gram in two texts counts once in the numerator, twice in the
    denominator. 0.0 when there are no n-grams at all.

    Worked example (n=2): ["The cat sat", "the cat ran", "hi"] has the bigrams
    (the, cat), (cat, sat) | (the, cat), (cat, ran) | none: 3 unique of 4, 0.75.
    (Joined into one text they would add (sat, the) and (ran, hi), which no text has.)
    """
    raise NotImplementedError


def coverage_entropy(rows: list[dict[str, str]], key: str) -> float:
    """The Shannon entropy, in BITS, of the values of `row[key]` over `rows`:
    H = -sum_v p_v * log2(p_v), with p_v the fraction of rows whose `key` is v.

    log2 of the number of values when they are equally frequent (the most even coverage),
    0.0 when every row has the same value, 0.0 for no rows. A float. Example: topics
    ["a", "a", "b", "c"] -> p = 1/2, 1/4, 1/4 -> H = 0.5 + 0.5 + 0.5 = 1.5 bits."""
    raise NotImplementedError


def dedup_generations(texts: list[str], threshold: float = 0.7) -> list[int]:
    """The indices of the texts to keep after near-duplicate removal: week 4's
    `deduplicate(texts, threshold=threshold)` (imported above from your `dedup.py`; its
    other arguments at their defaults), so the first text of each group of near-copies is
    kept. Synthetic generations use a lower threshold (0.7) than web pages (0.8): a model's
    near-copies differ in a few words more than mirrored web pages do."""
    raise NotImplementedError
