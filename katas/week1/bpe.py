"""Week 1 — byte-level BPE from scratch: the tokenizer of GPT-2 and GPT-4.

A language model reads integers, not text. Byte-level BPE turns text into integers in two
steps:

1. Training (`train_bpe`): start from the 256 possible bytes as the first 256 tokens.
   Count every adjacent pair of tokens in the training text, give the most frequent pair a
   new id (a "merge"), replace it everywhere, and repeat until the vocabulary is big enough.
2. Encoding (`Tokenizer.encode`): turn new text into bytes and replay the learned merges,
   earliest-learned first, until no learned pair is left.

Because the base alphabet is all 256 bytes, any string can be encoded (no "unknown token"),
and decoding is just concatenating the tokens' bytes.

Two details make real tokenizers behave well, and both are part of this kata:

- Pre-splitting. Text is first cut into chunks by a regex (words with their leading space,
  numbers, punctuation runs, whitespace), and merges never cross a chunk boundary, so
  "dog." and "dog!" share the token " dog" instead of learning "g." and "g!".
- Special tokens such as "<|endoftext|>" are control symbols: they are matched in the text
  first and get their own ids; the regex and the merges never see them.

Your tests compare `Tokenizer.encode` with OpenAI's `tiktoken`, built from your own merges.

Run the tests:   pytest katas/week1/test_bpe.py
Hints:           kata hint week1/bpe

Run time: `pytest katas/week1/test_bpe.py` takes about 6 s with a correct solution on a
2-core laptop CPU. Much longer means something in your code is slow (see the hints); a test
that runs past its limit fails with TIMEOUT, naming your function, and the kata's other
tests of that function are skipped.
"""

# The split patterns are given, not a task: exactly tiktoken's r50k_base (GPT-2) and
# cl100k_base (GPT-4) `pat_str`. Use them with the `regex` module (`import regex`), not `re`:
# they need \p{L} (any letter) and possessive quantifiers. The older GPT-4 pattern that some
# tutorials copy (ending in `\s+(?!\S)|\s+`) splits trailing whitespace differently.
GPT2_SPLIT_PATTERN = (
    r"""'(?:[sdmt]|ll|ve|re)| ?\p{L}++| ?\p{N}++| ?[^\s\p{L}\p{N}]++|\s++$|\s+(?!\S)|\s"""
)
GPT4_SPLIT_PATTERN = (
    r"""'(?i:[sdmt]|ll|ve|re)|[^\r\n\p{L}\p{N}]?+\p{L}++|\p{N}{1,3}+| ?[^\s\p{L}\p{N}]++[\r\n]*+|\s++$|\s*[\r\n]|\s+(?!\S)|\s"""
)


def get_pair_counts(
    ids: list[int], counts: dict[tuple[int, int], int] | None = None
) -> dict[tuple[int, int], int]:
    """Count every adjacent pair of ids.

    Pairs overlap: in [1, 1, 1] the pair (1, 1) occurs twice (positions 0-1 and 1-2).

        get_pair_counts([1, 2, 3, 1, 2])  ->  {(1, 2): 2, (2, 3): 1, (3, 1): 1}

    If `counts` is given, add into it *in place* and return that same dict; this lets you
    accumulate counts over many chunks with one dict:

        counts = {}
        for chunk_ids in chunks:
            get_pair_counts(chunk_ids, counts)
    """
    raise NotImplementedError


def merge_pair(ids: list[int], pair: tuple[int, int], new_id: int) -> list[int]:
    """Return a new list where each occurrence of `pair` is replaced by `new_id`.

    Scan left to right; after a replacement, continue *after* the pair, so occurrences never
    overlap:

        merge_pair([1, 2, 3, 1, 2], (1, 2), 9)  ->  [9, 3, 9]
        merge_pair([5, 5, 5], (5, 5), 9)         ->  [9, 5]       (not [9, 9], not [5, 9])
        merge_pair([5, 5, 5, 5], (5, 5), 9)      ->  [9, 9]

    Pitfall: the input list must not be modified.
    """
    raise NotImplementedError


def train_bpe(
    text: str,
    vocab_size: int,
    pattern: str | None = GPT4_SPLIT_PATTERN,
    special_tokens: list[str] = (),
) -> tuple[dict[int, bytes], list[tuple[bytes, bytes]]]:
    """Learn a byte-level BPE vocabulary from `text`.

    Returns `(vocab, merges)`:
      - `vocab: dict[int, bytes]`: ids 0..255 are the single bytes (`vocab[i] == bytes([i])`);
        then id 256 + r is merge r (`vocab[256 + r] == left + right`); then the special
        tokens, in the order given (`vocab[id] == s.encode("utf-8")`).
      - `merges: list[tuple[bytes, bytes]]`: the merged pairs, as byte strings, in the order
        they were learned (their *rank*).

    `vocab_size` counts everything, so `len(vocab) == vocab_size` and there are
    `vocab_size - 256 - len(special_tokens)` merges, unless the text runs out of pairs
    first: then stop, and the special ids follow the last merge (len(vocab) is smaller).

    Steps:
      1. Cut the text at the special tokens (their own text is not trained on), e.g.
         "a cat<|endoftext|>a dog" -> "a cat", "a dog".
      2. Split each piece into chunks with `regex.findall(pattern, piece)`; with
         `pattern=None` a piece is one chunk. Encode each chunk to UTF-8 bytes -> ids.
      3. Repeat: count adjacent pairs *within* each chunk (never across chunks), pick the
         most frequent pair, give it the next id, and replace it in every chunk.

    Ties. When several pairs have the top count, pick the *greatest* pair compared as a
    tuple of byte strings `(vocab[a], vocab[b])` (Python compares bytes lexicographically).
    This makes the answer unique, so your merges must equal the reference's exactly.
    Worked example: `train_bpe("   a", 258, None)` (three spaces then "a"). The pairs are
    (" ", " ") twice and (" ", "a") once, so merge 0 is (b" ", b" "). Left to right the ids
    become ["  ", " ", "a"]: the pairs ("  ", " ") and (" ", "a") both occur once, a tie;
    b"  " > b" " so merge 1 is (b"  ", b" ").

    Speed: the tests train on a ~350 KB corpus. Two ideas make this fast: count identical
    chunks once (with a Counter of chunks: the same word appears thousands of times), and
    after a merge update the pair counts only for the chunks that contained the pair,
    instead of recounting everything.
    """
    raise NotImplementedError


class Tokenizer:
    """Encode text to ids and decode ids to text with a trained vocabulary.

    `Tokenizer(vocab, merges, pattern=GPT4_SPLIT_PATTERN, special_tokens=None)`: `vocab` and
    `merges` as returned by `train_bpe`. `special_tokens` is a list of strings whose ids
    are looked up in `vocab` (the id whose bytes are the token's UTF-8). Without
    `special_tokens`, "<|endoftext|>" is ordinary text (a dozen ordinary tokens).
    """

    def __init__(self, vocab, merges, pattern=GPT4_SPLIT_PATTERN, special_tokens=None):
        raise NotImplementedError

    def encode(self, text: str) -> list[int]:
        """Text -> ids.

        1. Special tokens first: find them in the text before any regex splitting (the
           regex would cut "<|endoftext|>" into "<|", "endoftext", "|>"). Where two special
           tokens could match at the same place, the longest wins: with specials
           ["<|a|>", "<|a|><|b|>"], the text "<|a|><|b|>" is the one id of "<|a|><|b|>".
        2. Split the ordinary text between them with the pattern (None: no split).
        3. Each chunk: UTF-8 bytes -> ids; then, while some adjacent pair is a learned merge,
           merge the pair with the lowest *rank* (learned earliest), everywhere in the chunk.
           Not the pair that is most frequent in this text: the merges must be replayed in
           the order they were learned, or you get tokens that training never produced.

        The result equals tiktoken's encoding with the same merges.
        """
        raise NotImplementedError

    def decode(self, ids: list[int]) -> str:
        """Ids -> text: concatenate the tokens' bytes, then decode the bytes as UTF-8.

        A token can hold part of a multi-byte character ("é" is two bytes, an emoji four),
        so decode the *joined* bytes, not token by token, and replace bytes that are not
        valid UTF-8 by U+FFFD like `bytes.decode("utf-8", errors="replace")`:
        decoding the ids of b"\\xe4\\xb8" alone (the first two bytes of "中") gives "\\ufffd".
        Always `decode(encode(s)) == s`.
        """
        raise NotImplementedError


def fertility(tokenizer: Tokenizer, texts: list[str]) -> float:
    """Tokens per word: total `len(tokenizer.encode(t))` over total whitespace-separated
    words (`len(t.split())`) across all `texts`, a measure of how well a tokenizer fits a
    language: about 2 for English on the course's 512-id tokenizer, 8 to 10 for Arabic,
    Greek or Russian, which it rarely saw (Chinese and Japanese do not separate words with
    spaces, so a whole sentence counts as one "word").

        fertility(tok, ["the cat", "a dog sat"])  ==  (n_tokens("the cat") + n_tokens("a dog sat")) / 5

    Raise ValueError if there are no words at all (e.g. `[]` or `["", "  "]`).
    """
    raise NotImplementedError
