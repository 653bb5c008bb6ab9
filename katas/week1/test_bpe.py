"""Public tests for week1/bpe.

Oracles: tiktoken (an `Encoding` built offline from the same merges) for encoding; Python's
own `str.replace`, `collections.Counter` and `bytes.decode(errors="replace")` for the small
functions; golden fixtures made by the reference for training (the tie-break makes the
merges unique, so they are compared exactly) and for what tiktoken does not do (special
tokens matched longest first).
"""

import functools
import hashlib
import inspect
import json
import random
from collections import Counter

import pytest
import regex
import tiktoken
import tiktoken_ext.openai_public
from hypothesis import given, strategies as st

from graders import check, fixtures, oracle, student, throughput
from graders.testing import mistake_shown

bpe = student("week1.bpe")

EOT = "<|endoftext|>"
GPT2 = tiktoken_ext.openai_public.r50k_pat_str
# cl100k_base's pat_str is only written inside a function in tiktoken_ext; the test below
# checks that this copy is verbatim in its source.
GPT4 = r"""'(?i:[sdmt]|ll|ve|re)|[^\r\n\p{L}\p{N}]?+\p{L}++|\p{N}{1,3}+| ?[^\s\p{L}\p{N}]++[\r\n]*+|\s++$|\s*[\r\n]|\s+(?!\S)|\s"""
PATTERNS = {"gpt4": GPT4, "gpt2": GPT2, "none": None}
CORPUS_DIR = fixtures.FIXTURES_DIR / "corpus"

# Texts for the tiktoken comparison, one per kind of input.
TEXTS = {
    "english": "Once upon a time, there was a little cat named Lily. She liked to play in the garden!",
    "contractions": "I'm sure they'll say it's fine, but we've had WE'RE and DON'T before.",
    "numbers": "In 2024 we sold 1234567 apples for $3.99 each (12.5% off), i.e. 4,938,271.33.",
    "code": 'def add(a, b):\n    """Add."""\n    return a + b\n\nif __name__ == "__main__":\n\tprint(add(1, 2))\n',
    "cjk": "今天天气很好。学习新的语言需要耐心。きょうはいい天気ですね。오늘은 날씨가 좋아요.",
    "arabic": "الطقس جميل اليوم. وجدت القطة كرة حمراء في الحديقة.",
    "cyrillic_greek_hindi": "Кошка нашла мяч. Η γάτα βρήκε μια μπάλα. बिल्ली को गेंद मिली।",
    "emoji": "I love my cat 🐱🐱! Family: 👨‍👩‍👧‍👦, thumbs 👍🏽, flags 🇫🇷🇯🇵.",
    "whitespace": "a  b   c    d\t\te\n\n\nf   \r\n  g     \n    ",
    "mixed": "Tom说: «Привет, 世界!» 🙂 x=1;\ty = 22  #注释\n   مرحبا   end",
}


# --- helpers (no student code here) ------------------------------------------------------


@functools.cache
def data():
    return fixtures.load("week1/bpe")


@functools.cache
def corpus():
    text = (CORPUS_DIR / "corpus.txt").read_text(encoding="utf-8")
    assert hashlib.sha256(text.encode("utf-8")).hexdigest() == data()["corpus_sha256"], \
        "fixtures/corpus/corpus.txt is not the corpus the fixtures were made from"
    return text


def special_text(text):
    """The corpus with its document separators rotated through three special strings."""
    docs = text.split(EOT)
    seps = ["<|a|><|b|>", "<|a|>", EOT]
    return "".join(doc + seps[i % 3] for i, doc in enumerate(docs))


def training_text(name):
    if name == "special_text":
        return special_text(corpus())
    if name == "corpus":
        return corpus()
    return corpus()[: int(name.removeprefix("corpus[:").removesuffix("]"))]


def expected_training(name):
    """(vocab, merges) the reference learned for fixture configuration `name`."""
    t = data()["train"][name]
    vocab = {int(i): bytes.fromhex(h) for i, h in t["vocab"].items()}
    merges = [(bytes.fromhex(a), bytes.fromhex(b)) for a, b in t["merges"]]
    return vocab, merges


def train_args(name):
    t = data()["train"][name]
    return training_text(t["text"]), t["vocab_size"], PATTERNS[t["pattern"]], t["special_tokens"]


def tokenizer_inputs(name="gpt4_512_eot"):
    """vocab, merges, pattern, specials of a fixture tokenizer (gpt4_512_eot is the shipped one)."""
    vocab, merges = expected_training(name)
    t = data()["train"][name]
    return vocab, merges, PATTERNS[t["pattern"]], t["special_tokens"]


@functools.cache
def tiktoken_encoding(name="gpt4_512_eot"):
    """The oracle: tiktoken with the same merges (ranks are the ids), no download."""
    vocab, merges, pattern, specials = tokenizer_inputs(name)
    n_ordinary = 256 + len(merges)
    return tiktoken.Encoding(
        name=f"kata-{name}", pat_str=pattern,
        mergeable_ranks={vocab[i]: i for i in range(n_ordinary)},
        special_tokens={s: n_ordinary + k for k, s in enumerate(specials)},
    )


def make_tokenizer(name="gpt4_512_eot", specials=True):
    vocab, merges, pattern, special_tokens = tokenizer_inputs(name)
    return bpe.Tokenizer(vocab, merges, pattern, special_tokens if specials else None)


def random_texts(seed, n):
    """Seeded strings of arbitrary Unicode (any plane, no surrogates), biased towards
    multi-byte characters and whitespace runs. One Tokenizer serves them all, so these are
    loops rather than hypothesis examples."""
    rng = random.Random(seed)
    planes = [(0x20, 0x7E), (0x80, 0x7FF), (0x800, 0xFFFF), (0x10000, 0x10FFFF)]
    texts = []
    for _ in range(n):
        chars = []
        for _ in range(rng.randint(0, 40)):
            if rng.random() < 0.15:
                chars.append(rng.choice([" ", "  ", "\n", "\t", "\r\n", "   "]))
                continue
            cp = rng.randint(*rng.choice(planes))
            chars.append(chr(0xFFFD if 0xD800 <= cp <= 0xDFFF else cp))
        texts.append("".join(chars))
    return texts


def pairs_oracle(ids):
    return dict(Counter(zip(ids, ids[1:])))


def merge_oracle(ids, pair, new_id):
    """Non-overlapping, left-to-right replacement is exactly what str.replace does."""
    symbols = [chr(0x4E00 + i) for i in ids]
    merged = "".join(symbols).replace(chr(0x4E00 + pair[0]) + chr(0x4E00 + pair[1]), chr(0x4E00 + new_id))
    return [ord(c) - 0x4E00 for c in merged]


# --- which mistake a wrong result shows (called only through oracle(...)) -----------------
#
# A failing check names a mistake only when the student's result is what that mistake gives
# (or, for training, when the first merge that differs was a tie): a result that matches no
# mistake names none, rather than one the student may not have made.


def pair_count_mistake(out, ids):
    """get_pair_counts' wrong counts `out`: pairs counted without overlap (`overlapping_merge`)."""
    every_other = dict(Counter(zip(ids[::2], ids[1::2])))
    # left to right, skipping past each occurrence, as str.count does
    skipping = {pair: len(ids) - len(merge_oracle(ids, pair, 10**6)) for pair in pairs_oracle(ids)}
    return mistake_shown(out, {"overlapping_merge": [every_other, skipping]})


def counted_in_place_mistake(result, start, ids):
    """What get_pair_counts(ids, counts) got wrong, given `result` (the dict passed in, or the
    one returned) and `start` (the counts before): the dict left alone or a fresh one
    (`pair_counts_in_place`), or the counts themselves."""
    if result == start or result == pairs_oracle(ids):
        return "pair_counts_in_place"
    if not isinstance(result, dict):
        return None
    added = {pair: n - start.get(pair, 0) for pair, n in result.items() if n != start.get(pair, 0)}
    return pair_count_mistake(added, ids)


def overlapping(ids, pair, new_id):
    """merge_pair that looks for the next occurrence inside the one it just replaced (i += 1)."""
    out = []
    for i in range(len(ids)):
        out.append(new_id if i + 1 < len(ids) and (ids[i], ids[i + 1]) == tuple(pair) else ids[i])
    return out


def merge_mistake(out, ids, pair, new_id):
    """merge_pair's wrong output `out`: occurrences overlapping, or replaced right to left."""
    right_to_left = merge_oracle(ids[::-1], pair[::-1], new_id)[::-1]
    return mistake_shown(out, {"overlapping_merge": [overlapping(ids, pair, new_id), right_to_left]})


def chunk_ids(text, pattern, special_tokens, longest_first=True):
    """The byte ids of every chunk training sees, by the stub's steps: cut at the special
    tokens (longest first, or in the order given), then split each piece with `pattern`
    (None: the piece is one chunk)."""
    pieces = [text]
    if special_tokens:
        ordered = sorted(special_tokens, key=len, reverse=True) if longest_first else list(special_tokens)
        pieces = regex.split("|".join(regex.escape(s) for s in ordered), text)
    return [list(c.encode("utf-8")) for p in pieces for c in ([p] if pattern is None else regex.findall(pattern, p)) if c]


def training(text, vocab_size, pattern, special_tokens, longest_first=True):
    """BPE training by the stub's steps, one merge at a time: yields (counts, best, vocab)
    before each merge, with each distinct chunk counted once, weighted by its frequency."""
    words = Counter(tuple(ids) for ids in chunk_ids(text, pattern, special_tokens, longest_first))
    vocab = {i: bytes([i]) for i in range(256)}
    for new_id in range(256, vocab_size - len(special_tokens)):
        counts = Counter()
        for ids, n in words.items():
            for pair in zip(ids, ids[1:]):
                counts[pair] += n
        if not counts:
            return
        best = max(counts, key=lambda p: (counts[p], vocab[p[0]], vocab[p[1]]))
        yield counts, best, vocab
        vocab[new_id] = vocab[best[0]] + vocab[best[1]]
        merged = Counter()
        for ids, n in words.items():
            merged[tuple(merge_oracle(list(ids), best, new_id))] += n
        words = merged


def learned_merges(text, vocab_size, pattern, special_tokens, longest_first=True):
    """The merges training by the stub's steps learns."""
    return [(vocab[a], vocab[b]) for _, (a, b), vocab in training(text, vocab_size, pattern, special_tokens,
                                                                   longest_first)]


def tie_break_mistake(merges, text, vocab_size, pattern, special_tokens=()):
    """`wrong_tie_break` when the first of `merges` that differs from the right ones had the
    same count as the right one (a tie, broken otherwise); None when it was not a tie (the
    pair counts, or the merges before it, differ instead) or nothing differs."""
    if not isinstance(merges, list):
        return None
    for step, (counts, best, vocab) in enumerate(training(text, vocab_size, pattern, special_tokens)):
        if step >= len(merges):
            return None
        if merges[step] != (vocab[best[0]], vocab[best[1]]):
            ids_of = {b: i for i, b in vocab.items()}
            theirs = tuple(ids_of.get(b) for b in merges[step]) if isinstance(merges[step], tuple) else None
            return "wrong_tie_break" if theirs in counts and counts[theirs] == counts[best] else None
    return None


# --- get_pair_counts and merge_pair ------------------------------------------------------


@pytest.mark.points(1)
def test_pair_counts_overlap():
    out = bpe.get_pair_counts([1, 1, 1])
    check.equal(out, pairs_oracle([1, 1, 1]), hint=oracle(pair_count_mistake, out, [1, 1, 1]))
    check.equal(bpe.get_pair_counts([5]), {})
    check.equal(bpe.get_pair_counts([]), {})


@pytest.mark.points(1)
@given(ids=st.lists(st.integers(0, 3), max_size=30))
def test_pair_counts_match_counter(ids):
    out = bpe.get_pair_counts(ids)
    check.equal(out, pairs_oracle(ids), hint=oracle(pair_count_mistake, out, ids))


@pytest.mark.points(1)
def test_pair_counts_update_in_place():
    start = {(7, 7): 5, (1, 2): 1}
    counts = dict(start)
    expected = oracle(lambda: dict(Counter(counts) + Counter(pairs_oracle([7, 7, 7, 1, 2]))))
    out = bpe.get_pair_counts([7, 7, 7, 1, 2], counts)
    check.equal(counts, expected, hint=oracle(counted_in_place_mistake, counts, start, [7, 7, 7, 1, 2]),
                what="the dict passed in as counts")
    check.equal(out, expected, hint=oracle(counted_in_place_mistake, out, start, [7, 7, 7, 1, 2]),
                what="the returned counts")


@pytest.mark.points(1)
def test_merge_pair_does_not_overlap():
    for ids in ([5, 5, 5], [5, 5, 5, 5], [1, 5, 5, 5, 2, 5, 5]):
        out = bpe.merge_pair(ids, (5, 5), 9)
        check.equal(out, merge_oracle(ids, (5, 5), 9), hint=oracle(merge_mistake, out, ids, (5, 5), 9))


@pytest.mark.points(2)
@given(ids=st.lists(st.integers(0, 2), max_size=25), pair=st.tuples(st.integers(0, 2), st.integers(0, 2)))
def test_merge_pair_matches_str_replace(ids, pair):
    before = list(ids)
    out = bpe.merge_pair(ids, pair, 7)
    check.equal(out, merge_oracle(before, pair, 7), hint=oracle(merge_mistake, out, before, pair, 7))
    check.equal(ids, before, what="the input list (merge_pair must not modify it)")


# --- train_bpe ---------------------------------------------------------------------------


@pytest.mark.points(1)
def test_train_worked_example_tie_break():
    """The catalogue's worked example: (b" ", b" ") first, then the tie goes to (b"  ", b" ")."""
    vocab, merges = bpe.train_bpe("   a", 258, None)
    check.equal(merges, [(b" ", b" "), (b"  ", b" ")], hint=oracle(tie_break_mistake, merges, "   a", 258, None),
                what="merges")
    check.equal(vocab, {**{i: bytes([i]) for i in range(256)}, 256: b"  ", 257: b"   "},
                hint="vocab_layout", what="vocab")


@pytest.mark.points(2)
@pytest.mark.parametrize("name", ["none_290", "none_300_eot"])
def test_train_ties_without_pattern(name):
    """Short texts with no split pattern: many pairs tie, only the tie-break decides."""
    vocab, merges = bpe.train_bpe(*train_args(name))
    check.equal(merges, expected_training(name)[1], hint=oracle(tie_break_mistake, merges, *train_args(name)),
                what="merges")


def merges_across_chunks(merges, text, pattern, special_tokens=(EOT,)):
    """Merged tokens that are a substring of no chunk of `text` (called only through oracle(...))."""
    pieces = regex.split("|".join(regex.escape(t) for t in sorted(special_tokens, key=len, reverse=True)), text) if special_tokens else [text]
    chunks = {c for piece in pieces for c in regex.findall(pattern, piece)}
    blob = "\x00".join(chunks).encode("utf-8")  # NUL never occurs in the corpus
    return [a + b for a, b in merges if a + b not in blob]


def chunk_mistake(merges, text, vocab_size, pattern, special_tokens=()):
    """`cross_chunk_merge` when some merged token spans two chunks of the split; None when none
    does, or when `merges` is not a list of byte pairs (called only through oracle(...))."""
    if pattern is None or not isinstance(merges, list) or not all(
            isinstance(m, tuple) and len(m) == 2 and all(type(b) is bytes for b in m) for m in merges):
        return None
    return "cross_chunk_merge" if merges_across_chunks(merges, text, pattern, special_tokens) else None


@pytest.mark.points(2)
@pytest.mark.parametrize("pattern", ["gpt4", "gpt2"])
def test_merges_stay_inside_chunks(pattern):
    """Every merged token must be a substring of some chunk of the training text (a short
    training, before the long ones below, so that this mistake is named early)."""
    text = corpus()[:60000]
    vocab, merges = bpe.train_bpe(text, 400, PATTERNS[pattern], [EOT])
    crossing = oracle(merges_across_chunks, merges, text, PATTERNS[pattern])
    check.that(not crossing, f"merged tokens that span two chunks of the {pattern} split: {crossing[:5]}",
               hint="cross_chunk_merge")


@pytest.mark.points(2)
@pytest.mark.parametrize("name", ["gpt4_512_eot", "gpt4_800", "gpt2_700_eot", "gpt4_600_specials"])
def test_train_matches_reference(name):
    vocab, merges = bpe.train_bpe(*train_args(name))
    check.equal(merges, expected_training(name)[1], hint=oracle(chunk_mistake, merges, *train_args(name)),
                what="merges")
    check.equal(vocab, expected_training(name)[0], hint="vocab_layout", what="vocab")


@pytest.mark.points(1)
def test_train_default_pattern_is_gpt4():
    """The default pattern is GPT4_SPLIT_PATTERN, and both patterns are tiktoken's, verbatim."""
    text, vocab_size, _, specials = train_args("gpt4_512_eot")
    _, merges = bpe.train_bpe(text, vocab_size, special_tokens=specials)
    check.equal(merges, expected_training("gpt4_512_eot")[1], what="merges with the default pattern",
                hint="pattern_ignored", likely_if="the same training with pattern=GPT4_SPLIT_PATTERN passes "
                "(test_train_matches_reference[gpt4_512_eot])")
    assert GPT4 in inspect.getsource(tiktoken_ext.openai_public.cl100k_base)  # our own copy, not graded
    check.equal(bpe.GPT2_SPLIT_PATTERN, GPT2, what="GPT2_SPLIT_PATTERN (tiktoken's r50k_base pat_str)")
    check.equal(bpe.GPT4_SPLIT_PATTERN, GPT4, what="GPT4_SPLIT_PATTERN (tiktoken's cl100k_base pat_str)")


@pytest.mark.points(1)
def test_train_stops_when_pairs_run_out():
    """30 KB of stories has fewer distinct pairs than 2000 ids: training stops early and the
    special token's id follows the last merge."""
    vocab, merges = bpe.train_bpe(*train_args("gpt2_2000_eot"))
    check.equal(merges, expected_training("gpt2_2000_eot")[1], what="merges",
                hint=oracle(chunk_mistake, merges, *train_args("gpt2_2000_eot")))
    check.equal(vocab, expected_training("gpt2_2000_eot")[0], hint="vocab_layout", what="vocab")


@pytest.mark.points(1)
def test_special_token_text_is_not_trained():
    text = corpus()
    assert "<|" not in text.replace(EOT, "") and "|>" not in text.replace(EOT, "")  # input sanity
    vocab, merges = bpe.train_bpe(text, 512, GPT4, [EOT])
    trained = [a + b for a, b in merges if b"<|" in a + b or b"|>" in a + b or b"endoftext" in a + b]
    check.that(not trained, f"merges learned from the special token's own text: {trained[:5]}",
               hint="special_trained")


def docstring_train(text, vocab_size, pattern, special_tokens, longest_first=True):
    """train_bpe written from the stub's steps, plainly (recount every pair for every merge):
    cut at the specials, split each piece with `pattern` (None: the piece is one chunk), merge
    the most frequent pair, ties to the greatest (vocab[a], vocab[b]). Only through oracle(...)."""
    words = chunk_ids(text, pattern, special_tokens, longest_first)
    vocab = {i: bytes([i]) for i in range(256)}
    merges = []
    for new_id in range(256, vocab_size - len(special_tokens)):
        counts = Counter(p for ids in words for p in zip(ids, ids[1:]))
        if not counts:
            break
        a, b = max(counts, key=lambda p: (counts[p], vocab[p[0]], vocab[p[1]]))
        vocab[new_id] = vocab[a] + vocab[b]
        merges.append((vocab[a], vocab[b]))
        words = [merge_oracle(ids, (a, b), new_id) for ids in words]
    for s in special_tokens:
        vocab[len(vocab)] = s.encode("utf-8")
    return vocab, merges


def trained_pattern_mistake(merges, text, vocab_size, pattern, special_tokens):
    """`pattern_ignored` when `merges` are what another split than `pattern` learns (the
    default GPT-4 one, GPT-2's, or none); else the tie-break diagnosis."""
    others = [p for p in (GPT4, GPT2, None) if p != pattern]
    return (mistake_shown(merges, {"pattern_ignored": [learned_merges(text, vocab_size, other, special_tokens)
                                                       for other in others]})
            or tie_break_mistake(merges, text, vocab_size, pattern, special_tokens))


@pytest.mark.points(1)
@pytest.mark.parametrize("pattern", ["gpt2", "none"])
def test_train_uses_the_pattern_it_is_given(pattern):
    """GPT-2's split keeps a space with the number after it (" 2024"), GPT-4's cuts numbers into
    runs of at most 3 digits ("202", "4"), and None splits nothing (pairs span words): each
    gives other merges on the same text."""
    text = corpus()[:4000] + "".join(f" {n}" for n in range(1990, 2100))  # GPT-2 keeps " 2024" whole
    expected = oracle(docstring_train, text, 300, PATTERNS[pattern], [EOT])  # (vocab, merges)
    vocab, merges = bpe.train_bpe(text, 300, PATTERNS[pattern], [EOT])
    check.equal(merges, expected[1], hint=oracle(trained_pattern_mistake, merges, text, 300, PATTERNS[pattern], [EOT]),
                what=f"merges with pattern={pattern}")


@pytest.mark.points(1)
def test_vocab_size_counts_the_special_tokens():
    """vocab_size counts the 256 bytes, the merges and the special tokens: 300 ids with three
    specials is 41 merges; the specials follow the last merge in the order given (not sorted)."""
    specials = ["<|z|>", EOT, "<|a|>"]
    vocab, merges = bpe.train_bpe(corpus()[:20000], 300, GPT4, specials)
    n_merges = len(merges)
    check.equal(n_merges, 300 - 256 - len(specials), hint="vocab_layout", what="len(merges) for vocab_size=300")
    check.equal(len(vocab), 300, hint="vocab_layout", what="len(vocab) for vocab_size=300")
    tail = [vocab.get(i) for i in range(297, 300)]
    check.equal(tail, [s.encode("utf-8") for s in specials], hint="vocab_layout",
                what="vocab[297:300] (the special tokens, in the order given)")


@pytest.mark.points(1)
def test_no_special_token_text_is_trained():
    """Three specials, one a prefix of another, given in neither sorted nor length order: the
    text is cut at every one of them before training."""
    text = special_text(corpus())
    vocab, merges = bpe.train_bpe(text, 400, GPT4, [EOT, "<|a|><|b|>", "<|a|>"])
    trained = [a + b for a, b in merges if b"<|" in a + b or b"|>" in a + b or b"endoftext" in a + b]
    check.that(not trained, f"merges learned from the special tokens' own text: {trained[:5]}",
               hint="special_trained")


# --- Tokenizer.encode against tiktoken ---------------------------------------------------


@pytest.mark.points(1)
@pytest.mark.parametrize("kind", list(TEXTS))
def test_encode_matches_tiktoken(kind):
    tok = make_tokenizer()
    check.equal(tok.encode(TEXTS[kind]), tiktoken_encoding().encode_ordinary(TEXTS[kind]))


@pytest.mark.points(1)
@pytest.mark.parametrize("name", ["gpt2_700_eot", "gpt4_800"])
def test_encode_matches_tiktoken_other_vocabularies(name):
    text = "\n".join(TEXTS.values())
    tok = make_tokenizer(name, specials=False)
    check.equal(tok.encode(text), tiktoken_encoding(name).encode_ordinary(text))


@pytest.mark.points(2)
def test_encode_applies_merges_by_rank():
    """Single chunks (no splitting involved): merges must be replayed in the order learned."""
    words = sorted(set(regex.findall(GPT4, corpus()[:50000] + " ".join(TEXTS.values()))))
    tok = make_tokenizer()
    out = [tok.encode(w) for w in words]
    check.equal(out, [tiktoken_encoding().encode_ordinary(w) for w in words],
                hint=oracle(merge_order_mistake, out, "gpt4_512_eot", words), what="ids of each chunk")


@pytest.mark.points(2)
def test_encode_never_merges_across_chunks():
    text = "\n".join(TEXTS.values()) + " " + corpus()[:3000].replace(EOT, "\n")
    tok = make_tokenizer()
    by_chunk = [i for chunk in regex.findall(GPT4, text) for i in tok.encode(chunk)]
    check.equal(tok.encode(text), by_chunk, hint="cross_chunk_merge",
                what="encode(text) vs the concatenated encodings of its chunks")


@pytest.mark.points(1)
def test_encode_matches_tiktoken_on_any_text():
    tok = make_tokenizer()
    for text in random_texts(seed=0, n=60):
        check.equal(tok.encode(text), tiktoken_encoding().encode_ordinary(text), what=f"encode({text!r:.60})")


@pytest.mark.points(1)
def test_encode_corpus_documents():
    docs = corpus().split(EOT)[:200]
    tok = make_tokenizer()
    check.equal([tok.encode(d) for d in docs], [tiktoken_encoding().encode_ordinary(d) for d in docs])


def tiktoken_ids(name, pattern, text, specials=()):
    """tiktoken with the merges of fixture `name`, split by `pattern` (None: one piece), special
    ids looked up in the fixture's vocab: the ids of `text`. Only through oracle(...)."""
    return ids_by_tiktoken(name, pattern, text, specials)


def ids_by_tiktoken(name, pattern, text, specials=()):
    """tiktoken_ids, for the helpers below that work out a hint."""
    vocab, merges, _, _ = tokenizer_inputs(name)
    n_ordinary = 256 + len(merges)
    byte_id = {b: i for i, b in vocab.items()}
    encoding = tiktoken.Encoding(
        name=f"kata-{name}-{len(specials)}", pat_str=r"[\s\S]+" if pattern is None else pattern,
        mergeable_ranks={vocab[i]: i for i in range(n_ordinary)},
        special_tokens={s: byte_id[s.encode("utf-8")] for s in specials},
    )
    return encoding.encode(text, allowed_special="all")


def by_frequency(name, text):
    """The ids of `text` (no special tokens in it) when each chunk merges its most frequent
    known pair first, not the one learned earliest: the `merge_order` mistake."""
    vocab, merges, pattern, _ = tokenizer_inputs(name)
    byte_id = {b: i for i, b in vocab.items()}
    merged_id = {(byte_id[a], byte_id[b]): byte_id[a + b] for a, b in merges}
    out = []
    for chunk in ([text] if pattern is None else regex.findall(pattern, text)):
        ids = list(chunk.encode("utf-8"))
        while True:
            counts = pairs_oracle(ids)
            known = [pair for pair in counts if pair in merged_id]
            if not known:
                break
            best = max(known, key=lambda pair: counts[pair])
            ids = merge_oracle(ids, best, merged_id[best])
        out.extend(ids)
    return out


def merge_order_mistake(out, name, texts):
    """`merge_order` when the ids of every text are those of merging the most frequent pair first."""
    return mistake_shown(out, {"merge_order": [[by_frequency(name, text) for text in texts]]})


def pattern_mistake(out, name, pattern, text):
    """`pattern_ignored` when the ids of `text` are those of another split than `pattern`
    (the default GPT-4 one, GPT-2's, or none)."""
    others = [p for p in (GPT4, GPT2, None) if p != pattern]
    return mistake_shown(out, {"pattern_ignored": [ids_by_tiktoken(name, other, text) for other in others]})


def ids_with_specials(name, text, specials, longest_first=True, ids_by_position=False):
    """The ids of `text` with `specials` cut out first (longest first, or in the order given),
    each special's id looked up in the vocab (or 256 + len(merges) + its position)."""
    vocab, merges, _, _ = tokenizer_inputs(name)
    byte_id = {b: i for i, b in vocab.items()}
    ordered = sorted(specials, key=len, reverse=True) if longest_first else list(specials)
    out = []
    for k, piece in enumerate(regex.split("(" + "|".join(regex.escape(s) for s in ordered) + ")", text)):
        if k % 2 == 0:
            out.extend(tiktoken_encoding(name).encode_ordinary(piece))
        else:
            out.append(256 + len(merges) + specials.index(piece) if ids_by_position else byte_id[piece.encode("utf-8")])
    return out


def special_mistake(out, name, text, specials):
    """The special-token mistake the ids `out` of `text` show: specials not cut out first,
    not longest first, or numbered by position instead of looked up in the vocab."""
    return mistake_shown(out, {
        "special_split": [tiktoken_encoding(name).encode_ordinary(text)],
        "special_longest_first": [ids_with_specials(name, text, specials, longest_first=False)],
        "special_id_lookup": [ids_with_specials(name, text, specials, ids_by_position=True)],
    })


def decode_mistake(out, ids, vocab):
    """`split_multibyte_decode` when decode(ids) gave what decoding token by token, or
    dropping invalid bytes, gives; None when decode is right about these ids (the ids are
    what is wrong) or wrong some other way."""
    whole = b"".join(vocab[i] for i in ids)
    if out == whole.decode("utf-8", errors="replace"):
        return None
    return mistake_shown(out, {"split_multibyte_decode": [
        "".join(vocab[i].decode("utf-8", errors="replace") for i in ids),
        "".join(vocab[i].decode("utf-8", errors="ignore") for i in ids),
        whole.decode("utf-8", errors="ignore"),
    ]})


@pytest.mark.points(1)
@pytest.mark.parametrize("name, pattern", [("gpt4_800", "gpt2"), ("gpt2_700_eot", "gpt4"), ("gpt4_512_eot", "none"),
                                           ("gpt2_700_eot", "default")])
def test_tokenizer_uses_the_pattern_it_is_given(name, pattern):
    """A fixture's merges split by another pattern than they were trained with, by none (the
    whole text one chunk), or by the default, GPT4_SPLIT_PATTERN: each gives other ids here."""
    vocab, merges, _, _ = tokenizer_inputs(name)
    text = "\n".join(TEXTS.values())
    if pattern == "default":
        tok = bpe.Tokenizer(vocab, merges)
    else:
        tok = bpe.Tokenizer(vocab, merges, PATTERNS[pattern])
    out = tok.encode(text)
    check.equal(out, oracle(tiktoken_ids, name, GPT4 if pattern == "default" else PATTERNS[pattern], text),
                hint=oracle(pattern_mistake, out, name, GPT4 if pattern == "default" else PATTERNS[pattern], text),
                what=f"encode(text) with pattern={pattern}")


# --- special tokens ----------------------------------------------------------------------


@pytest.mark.points(2)
def test_special_token_is_one_id():
    text = "Once upon a time<|endoftext|>The end.<|endoftext|><|endoftext|> a<|endoftext|>b"
    out = make_tokenizer().encode(text)
    check.equal(out, tiktoken_encoding().encode(text, allowed_special="all"),
                hint=oracle(special_mistake, out, "gpt4_512_eot", text, [EOT]))


@pytest.mark.points(1)
def test_special_token_text_is_ordinary_without_special_tokens():
    text = "Once upon a time<|endoftext|>The end."
    check.equal(make_tokenizer(specials=False).encode(text), tiktoken_encoding().encode_ordinary(text))


@pytest.mark.points(2)
def test_special_tokens_longest_first():
    """Specials <|a|>, <|a|><|b|>, <|endoftext|>: tiktoken does not prefer the longest, so the
    expected ids come from the reference (fixtures)."""
    tok = make_tokenizer("gpt4_600_specials")
    for case in data()["special_encode"]:
        out = tok.encode(case["text"])
        check.equal(out, case["ids"], hint=oracle(special_mistake, out, "gpt4_600_specials", case["text"],
                                                  tokenizer_inputs("gpt4_600_specials")[3]),
                    what=f"encode({case['text']!r})")


@pytest.mark.points(1)
def test_special_ids_are_looked_up_in_the_vocab():
    """Two of the three specials the vocab was trained with, in another order: each id is the
    vocab's id for the token's bytes (not its position in the list), and <|a|> is ordinary text."""
    vocab, merges, pattern, _ = tokenizer_inputs("gpt4_600_specials")
    specials = [EOT, "<|a|><|b|>"]
    tok = bpe.Tokenizer(vocab, merges, pattern, specials)
    text = "Once<|a|><|b|> upon<|endoftext|> a <|a|>time<|endoftext|>"
    out = tok.encode(text)
    check.equal(out, oracle(tiktoken_ids, "gpt4_600_specials", pattern, text, specials),
                hint=oracle(special_mistake, out, "gpt4_600_specials", text, specials), what=f"encode({text!r})")


# --- decode ------------------------------------------------------------------------------


@pytest.mark.points(2)
def test_decode_inverts_encode():
    tok = make_tokenizer()
    for text in random_texts(seed=1, n=60):
        ids = tok.encode(text)
        out = tok.decode(ids)
        check.equal(out, text, hint=oracle(decode_mistake, out, ids, tokenizer_inputs()[0]))


@pytest.mark.points(1)
def test_decode_inverts_encode_on_every_script():
    tok = make_tokenizer()
    for text in TEXTS.values():
        ids = tok.encode(text)
        out = tok.decode(ids)
        check.equal(out, text, hint=oracle(decode_mistake, out, ids, tokenizer_inputs()[0]))


@pytest.mark.points(1)
def test_decode_replaces_a_split_character():
    tok = make_tokenizer()
    head = list("中".encode("utf-8"))[:2]        # the byte tokens of the first 2 of 3 bytes
    check.equal(tok.decode(head), bytes(head).decode("utf-8", errors="replace"), hint="split_multibyte_decode")
    ids = tiktoken_encoding().encode_ordinary("ab 🙂") + head
    check.equal(tok.decode(ids), (b"ab \xf0\x9f\x99\x82" + bytes(head)).decode("utf-8", errors="replace"),
                hint="split_multibyte_decode")


@pytest.mark.points(2)
def test_decode_any_ids_like_bytes_decode():
    vocab, merges, pattern, specials = tokenizer_inputs()
    tok = bpe.Tokenizer(vocab, merges, pattern, specials)
    rng = random.Random(2)
    for _ in range(60):
        ids = [rng.randrange(512) for _ in range(rng.randint(0, 12))]
        check.equal(tok.decode(ids), b"".join(vocab[i] for i in ids).decode("utf-8", errors="replace"),
                    hint="split_multibyte_decode", what=f"decode({ids})")


# --- fertility ---------------------------------------------------------------------------


class CharTokenizer:
    """A stand-in tokenizer with one token per character, so the answer is plain arithmetic."""

    def encode(self, text):
        return list(text)


def fertility_mistake(out, tokenizer, texts):
    """`fertility_ratio` when `out` is the mean of the texts' own ratios (texts without words
    left out, or counted as one word)."""
    ratios = [(len(tokenizer.encode(t)), len(t.split())) for t in texts]
    return mistake_shown(out, {"fertility_ratio": [
        sum(n / max(words, 1) for n, words in ratios) / len(ratios),
        sum(n / words for n, words in ratios if words) / max(sum(1 for _, words in ratios if words), 1),
    ]})


@pytest.mark.points(1)
def test_fertility_is_a_ratio_of_totals():
    texts = ["a bb", "cccc dd ee f", "  ", "xyz"]
    out = bpe.fertility(CharTokenizer(), texts)
    check.close(out, sum(len(t) for t in texts) / sum(len(t.split()) for t in texts),
                hint=oracle(fertility_mistake, out, CharTokenizer(), texts))


@pytest.mark.points(1)
def test_fertility_needs_words():
    for texts in ([], ["", "  \n\t"]):
        with check.raises(ValueError, hint="no_words"):
            bpe.fertility(CharTokenizer(), texts)


@pytest.mark.points(2)
def test_fertility_by_language():
    sample = json.loads((CORPUS_DIR / "multilingual.json").read_text(encoding="utf-8"))
    tok = make_tokenizer()
    for lang in sorted(sample):
        check.close(bpe.fertility(tok, sample[lang]), data()["fertility"][lang], what=f"fertility of {lang}")


# --- throughput --------------------------------------------------------------------------


def plain_train(text, vocab_size, pattern, special_tokens):
    """The baseline: correct and simple. Distinct chunks are counted once, but every merge
    recounts all their pairs (no incremental update)."""
    pieces = regex.split("|".join(regex.escape(s) for s in special_tokens), text)
    freq = Counter(c for p in pieces for c in regex.findall(pattern, p))
    words, weights = [list(c.encode("utf-8")) for c in freq], list(freq.values())
    vocab = {i: bytes([i]) for i in range(256)}
    merges = []
    while len(vocab) < vocab_size - len(special_tokens):
        counts = Counter()
        for ids, w in zip(words, weights):
            for p in zip(ids, ids[1:]):
                counts[p] += w
        if not counts:
            break
        a, b = max(counts, key=lambda p: (counts[p], vocab[p[0]], vocab[p[1]]))
        new_id = len(vocab)
        vocab[new_id] = vocab[a] + vocab[b]
        merges.append((vocab[a], vocab[b]))
        for k, ids in enumerate(words):
            out, i = [], 0
            while i < len(ids):
                if i + 1 < len(ids) and ids[i] == a and ids[i + 1] == b:
                    out.append(new_id)
                    i += 2
                else:
                    out.append(ids[i])
                    i += 1
            words[k] = out
    return vocab, merges


# Each timing sample calls the function 3 times (torch's Timer warms up inside timeit), so
# rounds=2 is 6 calls per side: enough for the generous factors below.


@pytest.mark.points(2)
@pytest.mark.throughput
@pytest.mark.timeout(300)
def test_training_throughput():
    """Training 64 merges on a third of the corpus may take at most 4x the plain baseline
    above (a trainer that does not count identical chunks once is 20-50x slower)."""
    text = corpus()[:120_000]
    throughput.assert_within(lambda: bpe.train_bpe(text, 320, GPT4, [EOT]),
                             lambda: plain_train(text, 320, GPT4, [EOT]),
                             factor=4.0, warmup=0, rounds=2, what="your train_bpe", hint="slow_training")


@pytest.mark.points(2)
@pytest.mark.throughput
@pytest.mark.timeout(300)
def test_encoding_throughput():
    """Encoding 1 MB of text (a fresh Tokenizer each time) may take at most 12x tiktoken,
    which is compiled Rust. A cached Python encoder takes 2-4x; one without a cache 15-40x."""
    text = (corpus() * 3)[:1_000_000]
    vocab, merges, pattern, specials = tokenizer_inputs()
    baseline = tiktoken_encoding()
    throughput.assert_within(lambda: bpe.Tokenizer(vocab, merges, pattern, specials).encode(text),
                             lambda: baseline.encode(text, allowed_special="all"),
                             factor=12.0, warmup=0, rounds=2, what="your Tokenizer.encode", hint="slow_encoding")
