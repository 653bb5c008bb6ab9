"""Hidden tests for week4/documents: fresh seeded documents, pages, texts, grids and
generations. Expected values: the text written into each PDF (and the lines placed on each
page), the reference, `random.Random(seed).sample` of the product grid, scipy's entropy."""

import random

import pytest

from graders import check, oracle, reference, student
from graders.testing import mistake_shown

from .test_documents import (WORDS, chunk_mistake, decode, encode, entropy_bits, entropy_mistake, extraction_mistake,
                             grid_mistake, join_mistake, lay_out, make_pdf, minhash_keep, placed_pages, random_document,
                             sampled_rows, written_text)

pytestmark = pytest.mark.hidden

documents = student("week4.documents")
model_solution = reference("week4.documents")

HEADERS = ["Field Notes of the Northern Survey", "Proceedings, Volume 7", "CHAPTER NOTES"]
FOOTERS = ["- {k} -", "{k}/{nb}", "Draft {k} of {nb}, do not cite"]


@pytest.mark.points(3)
@pytest.mark.parametrize("seed", [101, 102, 103, 104])
def test_pdf_to_text_of_fresh_documents(seed):
    document = random_document(seed)
    header, footer = HEADERS[seed % 3], FOOTERS[seed % 3]
    pages = lay_out(document, width=45 + seed % 20)
    pdf = make_pdf(pages, header=header, footer=footer)
    out = documents.extract_pages(pdf)
    check.equal(out, oracle(placed_pages, pages, header, footer), what=f"extract_pages(document {seed})",
                hint=oracle(extraction_mistake, out, placed_pages(pages, header, footer)))
    check.equal(documents.pdf_to_text(pdf), oracle(written_text, document), what=f"pdf_to_text(document {seed})")


def random_pages(seed):
    """Normal-form pages: some with a header (one or two lines), some with a numbered footer, a
    stamp on a few, bodies of random lines (some with numbers, some like the footer)."""
    rng = random.Random(seed)
    n = rng.randint(1, 8)
    pages = []
    for k in range(1, n + 1):
        top = [] if rng.random() < 0.2 else ["The Orchard Quarterly"] + (["Issue 12"] if rng.random() < 0.5 else [])
        body = []
        for _ in range(rng.randint(0, 6)):
            r = rng.random()
            if r < 0.1:
                body.append(f"Page {rng.randint(1, 99)} of {n}")
            elif r < 0.2:
                body.append("")
            else:
                body.append(" ".join(rng.choice(WORDS) for _ in range(rng.randint(1, 7))))
        bottom = [f"Page {k} of {n}"] if rng.random() < 0.7 else []
        if rng.random() < 0.3:
            bottom.append("CONFIDENTIAL")
        lines = top + [""] + body + [""] + bottom
        text, blank = [], True
        for line in lines:
            if line or not blank:
                text.append(line)
            blank = not line
        pages.append("\n".join(text).strip("\n"))
    return pages


@pytest.mark.points(2)
@pytest.mark.parametrize("seed", range(201, 209))
def test_remove_boilerplate_of_fresh_pages(seed):
    pages = random_pages(seed)
    rng = random.Random(seed)
    min_fraction, edge_lines = rng.choice([0.25, 0.4, 0.5, 0.75, 1.0]), rng.choice([0, 1, 2, 3])
    out = documents.remove_boilerplate(pages, min_fraction=min_fraction, edge_lines=edge_lines)
    check.equal(out, model_solution.remove_boilerplate(pages, min_fraction=min_fraction, edge_lines=edge_lines),
                what=f"remove_boilerplate(pages {seed}, min_fraction={min_fraction}, edge_lines={edge_lines})")


LINE_ENDS = ["", "", ",", ".", "!", "?", ":", ".\"", "?'", ".)", "-", " -"]


def random_text_pages(seed):
    """Pages of lines of random words ending in random punctuation or hyphens; some empty pages."""
    rng = random.Random(seed)
    pages = []
    for _ in range(rng.randint(1, 6)):
        lines = []
        for _ in range(rng.randint(0, 5)):
            words = [rng.choice(WORDS + ["Anglo", "gar", "den", "well-known"]) for _ in range(rng.randint(1, 6))]
            lines.append(" ".join(words) + rng.choice(LINE_ENDS))
            if rng.random() < 0.2:
                lines.append("")
        while lines and not lines[-1]:
            lines.pop()
        pages.append("\n".join(lines).strip("\n").replace("\n\n\n", "\n\n"))
    return pages


@pytest.mark.points(2)
@pytest.mark.parametrize("seed", range(301, 307))
def test_join_dehyphenate_unwrap_of_fresh_pages(seed):
    pages = random_text_pages(seed)
    joined = documents.join_pages(pages)
    check.equal(joined, model_solution.join_pages(pages), what=f"join_pages(pages {seed})",
                hint=oracle(join_mistake, joined, pages))
    text = "\n\n".join(page for page in pages if page)  # paragraphs of lines ending in hyphens, dashes, ...
    check.equal(documents.dehyphenate(text), model_solution.dehyphenate(text), what=f"dehyphenate({text!r})")
    check.equal(documents.unwrap(text), model_solution.unwrap(text), what=f"unwrap({text!r})")


@pytest.mark.points(2)
@pytest.mark.parametrize("seed", range(401, 406))
def test_chunks_of_fresh_ids_and_texts(seed):
    rng = random.Random(seed)
    n, chunk_size = rng.randint(0, 300), rng.randint(1, 40)
    overlap = rng.randint(0, chunk_size - 1)
    ids = [rng.randrange(512) for _ in range(n)]
    out = documents.chunk_tokens(ids, chunk_size, overlap)
    check.equal(out, model_solution.chunk_tokens(ids, chunk_size, overlap),
                what=f"chunk_tokens({n} ids, chunk_size={chunk_size}, overlap={overlap})",
                hint=oracle(chunk_mistake, out, ids, chunk_size, overlap))
    text = " ".join(rng.choice(WORDS) for _ in range(rng.randint(5, 80)))
    check.equal(documents.chunk_text(text, encode, decode, chunk_size, overlap),
                model_solution.chunk_text(text, encode, decode, chunk_size, overlap),
                what=f"chunk_text(text, chunk_size={chunk_size}, overlap={overlap})")


@pytest.mark.points(2)
@pytest.mark.parametrize("seed", range(501, 505))
def test_prompt_grid_of_fresh_lists(seed):
    rng = random.Random(seed)
    topics = rng.sample(["owls", "glaciers", "prime numbers", "bread", "trains", "moss", "jazz"], rng.randint(1, 7))
    audiences = rng.sample(["toddlers", "engineers", "nurses", "teenagers"], rng.randint(1, 4))
    styles = rng.sample(["limerick", "lecture", "FAQ", "diary entry", "recipe"], rng.randint(1, 5))
    n = rng.randint(1, len(topics) * len(audiences) * len(styles))
    template = rng.choice(["Write a {style} about {topic} for {audience}.", "{topic} / {audience} / {style}"])
    out = documents.prompt_grid(topics, audiences, styles, n, seed, template=template)
    check.equal(out, oracle(sampled_rows, topics, audiences, styles, n, seed, template),
                what=f"prompt_grid({topics}, {audiences}, {styles}, n={n}, seed={seed})",
                hint=oracle(grid_mistake, out, topics, audiences, styles, n, seed, template))


@pytest.mark.points(2)
@pytest.mark.parametrize("seed", range(601, 605))
def test_distinct_n_and_coverage_entropy_of_fresh_corpora(seed):
    rng = random.Random(seed)
    texts = [" ".join(rng.choice(WORDS[:12] + ["The", "THE", "the"]) for _ in range(rng.randint(0, 12)))
             for _ in range(rng.randint(1, 8))]
    n = rng.randint(1, 4)
    check.close(documents.distinct_n(texts, n), model_solution.distinct_n(texts, n), what=f"distinct_n({texts!r}, {n})")
    rows = [{"topic": rng.choice(WORDS[:rng.randint(1, 9)]), "style": "story"} for _ in range(rng.randint(1, 30))]
    out = documents.coverage_entropy(rows, "topic")
    check.close(out, oracle(entropy_bits, rows, "topic"), what="coverage_entropy(rows, 'topic')",
                hint=oracle(entropy_mistake, out, rows, "topic"))


def near_copies(seed):
    """Fresh seeded stories, each followed by zero to two copies with a few words changed."""
    rng = random.Random(seed)
    texts = []
    for _ in range(rng.randint(3, 6)):
        story = [rng.choice(WORDS) for _ in range(rng.randint(20, 50))]
        texts.append(" ".join(story))
        for _ in range(rng.randint(0, 2)):
            copy = list(story)
            for i in rng.sample(range(len(copy)), rng.randint(0, len(copy) // 3)):
                copy[i] = rng.choice(WORDS)
            texts.append(" ".join(copy))
    return texts


@pytest.mark.points(2)
@pytest.mark.parametrize("seed", range(701, 704))
def test_dedup_generations_of_fresh_near_copies(seed):
    texts = near_copies(seed)
    out = documents.dedup_generations(texts)
    check.equal(out, model_solution.dedup_generations(texts), what="dedup_generations(texts)",
                hint=oracle(mistake_shown, out, {"default_threshold": [minhash_keep(texts, 0.8)]}))
    for threshold in (0.5, 0.9):
        out = documents.dedup_generations(texts, threshold)
        check.equal(out, model_solution.dedup_generations(texts, threshold),
                    what=f"dedup_generations(texts, {threshold})",
                    hint=oracle(mistake_shown, out, {"threshold_ignored": [minhash_keep(texts, 0.8),
                                                                           minhash_keep(texts, 0.7)]}))
