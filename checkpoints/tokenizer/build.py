"""Train the course tokenizer on the fixture corpus and write it in two formats.

    python fixtures/corpus/make_corpus.py        # (the corpus is committed; this rebuilds it)
    python checkpoints/tokenizer/build.py        # byte-identical output on every run
    python checkpoints/tokenizer/build.py DIR    # the same files under DIR instead, to compare

The tokenizer is the week-1 reference `train_bpe` with vocab_size=512, the GPT-4 split
pattern and one special token, <|endoftext|> (256 bytes + 255 merges + 1 special).

Writes
- `checkpoints/tokenizer/tokenizer.json`: the course's own format (hex merges; README.md),
  read by `checkpoints/train_gpt2.py` and the week-5 quantization kata;
- `checkpoints/tokenizer/hf/`: the same tokenizer as a Hugging Face `tokenizer.json` +
  `tokenizer_config.json` + `special_tokens_map.json`, for `tokenizers.Tokenizer.from_file`
  and `transformers.AutoTokenizer.from_pretrained`;
- the same three Hugging Face files into `checkpoints/gpt2-tiny-trained/` (when the model is
  there), so that `AutoTokenizer` and `AutoModelForCausalLM` load from one directory.
"""

from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[1]
CHECKPOINTS = ROOT / "checkpoints"
CORPUS = ROOT / "fixtures" / "corpus" / "corpus.txt"
OUT = HERE / "tokenizer.json"
VOCAB_SIZE = 512
SPECIAL_TOKENS = ["<|endoftext|>"]
EOT = SPECIAL_TOKENS[0]
HF_DIR = "tokenizer/hf"                  # relative to checkpoints/
MODEL_DIR = "gpt2-tiny-trained"          # relative to checkpoints/
MODEL_MAX_LENGTH = 128                   # gpt2-tiny-trained's n_positions


def load_reference():
    spec = importlib.util.spec_from_file_location("reference_bpe", ROOT / "reference" / "week1" / "bpe.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def train():
    """(vocab, merges, pattern) of the course tokenizer, from the week-1 reference trainer."""
    bpe = load_reference()
    text = CORPUS.read_text(encoding="utf-8")
    vocab, merges = bpe.train_bpe(text, VOCAB_SIZE, bpe.GPT4_SPLIT_PATTERN, SPECIAL_TOKENS)
    assert len(vocab) == VOCAB_SIZE and len(merges) == VOCAB_SIZE - 256 - len(SPECIAL_TOKENS)
    return vocab, merges, bpe.GPT4_SPLIT_PATTERN


def course_json(vocab, merges, pattern) -> str:
    """The course's own format (README.md): one merge per line, so the file diffs and reads well."""
    data = {
        "format": "llm-katas byte-level BPE v1",
        "vocab_size": len(vocab),
        "pattern": pattern,
        "special_tokens": {s: 256 + len(merges) + k for k, s in enumerate(SPECIAL_TOKENS)},
        "merges": [[a.hex(), b.hex()] for a, b in merges],
    }
    head = json.dumps({k: v for k, v in data.items() if k != "merges"}, indent=1)[:-2]
    body = ",\n".join("  " + json.dumps(m) for m in data["merges"])
    return f'{head},\n "merges": [\n{body}\n ]\n}}\n'


# ---- Hugging Face format ---------------------------------------------------------------


def bytes_to_unicode() -> dict[int, str]:
    """GPT-2's byte -> printable character table (the alphabet of byte-level BPE vocabularies).

    Printable Latin-1 bytes stand for themselves; the other 68 (controls, space, 0x7f-0xa0,
    0xad) are shifted to U+0100.. in byte order, so space is 'Ġ' and newline 'Ċ'. The same
    table as `tokenizers.pre_tokenizers.ByteLevel`, which maps text to it before the model.
    """
    keep = [*range(ord("!"), ord("~") + 1), *range(ord("¡"), ord("¬") + 1), *range(ord("®"), ord("ÿ") + 1)]
    table = {b: chr(b) for b in keep}
    shifted = 0
    for b in range(256):
        if b not in table:
            table[b] = chr(256 + shifted)
            shifted += 1
    return table


def hf_pattern(pattern: str) -> str:
    """The split pattern as the `tokenizers` library (Oniguruma, Ruby syntax) must read it.

    Oniguruma reads `{1,3}+` as `{1,3}` repeated one or more times, not as a possessive
    `{1,3}`: "1234567" would become one piece instead of "123" "456" "7". Dropping the `+` is
    exact here: nothing follows `\\p{N}{1,3}` in its alternative, so backtracking into it
    never changes a match. The other possessives (`?+`, `++`, `*+`) mean the same in both.
    """
    assert pattern.count(r"\p{N}{1,3}+") == 1, pattern
    return pattern.replace(r"\p{N}{1,3}+", r"\p{N}{1,3}")


def hf_tokenizer(merges, pattern):
    """The tokenizer as a `tokenizers.Tokenizer` with ids 0..511 equal to the course's.

    Byte-level BPE: the text is cut at <|endoftext|> (an added special token, matched before
    anything else), split by the GPT-4 pattern, each piece mapped byte-for-byte to the GPT-2
    alphabet (`ByteLevel(use_regex=False)`: the Split already did the splitting), then merged
    by rank; merge r is the kata's merge r, so the merged token's id is 256 + r. Tokens whose
    bytes are not valid UTF-8 (part of a character) are fine: the vocabulary holds bytes.
    """
    from tokenizers import AddedToken, Regex, Tokenizer, decoders, models, pre_tokenizers

    u = bytes_to_unicode()
    text = lambda bs: "".join(u[b] for b in bs)
    vocab = {text(bytes([i])): i for i in range(256)}
    for a, b in merges:
        assert text(a + b) not in vocab, f"duplicate token {a + b!r}"
        vocab[text(a + b)] = len(vocab)
    for s in SPECIAL_TOKENS:
        vocab[s] = len(vocab)
    tok = Tokenizer(models.BPE(vocab=vocab, merges=[(text(a), text(b)) for a, b in merges],
                               ignore_merges=False, byte_fallback=False, fuse_unk=False))
    tok.pre_tokenizer = pre_tokenizers.Sequence([
        pre_tokenizers.Split(Regex(hf_pattern(pattern)), behavior="isolated", invert=False),
        pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False),
    ])
    tok.decoder = decoders.ByteLevel()
    tok.add_special_tokens([AddedToken(s, special=True, normalized=False, single_word=False,
                                       lstrip=False, rstrip=False) for s in SPECIAL_TOKENS])
    assert tok.get_vocab_size() == VOCAB_SIZE
    return tok


def _layout(value, indent: int = 0) -> str:
    """JSON with fixed separators, one object member per line, lists of scalars on one line
    (a merge is one line), non-ASCII written as itself. Member order is kept as given."""
    pad, inner = " " * indent, " " * (indent + 2)
    if isinstance(value, dict) and value:
        items = [f"{inner}{json.dumps(k, ensure_ascii=False)}: {_layout(v, indent + 2)}" for k, v in value.items()]
        return "{\n" + ",\n".join(items) + f"\n{pad}}}"
    if isinstance(value, list) and value and any(isinstance(v, (dict, list)) for v in value):
        if all(isinstance(v, list) and not any(isinstance(x, (dict, list)) for x in v) for v in value):
            items = [inner + json.dumps(v, ensure_ascii=False, separators=(", ", ": ")) for v in value]
        else:
            items = [inner + _layout(v, indent + 2) for v in value]
        return "[\n" + ",\n".join(items) + f"\n{pad}]"
    return json.dumps(value, ensure_ascii=False, separators=(", ", ": "))


def hf_files(merges, pattern) -> dict[str, str]:
    """{file name: text} of the Hugging Face tokenizer directory."""
    tok = hf_tokenizer(merges, pattern)
    # The library's serialization fixes the member order (the vocab in id order, the merges
    # in rank order); it is re-laid out here so that the file is stable and reads well.
    tokenizer_json = _layout(json.loads(tok.to_str())) + "\n"
    special = {"bos_token": EOT, "eos_token": EOT, "pad_token": EOT, "unk_token": EOT}
    config = {
        **special,
        "add_bos_token": False,
        "add_eos_token": False,
        "add_prefix_space": False,
        "clean_up_tokenization_spaces": False,  # decode must give the text back unchanged
        "model_input_names": ["input_ids", "attention_mask"],
        "model_max_length": MODEL_MAX_LENGTH,
        "padding_side": "right",
        "tokenizer_class": "PreTrainedTokenizerFast",
    }
    dump = lambda d: json.dumps(d, indent=2, sort_keys=True, ensure_ascii=False) + "\n"
    return {"special_tokens_map.json": dump(special), "tokenizer.json": tokenizer_json,
            "tokenizer_config.json": dump(config)}


def outputs() -> dict[str, str]:
    """{path relative to checkpoints/: text} of everything this script writes."""
    vocab, merges, pattern = train()
    files = {"tokenizer/tokenizer.json": course_json(vocab, merges, pattern)}
    hf = hf_files(merges, pattern)
    files.update({f"{HF_DIR}/{name}": text for name, text in hf.items()})
    if (CHECKPOINTS / MODEL_DIR / "config.json").is_file():
        files.update({f"{MODEL_DIR}/{name}": text for name, text in hf.items()})
    return files


def write_hf(directory: Path) -> None:
    """Write the Hugging Face tokenizer files into `directory` (used by train_gpt2.py)."""
    _, merges, pattern = train()
    directory.mkdir(parents=True, exist_ok=True)
    for name, text in hf_files(merges, pattern).items():
        (directory / name).write_bytes(text.encode("utf-8"))


def main(dest: Path = CHECKPOINTS) -> None:
    """Write everything under `dest` (default checkpoints/; another directory to compare)."""
    for rel, text in outputs().items():
        path = dest / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(text.encode("utf-8"))
        print(f"wrote {path} ({path.stat().st_size} bytes)")


if __name__ == "__main__":
    main(Path(sys.argv[1]) if len(sys.argv) > 1 else CHECKPOINTS)
