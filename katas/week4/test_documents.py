"""Public tests for week4/documents.

Oracles:
- the text each test wrote into its PDF. The PDFs are made here with fpdf2 (Helvetica, one
  `multi_cell` per block of lines, a running header and a "Page k of {nb}" footer) from
  paragraphs the test chose; the test lays them out itself (wraps the lines, breaks pages,
  hyphenates the words it marks), so `extract_pages` must give back the lines it placed on
  each page and `pdf_to_text` exactly its paragraphs, joined by a blank line;
- hand-written pages and texts for `remove_boilerplate`, `join_pages`, `dehyphenate` and
  `unwrap` (the expected strings are written out in the tests);
- hypothesis reconstruction for `chunk_tokens` (windows overlap by exactly `overlap`, their
  concatenation minus the overlaps gives back the ids, the ceil count);
- `random.Random(seed).sample(list(itertools.product(...)), n)` for `prompt_grid`;
- hand counts and `collections.Counter` for `distinct_n`, `scipy.stats.entropy(counts,
  base=2)` for `coverage_entropy`;
- the MinHash family of week4/dedup, written out here from its stub, for `dedup_generations`;
- the catalogue's bar on stories that `checkpoints/gpt2-tiny-trained` writes from your prompts.
"""

from __future__ import annotations

import collections
import datetime
import functools
import hashlib
import itertools
import math
import random
import re
from pathlib import Path

import pytest
import scipy.stats
import torch
from fpdf import FPDF
from hypothesis import assume, given, strategies as st

from graders import check, oracle, student
from graders.testing import hinted, mistake_shown

documents = student("week4.documents")

CHECKPOINTS = Path(__file__).resolve().parents[2] / "checkpoints"

# --- PDFs written by the tests ------------------------------------------------------------------
#
# A document is a list of paragraphs (strings of words) and PAGE entries (a page break between
# paragraphs). Inside a paragraph a "|" forces a line break, a "||" a page break (the paragraph
# goes on on the next page), and a word written "gar-|den" or "gar-||den" is hyphenated across
# that line or page break. `written_text` is the paragraphs without the marks: what the PDF says.

PAGE = "||"
HEADER = "Kata Press - Annual Report 2026"
FOOTER = "Page {k} of {nb}"


class Report(FPDF):
    """An A4 report with an optional running header and footer ({k}: this page, {nb}: the count)."""

    def __init__(self, header_text: str | None, footer_text: str | None):
        super().__init__(format="A4")
        self.header_text, self.footer_text = header_text, footer_text
        # a fixed date: the PDF's bytes (its /ID is a hash of them) are the same in every run
        self.set_creation_date(datetime.datetime(2026, 1, 1, tzinfo=datetime.timezone.utc))

    def header(self):
        if self.header_text:
            self.set_font("Helvetica", size=9)
            self.cell(0, 6, self.header_text, new_x="LMARGIN", new_y="NEXT", align="L")
            self.ln(6)

    def footer(self):
        if self.footer_text:
            self.set_y(-15)
            self.set_font("Helvetica", size=9)
            self.cell(0, 6, self.footer_text.format(k=self.page_no(), nb="{nb}"), align="C")


def make_pdf(pages: list[list[list[str]]], header: str | None = HEADER, footer: str | None = FOOTER) -> bytes:
    """The PDF of `pages`: each page a list of blocks, each block a list of lines, written with
    one multi_cell (explicit line breaks, left-aligned) and a paragraph gap between blocks."""
    pdf = Report(header, footer)
    pdf.alias_nb_pages()
    pdf.set_auto_page_break(False)  # the test decides where pages break (<= 30 lines a page)
    for blocks in pages:
        pdf.add_page()
        pdf.set_font("Helvetica", size=11)
        for i, lines in enumerate(blocks):
            if i:
                pdf.ln(6)
            pdf.multi_cell(0, 6, "\n".join(lines), align="L", new_x="LMARGIN", new_y="NEXT")
    return bytes(pdf.output())


def _tokens(paragraph: str):
    """Words and break marks; "gar-|den" gives "gar-", "|", "den"."""
    for word in paragraph.split():
        if word in ("|", "||"):
            yield word
        else:
            yield from (part for part in re.split(r"(?<=-)(\|\|?)", word) if part)


def lay_out(document: list[str], width: int = 60) -> list[list[list[str]]]:
    """Pages of blocks of lines: each paragraph wrapped at `width` characters, a new block per
    paragraph, the line and page breaks where the document marks them."""
    pages, blocks, lines, line = [], [], [], []

    def end(kind):
        nonlocal pages, blocks, lines, line
        if line:
            lines.append(" ".join(line))
            line = []
        if kind in ("block", PAGE) and lines:
            blocks.append(lines)
            lines = []
        if kind == PAGE:
            pages.append(blocks)
            blocks = []

    for paragraph in document:
        if paragraph == PAGE:
            end(PAGE)
            continue
        for token in _tokens(paragraph):
            if token in ("|", PAGE):
                end(token)
                continue
            if line and len(" ".join(line + [token])) > width:
                end("|")
            line.append(token)
        end("block")
    end(PAGE)
    return pages


def written_text(document: list[str]) -> str:
    """The paragraphs the document holds, without the layout marks, joined by a blank line."""
    paragraphs = []
    for paragraph in document:
        if paragraph != PAGE:
            words = re.sub(r"-\|\|?", "", paragraph).split()
            paragraphs.append(" ".join(w for w in words if w not in ("|", PAGE)))
    return "\n\n".join(paragraphs)


def placed_pages(pages: list[list[list[str]]], header: str | None = HEADER, footer: str | None = FOOTER) -> list[str]:
    """What was placed on each page, in normal form: the header, a blank line, the blocks with
    a blank line between them, a blank line, the footer."""
    out = []
    for k, blocks in enumerate(pages, start=1):
        parts = ([header] if header else []) + ["\n".join(lines) for lines in blocks]
        if footer:
            parts.append(footer.format(k=k, nb=len(pages)))
        out.append("\n\n".join(parts))
    return out


# The public document: four pages of different lengths; the third paragraph goes on across a
# page break, a word is hyphenated across the next one (and one across a line end); a body
# line looks like the footer ("Page 12 of 300", a candidate on no page); the fourth page ends
# a paragraph with a closing quote.
DOCUMENT = [
    "The garden was quiet in the morning, and the birds sang near the old wall until the sun "
    "came up over the hills behind the village.",
    "The answer was printed on | Page 12 of 300 | of the old atlas, next to a map of the bay and "
    "a list of the ships that had sailed from it.",
    "This paragraph goes on || and on across the page break, past the lighthouse and the "
    "harbour, and only then ends.",
    "In 2026 the orchard gave more apples than ever; the baskets were full by noon and the "
    "cellar was full by the evening, so the farmer sold the rest at the mar-|ket.",
    PAGE,
    "A short page: one paragraph, a colon at its end:",
    PAGE,
    "The last chapter begins with a gar-||den, where everything started.",
    "\"We will come back,\" they said, \"when the apples are ripe again.\"",
]


def extraction_mistake(out, want):
    """The mistake extract_pages's `out` shows against the pages placed (only through oracle(...))."""
    if not isinstance(out, list) or len(out) != len(want) or not all(isinstance(p, str) for p in out):
        return None
    if any("\n\n" in w for w in want) and not any("\n\n" in p for p in out):
        return "default_extraction_mode"
    if any(line != " ".join(line.split()) for page in out for line in page.split("\n")):
        return "lines_not_normalised"
    if any("\n\n\n" in p or p.startswith("\n") or p.endswith("\n") for p in out):
        return "blank_lines"
    return None


def pdf_mistake(out, document):
    """The mistake pdf_to_text's `out` shows on DOCUMENT-like text (only through oracle(...))."""
    if not isinstance(out, str):
        return None
    if "Page 1 of" in out:
        return "digits_not_normalised"
    if "Page 12 of 300" not in out:
        return "body_lines_removed"
    if out.count("\n\n") < written_text(document).count("\n\n") // 2:
        return "default_extraction_mode"
    if "gar- den" in out or "mar- ket" in out:
        return "pipeline_order"
    if "gar-\n\nden" in out or "on\n\nand on" in out:
        return "join_always_paragraph"
    return None


@pytest.mark.points(2)
def test_extract_pages_gives_the_lines_placed_on_each_page():
    """Layout mode keeps the gaps: a blank line after the header, between paragraphs and
    before the footer; the centred footer's padding is gone."""
    pages = lay_out(DOCUMENT)
    out = documents.extract_pages(make_pdf(pages))
    check.equal(out, oracle(placed_pages, pages), what="extract_pages(pdf)",
                hint=oracle(extraction_mistake, out, placed_pages(pages)))


@pytest.mark.points(1)
def test_extract_pages_of_a_page_without_text():
    """No header, and a footer of spaces only: layout mode gives the footer's line as
    spaces after the text (blank lines at the end), and a page of only that as blank lines."""
    pages = [[], [["Hello there,", "and welcome."]], []]
    out = documents.extract_pages(make_pdf(pages, header=None, footer="      "))
    check.equal(out, ["", "Hello there,\nand welcome.", ""], what="extract_pages of [empty, text, empty]",
                hint="blank_lines")


@pytest.mark.points(3)
def test_pdf_to_text_gives_back_the_paragraphs_written():
    """The paragraphs the test wrote, joined by "\\n\\n": no header, no footer, the paragraph
    across a page break whole, the hyphenated words joined, the body line that looks like a
    footer kept."""
    out = documents.pdf_to_text(make_pdf(lay_out(DOCUMENT)))
    check.equal(out, oracle(written_text, DOCUMENT), what="pdf_to_text(pdf)",
                hint=oracle(pdf_mistake, out, DOCUMENT))


WORDS = ("apple river stone garden window lantern harbour meadow basket pencil morning silver thunder "
         "blanket orchard kitten ladder mirror pocket saddle timber velvet wagon yellow quiet gentle bright "
         "little narrow heavy early over under through beside across and but then while the a of to in on "
         "with for 1999 42").split()
SENTENCE_ENDS = [".", ".", ".", "!", "?", ":", '."', ".)", "!'"]


def random_document(seed: int) -> list[str]:
    """Seeded paragraphs of seeded words; some go on across a page break, some hyphenate a word
    across a line or page break; some page breaks between paragraphs, a few pages with
    nothing but the header and footer."""
    rng = random.Random(seed)
    document = []
    for _ in range(rng.randint(6, 12)):
        words = []
        for s in range(rng.randint(1, 3)):
            sentence = [rng.choice(WORDS) for _ in range(rng.randint(4, 14))]
            sentence[0] = sentence[0].capitalize()
            sentence[-1] += rng.choice(SENTENCE_ENDS)
            words += sentence
        inner = [i for i, w in enumerate(words[:-1]) if w[-1].isalnum()]  # not the end of a sentence
        long = [i for i, w in enumerate(words[:-1]) if len(w) >= 6 and w.isalpha() and w.islower()]
        r = rng.random()
        if r < 0.3 and inner:
            words.insert(rng.choice(inner) + 1, PAGE)
        elif r < 0.6 and long:
            i = rng.choice(long)
            words[i] = words[i][:3] + "-" + rng.choice(["|", PAGE]) + words[i][3:]
        document.append(" ".join(words))
        if rng.random() < 0.3:
            document.append(PAGE)
            if rng.random() < 0.2:
                document.append(PAGE)
    return document


@pytest.mark.points(2)
@pytest.mark.parametrize("seed", [1, 2, 3])
def test_pdf_to_text_of_random_documents(seed):
    document = random_document(seed)
    out = documents.pdf_to_text(make_pdf(lay_out(document)))
    check.equal(out, oracle(written_text, document), what=f"pdf_to_text(random document {seed})")


# --- remove_boilerplate ----------------------------------------------------------------------


def report(bodies: list[str], header: str = HEADER, footer: str = "Page {k} of {nb}") -> list[str]:
    """Normal-form pages: header, blank line, body, blank line, footer."""
    return [f"{header}\n\n{body}\n\n{footer.format(k=k, nb=len(bodies))}" for k, body in enumerate(bodies, 1)]


WORKED_BODY = ("Apples grew well.\nThe line below is not an edge:\nKata Press - Annual Report 1999\n"
               "was last year's title.\nPears did too.")


@pytest.mark.points(2)
def test_remove_boilerplate_worked_example():
    pages = report(["One.", WORKED_BODY, "Three."])
    out = documents.remove_boilerplate(pages)
    check.equal(out, ["One.", WORKED_BODY, "Three."], what="remove_boilerplate(pages)",
                hint=oracle(mistake_shown, out, {
                    "digits_not_normalised": [["One.\n\nPage 1 of 3", f"{WORKED_BODY}\n\nPage 2 of 3", "Three.\n\nPage 3 of 3"]],
                    "body_lines_removed": [["One.", WORKED_BODY.replace("Kata Press - Annual Report 1999\n", ""), "Three."]],
                    "boilerplate_normal_form": [["\nOne.\n", f"\n{WORKED_BODY}\n", "\nThree.\n"]],
                }))


@pytest.mark.points(1)
def test_page_numbers_share_a_key():
    """No header here: only the footer's digits tell its lines apart."""
    pages = [f"Body text {w}.\n\nPage {k} of 12" for k, w in zip(range(5, 9), ["one", "two", "three", "four"])]
    out = documents.remove_boilerplate(pages)
    check.equal(out, ["Body text one.", "Body text two.", "Body text three.", "Body text four."],
                what="remove_boilerplate (footers 'Page 5 of 12' ... 'Page 8 of 12')", hint="digits_not_normalised")


@pytest.mark.points(1)
def test_a_body_line_that_looks_like_the_footer_stays():
    bodies = ["First line.\nSecond line.\nPage 40 of 300\nFourth line.\nFifth line.", "Short.", "Also short."]
    out = documents.remove_boilerplate(report(bodies))
    check.equal(out, bodies, what="remove_boilerplate (a body line 'Page 40 of 300' in the middle of page 1)",
                hint="body_lines_removed")


@pytest.mark.points(1)
@pytest.mark.parametrize("min_fraction,removed", [(0.5, False), (0.4, True), (0.3, True)])
def test_min_fraction_is_honoured(min_fraction, removed):
    """A draft stamp on 2 of 5 pages: 2/5 = 0.4."""
    bodies = ["Alpha.", "Beta.", "Gamma.", "Delta.", "Epsilon."]
    pages = [f"{b}\n\nDRAFT 7" if k in (1, 3) else b for k, b in enumerate(bodies)]
    out = documents.remove_boilerplate(pages, min_fraction=min_fraction)
    check.equal(out, bodies if removed else pages, what=f"remove_boilerplate(min_fraction={min_fraction})",
                hint="min_fraction_ignored")


@pytest.mark.points(1)
def test_a_line_on_one_page_is_never_boilerplate():
    single = ["Kata Press\n\nThe only page.\n\nPage 1 of 1"]
    out = documents.remove_boilerplate(single)
    check.equal(out, single, what="remove_boilerplate of a one-page document (a key needs 2 pages)",
                hint="single_page_key")
    pages = [f"Body of page {w}." for w in "one two three four five six seven eight nine ten".split()]
    pages[4] = "Foreword\n\nBody of page five."
    out = documents.remove_boilerplate(pages, min_fraction=0.1)
    check.equal(out, pages, what="remove_boilerplate(min_fraction=0.1), a line on 1 of 10 pages",
                hint="single_page_key")


@pytest.mark.points(1)
def test_a_page_counts_once():
    """"Confidential" at the top and the bottom of page 1 only: one page of three, not two."""
    pages = ["Confidential\n\nThe plan.\n\nConfidential", "No stamp here.", "Nor here."]
    out = documents.remove_boilerplate(pages)
    check.equal(out, pages, what="remove_boilerplate (a line twice on one page)", hint="count_pages_not_lines")


NUMBERS = {1: "one", 2: "two", 3: "three"}
SECTIONS = [f"Kata Press\n\nSection {k}\nThe {w} begins.\nThe {w} ends.\n\nPage {k} of 3" for k, w in NUMBERS.items()]


@pytest.mark.points(1)
@pytest.mark.parametrize("edge_lines,want", [
    (1, [f"Section {k}\nThe {w} begins.\nThe {w} ends." for k, w in NUMBERS.items()]),
    (2, [f"The {w} begins.\nThe {w} ends." for w in NUMBERS.values()]),
    (0, SECTIONS),
])
def test_edge_lines_is_honoured(edge_lines, want):
    """The running header has two lines (the book, then the section): edge_lines=1 only
    reaches the first; edge_lines=0 removes nothing."""
    out = documents.remove_boilerplate(SECTIONS, edge_lines=edge_lines)
    check.equal(out, want, what=f"remove_boilerplate(edge_lines={edge_lines})", hint="edge_lines_ignored")


@pytest.mark.points(1)
def test_blank_lines_are_not_candidates():
    """With the header "Kata Press", a blank line, then "Section k": "Section k" is the second
    NON-BLANK line, so a candidate with edge_lines=2 (the blank line is not one)."""
    out = documents.remove_boilerplate(SECTIONS, edge_lines=2)
    check.equal(out, [f"The {w} begins.\nThe {w} ends." for w in NUMBERS.values()],
                what="remove_boilerplate(edge_lines=2)", hint="blank_lines_counted")


@pytest.mark.points(1)
def test_a_page_of_boilerplate_only_becomes_empty():
    pages = report(["First page.", "", "Third page."])
    pages[1] = f"{HEADER}\n\nPage 2 of 3"
    out = documents.remove_boilerplate(pages)
    check.equal(out, ["First page.", "", "Third page."], what="remove_boilerplate (page 2 holds only boilerplate)",
                hint="boilerplate_normal_form")


# --- join_pages, dehyphenate, unwrap -----------------------------------------------------------


def joined(pages, ends_paragraph, skip_empty=True):
    """Pages joined by "\\n\\n" after a page whose last line ends_paragraph, else "\\n"."""
    text = ""
    for page in pages:
        if skip_empty and not page:
            continue
        if text:
            text += "\n\n" if ends_paragraph(text.split("\n")[-1]) else "\n"
        text += page
    return text


def join_mistake(out, pages):
    """The mistake join_pages's `out` shows (only through oracle(...))."""
    return mistake_shown(out, {
        "join_always_paragraph": [joined(pages, lambda line: True)],
        "join_never_paragraph": [joined(pages, lambda line: False)],
        "closing_quote": [joined(pages, lambda line: line != "" and line[-1] in ".!?:")],
        "empty_page": [joined(pages, lambda line: re.search(r"[.!?:][\"'\u201d\u2019)\]]*$", line), skip_empty=False)],
    })


JOIN_CASES = {
    "worked-example": (["It was late.", "Then the rain\ncame down", "", "on the roof, hard."],
                       "It was late.\n\nThen the rain\ncame down\non the roof, hard."),
    "every-end": (["One.", "Two!", "Three?", "Four:", "five"], "One.\n\nTwo!\n\nThree?\n\nFour:\n\nfive"),
    "closing-quotes": (["He said \"yes.\"", "(It was.)", "'Why?'", "The end.\u201d", "done"],
                       "He said \"yes.\"\n\n(It was.)\n\n'Why?'\n\nThe end.\u201d\n\ndone"),
    "goes-on": (["a sentence that goes\non and", "on, and on", "", "", "until here."],
                "a sentence that goes\non and\non, and on\nuntil here."),
    "mid-line-period": (["It was 3.5 metres\nlong, or", "so."], "It was 3.5 metres\nlong, or\nso."),
    "nothing": (["", ""], ""),
}


@pytest.mark.points(2)
@pytest.mark.parametrize("name", list(JOIN_CASES))
def test_join_pages(name):
    pages, want = JOIN_CASES[name]
    out = documents.join_pages(pages)
    check.equal(out, want, what=f"join_pages({pages!r})", hint=oracle(join_mistake, out, pages))


DEHYPHENATE_CASES = [
    ("the gar-\nden was green", "the garden was green", None),
    ("Every-\nbody came.", "Everybody came.", None),
    ("an Anglo-\nSaxon king", "an Anglo-\nSaxon king", "hyphen_before_capital"),
    ("- \nThe end", "- \nThe end", "hyphen_before_capital"),
    ("a well-known and up-to-date\nmap", "a well-known and up-to-date\nmap", "hyphen_inside_line"),
    ("it rained -\nand then", "it rained -\nand then", "no_letter_before"),
    ("from 1990-\n1995 and 7-\nup", "from 1990-\n1995 and 7-\nup", "no_letter_before"),
    ("the gar-\n\nden", "the gar-\n\nden", "hyphen_across_paragraphs"),
    ("two lines: con-\ntinued, and re-\nturned-\nhome", "two lines: continued, and returnedhome", None),
]


@pytest.mark.points(1)
@pytest.mark.parametrize("text,want,hint", DEHYPHENATE_CASES)
def test_dehyphenate(text, want, hint):
    check.equal(documents.dehyphenate(text), want, what=f"dehyphenate({text!r})", hint=hint)


UNWRAP_CASES = [
    ("The rain\ncame down.\n\nIt stopped\nat noon.", "The rain came down.\n\nIt stopped at noon."),
    ("one line", "one line"),
    ("a\nb\nc", "a b c"),
    ("First.\n\nSecond\nparagraph.\n\nThird.", "First.\n\nSecond paragraph.\n\nThird."),
    ("", ""),
]


@pytest.mark.points(1)
@pytest.mark.parametrize("text,want", UNWRAP_CASES)
def test_unwrap(text, want):
    out = documents.unwrap(text)
    check.equal(out, want, what=f"unwrap({text!r})", hint=oracle(mistake_shown, out, {
        "unwrap_joins_paragraphs": [text.replace("\n", " "), re.sub(r"\s+", " ", text)],
        "unwrap_no_space": ["\n\n".join(p.replace("\n", "") for p in text.split("\n\n"))],
    }))


# --- chunk_tokens, chunk_text -------------------------------------------------------------------


def window_count(n, chunk_size, overlap):
    """1 + ceil((n - chunk_size) / step) windows for n > 0 (at least 1), none for n = 0."""
    return 0 if n == 0 else 1 + max(0, math.ceil((n - chunk_size) / (chunk_size - overlap)))


def windows(ids, chunk_size, overlap):
    """The windows from the count formula: window k starts at k * step."""
    step = chunk_size - overlap
    return [list(ids[k * step:k * step + chunk_size]) for k in range(window_count(len(ids), chunk_size, overlap))]


def rebuilt(out, overlap):
    """The windows' concatenation without each later window's first `overlap` ids."""
    return [i for k, w in enumerate(out) for i in (w if k == 0 else w[overlap:])]


def chunk_mistake(out, ids, chunk_size, overlap, otherwise=None):
    """The mistake chunk_tokens's `out` shows, else `otherwise` (only through oracle(...))."""
    n, step = len(ids), chunk_size - overlap
    return otherwise if out == windows(ids, chunk_size, overlap) else mistake_shown(out, {
        "tail_dropped": [[list(ids[s:s + chunk_size]) for s in range(0, n - chunk_size + 1, step)],
                         [list(ids[s:s + chunk_size]) for s in range(0, n - overlap, step)
                          if s + chunk_size <= n]],
        "step_by_chunk_size": [[list(ids[s:s + chunk_size]) for s in range(0, n, chunk_size)],
                               [list(ids[s:s + chunk_size]) for s in range(0, max(n - overlap, 1), chunk_size)]],
        "extra_window": [[list(ids[s:s + chunk_size]) for s in range(0, n, step)]],
    }) or otherwise


@pytest.mark.points(1)
@pytest.mark.parametrize("n", [10, 11])
def test_chunk_tokens_worked_example(n):
    ids = list(range(100, 100 + n))
    out = documents.chunk_tokens(ids, 4, 1)
    check.equal(out, [ids[0:4], ids[3:7], ids[6:10]] + ([ids[9:11]] if n == 11 else []), what=f"chunk_tokens({n} ids, chunk_size=4, overlap=1)",
                hint=oracle(chunk_mistake, out, ids, 4, 1))


@pytest.mark.points(3)
@given(n=st.integers(0, 70), chunk_size=st.integers(1, 12), overlap=st.integers(0, 11), seed=st.integers(0, 99))
def test_chunk_tokens_windows_overlap_and_rebuild_the_ids(n, chunk_size, overlap, seed):
    assume(overlap < chunk_size)
    ids = random.Random(seed).sample(range(10_000), n)
    out = documents.chunk_tokens(ids, chunk_size, overlap)
    what = f"chunk_tokens({n} ids, chunk_size={chunk_size}, overlap={overlap})"
    check.that(isinstance(out, list) and all(isinstance(w, list) for w in out),
               f"{what} should be a list of lists", about=out)
    check.that(all(len(w) == chunk_size for w in out[:-1]) and all(0 < len(w) <= chunk_size for w in out[-1:]),
               f"{what}: every window but the last has chunk_size ids, the last 1 to chunk_size",
               about=[len(w) for w in out], hint=oracle(chunk_mistake, out, ids, chunk_size, overlap, "tail_dropped"))
    check.that(all(a[len(a) - overlap:] == b[:overlap] for a, b in zip(out, out[1:])),
               f"{what}: each window should start with the last {overlap} ids of the one before",
               about=out, hint=oracle(chunk_mistake, out, ids, chunk_size, overlap, "step_by_chunk_size"))
    check.that(rebuilt(out, overlap) == ids,
               f"{what}: the windows without their overlaps should give back the ids, the last ones included",
               about=out, hint=oracle(chunk_mistake, out, ids, chunk_size, overlap, "tail_dropped"))
    check.equal(len(out), window_count(n, chunk_size, overlap), what=f"number of windows of {what}",
                hint=oracle(chunk_mistake, out, ids, chunk_size, overlap, "extra_window"))


@pytest.mark.points(1)
def test_chunk_tokens_of_few_ids():
    check.equal(documents.chunk_tokens([], 4, 1), [], what="chunk_tokens([], 4, 1)")
    check.equal(documents.chunk_tokens([7, 8, 9], 4, 1), [[7, 8, 9]], what="chunk_tokens([7, 8, 9], 4, 1)",
                hint="extra_window")
    check.equal(documents.chunk_tokens([7, 8, 9, 10], 4, 3), [[7, 8, 9, 10]], what="chunk_tokens(4 ids, 4, 3)",
                hint="extra_window")


@pytest.mark.points(1)
def test_overlap_zero_is_a_partition():
    ids = list(range(20, 33))
    out = hinted("overlap_zero_rejected", documents.chunk_tokens, ids, 5, 0)
    check.equal(out, [ids[0:5], ids[5:10], ids[10:13]], what="chunk_tokens(13 ids, chunk_size=5, overlap=0)",
                hint="overlap_zero_rejected")


@pytest.mark.points(1)
@pytest.mark.parametrize("chunk_size,overlap", [(4, 4), (4, 5), (4, -1), (0, 0), (1, 1)])
def test_chunk_tokens_rejects_a_bad_overlap(chunk_size, overlap):
    with check.raises(ValueError, hint="bad_overlap"):
        documents.chunk_tokens(list(range(10)), chunk_size, overlap)


@functools.cache
def course_tokenizer():
    """gpt2-tiny-trained's tokenizer (the course's byte-level BPE, 512 ids), with `tokenizers`."""
    from tokenizers import Tokenizer

    return Tokenizer.from_file(str(CHECKPOINTS / "gpt2-tiny-trained" / "tokenizer.json"))


def encode(text: str) -> list[int]:
    return course_tokenizer().encode(text).ids


def decode(ids: list[int]) -> str:
    return course_tokenizer().decode(ids)


STORY = ("Once upon a time, there was a little fox who lived near the river. Every morning the fox "
         "ran along the water and said hello to the ducks. One day the ducks were gone.")


@pytest.mark.points(2)
@pytest.mark.parametrize("chunk_size,overlap", [(16, 4), (7, 0), (200, 10)])
def test_chunk_text_cuts_tokens_not_characters(chunk_size, overlap):
    out = documents.chunk_text(STORY, encode, decode, chunk_size, overlap)
    check.equal(out, oracle(lambda: [decode(w) for w in windows(encode(STORY), chunk_size, overlap)]),
                what=f"chunk_text(STORY, chunk_size={chunk_size}, overlap={overlap})",
                hint=oracle(mistake_shown, out, {"chunks_of_characters": [
                    [STORY[s:s + chunk_size] for s in range(0, len(STORY), chunk_size - overlap)
                     if s == 0 or s - (chunk_size - overlap) + chunk_size < len(STORY)]]}))


@pytest.mark.points(1)
def test_chunk_text_rejects_a_bad_overlap():
    with check.raises(ValueError, hint="bad_overlap"):
        documents.chunk_text(STORY, encode, decode, 8, 8)


# --- prompt_grid ------------------------------------------------------------------------------

DEFAULT_TEMPLATE = "Write a {style} about {topic} for {audience}."  # as the stub states it
TOPICS = ["volcanoes", "tides", "bees", "bridges", "fractions"]
AUDIENCES = ["children", "college students", "retirees"]
STYLES = ["story", "poem", "textbook unit", "blog post"]


def sampled_rows(topics, audiences, styles, n, seed, template=DEFAULT_TEMPLATE, order=(0, 1, 2)):
    """random.Random(seed).sample of the itertools.product grid; `order` lists the grid's
    axes in another order (a mistake) when it is not (0, 1, 2)."""
    axes = [topics, audiences, styles]
    grid = [tuple(c[order.index(i)] for i in range(3)) for c in itertools.product(*(axes[i] for i in order))]
    return [{"topic": t, "audience": a, "style": s, "prompt": template.format(topic=t, audience=a, style=s)}
            for t, a, s in random.Random(seed).sample(grid, n)]


def grid_mistake(out, topics, audiences, styles, n, seed, template=DEFAULT_TEMPLATE):
    """The mistake prompt_grid's `out` shows (only through oracle(...))."""
    grid = list(itertools.product(topics, audiences, styles))
    shuffled = list(grid)
    random.Random(seed).shuffle(shuffled)

    def rows(combos, tpl=template):
        return [{"topic": t, "audience": a, "style": s, "prompt": tpl.format(topic=t, audience=a, style=s)}
                for t, a, s in combos]

    return mistake_shown(out, {
        "grid_order": [sampled_rows(topics, audiences, styles, n, seed, template, order)
                       for order in itertools.permutations(range(3)) if order != (0, 1, 2)],
        "not_sample": [rows(shuffled[:n]), rows(random.Random(seed).choices(grid, k=n))],
        "seed_ignored": [rows(random.Random(0).sample(grid, n)), rows(random.Random(42).sample(grid, n))],
        "template_ignored": [rows(random.Random(seed).sample(grid, n), DEFAULT_TEMPLATE)],
    })


@pytest.mark.points(2)
@pytest.mark.parametrize("n,seed", [(6, 7), (60, 3), (1, 2026)])
def test_prompt_grid_is_a_seeded_sample_of_the_product(n, seed):
    out = documents.prompt_grid(TOPICS, AUDIENCES, STYLES, n, seed)
    check.equal(out, oracle(sampled_rows, TOPICS, AUDIENCES, STYLES, n, seed),
                what=f"prompt_grid(TOPICS, AUDIENCES, STYLES, n={n}, seed={seed})",
                hint=oracle(grid_mistake, out, TOPICS, AUDIENCES, STYLES, n, seed))


@pytest.mark.points(1)
def test_prompt_grid_worked_example():
    out = documents.prompt_grid(["volcanoes", "tides"], ["children"], ["story", "poem"], 2, seed=0)
    check.equal(out, [{"topic": "tides", "audience": "children", "style": "poem",
                       "prompt": "Write a poem about tides for children."},
                      {"topic": "volcanoes", "audience": "children", "style": "poem",
                       "prompt": "Write a poem about volcanoes for children."}],
                what="prompt_grid(['volcanoes', 'tides'], ['children'], ['story', 'poem'], 2, seed=0)",
                hint=oracle(grid_mistake, out, ["volcanoes", "tides"], ["children"], ["story", "poem"], 2, 0))


@pytest.mark.points(1)
def test_prompt_grid_fills_the_template_it_is_given():
    template = "Teach {audience} about {topic} in the form of a {style}, step by step."
    out = documents.prompt_grid(TOPICS, AUDIENCES, STYLES, 5, 11, template=template)
    check.equal(out, oracle(sampled_rows, TOPICS, AUDIENCES, STYLES, 5, 11, template),
                what="prompt_grid(..., template=...)",
                hint=oracle(grid_mistake, out, TOPICS, AUDIENCES, STYLES, 5, 11, template))


@pytest.mark.points(1)
def test_prompt_grid_rejects_more_prompts_than_the_grid_holds():
    with check.raises(ValueError, hint="grid_too_small"):
        documents.prompt_grid(TOPICS, AUDIENCES, STYLES, 61, 0)  # 5 * 3 * 4 = 60 combinations


# --- distinct_n, coverage_entropy ----------------------------------------------------------------

DISTINCT_CASES = [
    # texts, n, unique, total (hand-counted), the mistake a wrong answer most likely shows
    (["The cat sat", "the cat ran", "hi"], 2, 3, 4, "ngrams_span_texts"),
    (["The Cat", "the cat", "THE CAT"], 2, 1, 3, "no_lowercase"),
    (["the cat", "the", "the"], 2, 1, 1, "short_text_grams"),
    (["a b a b", "c d"], 2, 3, 4, "per_text_average"),
    (["a b", "a b"], 2, 1, 2, "per_text_average"),
    (["one two three four", "two three four five"], 3, 3, 4, "ngrams_span_texts"),
    (["x  y\tz\nw"], 1, 4, 4, None),
]


@pytest.mark.points(2)
@pytest.mark.parametrize("texts,n,unique,total,hint", DISTINCT_CASES)
def test_distinct_n_hand_counts(texts, n, unique, total, hint):
    check.close(documents.distinct_n(texts, n), unique / total, what=f"distinct_n({texts!r}, {n})", hint=hint)


@pytest.mark.points(1)
@pytest.mark.parametrize("texts", [[], ["one"], ["one", "two", ""]])
def test_distinct_n_without_ngrams_is_zero(texts):
    out = hinted("no_ngrams", documents.distinct_n, texts, 2)
    check.close(out, 0.0, what=f"distinct_n({texts!r}, 2)", hint="no_ngrams")


def counted_distinct(texts, n):
    """unique / total of the per-text n-grams, with collections.Counter."""
    counts = collections.Counter()
    for text in texts:
        words = text.lower().split()
        counts.update(tuple(words[i:i + n]) for i in range(len(words) - n + 1))
    return len(counts) / sum(counts.values()) if counts else 0.0


@pytest.mark.points(1)
@given(seed=st.integers(0, 10_000), n=st.integers(1, 4))
def test_distinct_n_of_random_texts(seed, n):
    rng = random.Random(seed)
    texts = [" ".join(rng.choice(["a", "b", "The", "the", "c"]) for _ in range(rng.randint(0, 9)))
             for _ in range(rng.randint(0, 5))]
    check.close(documents.distinct_n(texts, n), oracle(counted_distinct, texts, n), what=f"distinct_n({texts!r}, {n})")


def entropy_bits(rows, key):
    """scipy.stats.entropy of the value counts, base 2."""
    return float(scipy.stats.entropy(list(collections.Counter(row[key] for row in rows).values()), base=2))


def entropy_mistake(out, rows, key):
    """The mistake coverage_entropy's `out` shows (only through oracle(...))."""
    counts = list(collections.Counter(row[key] for row in rows).values())
    if not isinstance(out, float) or not counts:
        return None
    if math.isclose(out, scipy.stats.entropy(counts), rel_tol=1e-9) and len(counts) > 1:
        return "entropy_nats"
    if math.isclose(out, math.log2(len(counts)), rel_tol=1e-9):
        return "not_frequencies"
    return None


@pytest.mark.points(2)
@pytest.mark.parametrize("key", ["topic", "audience", "style"])
def test_coverage_entropy_is_scipy_entropy_in_bits(key):
    rng = random.Random(5)
    rows = [{"topic": rng.choice(TOPICS[:3] + ["bees"]), "audience": rng.choice(AUDIENCES),
             "style": rng.choice(["story"] * 5 + ["poem"])} for _ in range(40)]
    out = documents.coverage_entropy(rows, key)
    check.close(out, oracle(entropy_bits, rows, key), what=f"coverage_entropy(rows, {key!r})",
                hint=oracle(entropy_mistake, out, rows, key))


@pytest.mark.points(1)
def test_coverage_entropy_worked_example_and_edges():
    rows = [{"topic": t} for t in ["a", "a", "b", "c"]]
    out = documents.coverage_entropy(rows, "topic")
    check.close(out, 1.5, what="coverage_entropy of topics a, a, b, c", hint=oracle(entropy_mistake, out, rows, "topic"))
    check.close(documents.coverage_entropy([{"topic": "a"}] * 3, "topic"), 0.0, what="one value only")
    check.close(documents.coverage_entropy([], "topic"), 0.0, what="no rows")
    out = documents.coverage_entropy([{"style": s} for s in ["x", "y", "z", "w"] * 2], "style")
    check.close(out, 2.0, what="coverage_entropy of 4 equally frequent styles", hint="entropy_nats")


# --- dedup_generations ----------------------------------------------------------------------------


def minhash_keep(texts, threshold, num_perm=128, seed=0):
    """week4/dedup's `deduplicate`, from its stub: word 5-gram shingles, the blake2b hash family
    modulo 2**61 - 1, the estimate = the share of equal signature entries, the first of each
    group kept."""
    prime = (1 << 61) - 1

    def seeded(name, i):
        return int.from_bytes(hashlib.blake2b(f"{seed}:{name}:{i}".encode(), digest_size=8).digest(), "little")

    a = [1 + seeded("a", i) % (prime - 1) for i in range(num_perm)]
    b = [seeded("b", i) % prime for i in range(num_perm)]
    signatures = []
    for text in texts:
        words = text.lower().split()
        grams = {" ".join(words[i:i + 5]) for i in range(max(1, len(words) - 4))} if words else set()
        xs = [int.from_bytes(hashlib.blake2b(g.encode(), digest_size=8).digest(), "little") for g in grams]
        signatures.append([min(((ai * x + bi) % prime for x in xs), default=(1 << 64) - 1) for ai, bi in zip(a, b)])
    kept = []
    for j, sig in enumerate(signatures):
        if all(sum(u == v for u, v in zip(sig, signatures[i])) / num_perm < threshold for i in kept):
            kept.append(j)
    return kept


def generations() -> list[str]:
    """Seeded stories of 80 words and near-copies: text 1 copies 0; text 3 is 0 with 7 words in
    a row replaced (Jaccard of the 5-gram shingles 0.765, between deduplicate's 0.8 and this
    kata's 0.7); text 5 is 2 with 22 words replaced (0.588); text 6 is 8 with other spaces and
    case (a copy after normalisation)."""
    rng = random.Random(17)
    words = ("fox duck river hill tree ball cake rain sun moon friend happy sad big little ran saw said "
             "played found gave shared").split()
    stories = [[rng.choice(words) for _ in range(80)] for _ in range(5)]
    edited = [stories[0][:30] + ["zebra"] * 7 + stories[0][37:], stories[2][:30] + ["zebra"] * 22 + stories[2][52:]]
    texts = [" ".join(s) for s in stories]
    return [texts[0], texts[0], texts[1], " ".join(edited[0]), texts[2], " ".join(edited[1]),
            "  ".join(stories[4]).upper(), texts[3], texts[4]]


@pytest.mark.points(2)
@pytest.mark.parametrize("threshold", [None, 0.7, 0.4, 0.95])
def test_dedup_generations_is_week4_deduplicate(threshold):
    texts = generations()
    out = documents.dedup_generations(texts) if threshold is None else documents.dedup_generations(texts, threshold)
    check.equal(out, oracle(minhash_keep, texts, 0.7 if threshold is None else threshold),
                what=f"dedup_generations(texts{'' if threshold is None else f', {threshold}'})",
                hint=oracle(mistake_shown, out, {
                    "default_threshold": [minhash_keep(texts, 0.8)] if threshold is None else [],
                    "threshold_ignored": [minhash_keep(texts, 0.8), minhash_keep(texts, 0.7)] if threshold else [],
                }))


# --- the bar: greedy stories are near-copies, sampled ones are not ---------------------------------
# 24 prompts of a 6 x 3 x 3 grid of (animal, adjective, place) through one story template, 48 new
# tokens each by gpt2-tiny-trained (batched, left-padded; sampled at T=1 with torch.manual_seed(0)).
# Measured with the reference: greedy keeps 10 of 24 at dedup_generations's 0.7, distinct-2 0.077;
# sampled keeps 24, distinct-2 0.597. Bars: greedy keeps <= 14, sampled >= 22, distinct-2 >= 3x.

ANIMALS = ["cat", "dog", "bird", "fox", "frog", "duck"]
ADJECTIVES = ["little", "big", "kind"]
PLACES = ["sea", "park", "house"]
STORY_TEMPLATE = "Once upon a time, there was a {audience} {topic} who lived near the {style}."


@functools.cache
def story_model():
    from transformers import GPT2LMHeadModel, PreTrainedTokenizerFast

    tokenizer = PreTrainedTokenizerFast.from_pretrained(CHECKPOINTS / "gpt2-tiny-trained", padding_side="left")
    return tokenizer, GPT2LMHeadModel.from_pretrained(CHECKPOINTS / "gpt2-tiny-trained").eval()


def write_stories(prompts: list[str], sample: bool) -> list[str]:
    """48 new tokens per prompt from the test's model (test glue, not student code), decoded."""
    tokenizer, model = story_model()
    batch = tokenizer(prompts, return_tensors="pt", padding=True)
    with torch.random.fork_rng(), torch.no_grad():
        torch.manual_seed(0)
        options = {"do_sample": True, "temperature": 1.0, "top_k": 0, "top_p": 1.0} if sample else {"do_sample": False}
        out = model.generate(**batch, max_new_tokens=48, min_new_tokens=48, pad_token_id=511, **options)
    return [tokenizer.decode(row[batch["input_ids"].shape[1]:]) for row in out]


@pytest.mark.slow  # ~4-9 s, most of it importing transformers: graded, but not in the default suite
@pytest.mark.points(3)
def test_sampled_stories_are_diverse_where_greedy_ones_repeat():
    rows = documents.prompt_grid(ANIMALS, ADJECTIVES, PLACES, 24, 0, template=STORY_TEMPLATE)
    prompts = [row["prompt"] for row in rows]
    greedy, sampled = write_stories(prompts, sample=False), write_stories(prompts, sample=True)
    kept_greedy, kept_sampled = documents.dedup_generations(greedy), documents.dedup_generations(sampled)
    d_greedy, d_sampled = documents.distinct_n(greedy, 2), documents.distinct_n(sampled, 2)
    check.that(len(set(prompts)) == 24, f"24 different prompts, got {len(set(prompts))}", about=prompts)
    check.that(len(kept_greedy) <= 14,
               f"greedy stories are near-copies: dedup_generations should keep <= 14 of 24, kept {len(kept_greedy)}",
               about=kept_greedy)
    check.that(len(kept_sampled) >= 22,
               f"sampled stories differ: dedup_generations should keep >= 22 of 24, kept {len(kept_sampled)}",
               about=kept_sampled)
    check.that(d_sampled >= 3 * d_greedy,
               f"distinct-2 of the sampled stories ({d_sampled:.3f}) should be >= 3x the greedy ones' ({d_greedy:.3f})")
