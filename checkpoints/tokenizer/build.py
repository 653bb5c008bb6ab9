"""Train the course tokenizer on the fixture corpus and write checkpoints/tokenizer/tokenizer.json.

    python fixtures/corpus/make_corpus.py        # (the corpus is committed; this rebuilds it)
    python checkpoints/tokenizer/build.py        # byte-identical output on every run

The tokenizer is the week-1 reference `train_bpe` with vocab_size=512, the GPT-4 split
pattern and one special token, <|endoftext|> (256 bytes + 255 merges + 1 special).
"""

import importlib.util
import json
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
CORPUS = ROOT / "fixtures" / "corpus" / "corpus.txt"
OUT = Path(__file__).resolve().parent / "tokenizer.json"
VOCAB_SIZE = 512
SPECIAL_TOKENS = ["<|endoftext|>"]


def load_reference():
    spec = importlib.util.spec_from_file_location("reference_bpe", ROOT / "reference" / "week1" / "bpe.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def main() -> None:
    bpe = load_reference()
    text = CORPUS.read_text(encoding="utf-8")
    vocab, merges = bpe.train_bpe(text, VOCAB_SIZE, bpe.GPT4_SPLIT_PATTERN, SPECIAL_TOKENS)
    assert len(vocab) == VOCAB_SIZE and len(merges) == VOCAB_SIZE - 256 - len(SPECIAL_TOKENS)
    data = {
        "format": "llm-katas byte-level BPE v1",
        "vocab_size": len(vocab),
        "pattern": bpe.GPT4_SPLIT_PATTERN,
        "special_tokens": {s: 256 + len(merges) + k for k, s in enumerate(SPECIAL_TOKENS)},
        "merges": [[a.hex(), b.hex()] for a, b in merges],
    }
    # One merge per line, so the file diffs and reads well.
    head = json.dumps({k: v for k, v in data.items() if k != "merges"}, indent=1)[:-2]
    body = ",\n".join("  " + json.dumps(m) for m in data["merges"])
    OUT.write_text(f'{head},\n "merges": [\n{body}\n ]\n}}\n', encoding="utf-8")
    print(f"wrote {OUT.relative_to(ROOT)}: {len(merges)} merges, vocab_size {len(vocab)}")


if __name__ == "__main__":
    main()
