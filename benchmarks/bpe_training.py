"""How fast is BPE training? The week-1 reference against a naive trainer and HF tokenizers.

    python benchmarks/bpe_training.py                    # vocab 512 on the fixture corpus
    python benchmarks/bpe_training.py --vocab-size 1024 --repeat 3

Three trainers on the same text (fixtures/corpus/corpus.txt, GPT-4 split pattern for ours):

- reference: reference/week1/bpe.py; identical chunks counted once, and after each merge
  only the chunks containing the merged pair are updated;
- naive: the textbook loop (as in minbpe): every merge recounts every pair of every chunk
  and rewrites every chunk. Same merges as the reference, much slower;
- hf-tokenizers: Hugging Face `tokenizers` BPE with a ByteLevel pre-tokenizer (Rust,
  multi-threaded, GPT-2-style split); different split and tie-breaks, so only timed.
"""

import argparse
import importlib.util
import statistics
import time
from pathlib import Path

import regex

ROOT = Path(__file__).resolve().parents[1]
EOT = "<|endoftext|>"


def load_reference():
    spec = importlib.util.spec_from_file_location("reference_bpe", ROOT / "reference" / "week1" / "bpe.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def naive_train(text, vocab_size, pattern, special_tokens):
    """minbpe-style: recount all pairs and re-merge all chunks for every merge."""
    pieces = regex.split("|".join(regex.escape(s) for s in special_tokens), text) if special_tokens else [text]
    chunks = [list(c.encode("utf-8")) for p in pieces for c in regex.findall(pattern, p)]
    vocab = {i: bytes([i]) for i in range(256)}
    merges = []
    for new_id in range(256, vocab_size - len(special_tokens)):
        counts = {}
        for ids in chunks:
            for pair in zip(ids, ids[1:]):
                counts[pair] = counts.get(pair, 0) + 1
        if not counts:
            break
        pair = max(counts, key=lambda p: (counts[p], vocab[p[0]], vocab[p[1]]))
        vocab[new_id] = vocab[pair[0]] + vocab[pair[1]]
        merges.append((vocab[pair[0]], vocab[pair[1]]))
        new_chunks = []
        for ids in chunks:
            out, i = [], 0
            while i < len(ids):
                if i + 1 < len(ids) and ids[i] == pair[0] and ids[i + 1] == pair[1]:
                    out.append(new_id)
                    i += 2
                else:
                    out.append(ids[i])
                    i += 1
            new_chunks.append(out)
        chunks = new_chunks
    for s in special_tokens:
        vocab[len(vocab)] = s.encode("utf-8")
    return vocab, merges


def hf_train(text, vocab_size, special_tokens):
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=vocab_size, special_tokens=list(special_tokens),
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
                                  show_progress=False)
    tok.train_from_iterator(text.split(EOT), trainer=trainer)
    return tok


def timed(fn, repeat):
    times, result = [], None
    for _ in range(repeat):
        start = time.perf_counter()
        result = fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times), result


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--vocab-size", type=int, default=512)
    parser.add_argument("--repeat", type=int, default=3, help="median of this many runs (naive: 1)")
    parser.add_argument("--skip-naive", action="store_true", help="the naive trainer takes a minute")
    args = parser.parse_args()

    bpe = load_reference()
    text = (ROOT / "fixtures" / "corpus" / "corpus.txt").read_text(encoding="utf-8")
    specials = [EOT]
    print(f"corpus: {len(text.encode('utf-8')) / 1e3:.0f} KB, vocab_size={args.vocab_size}, "
          f"special tokens {specials}")

    rows = []
    t_ref, (_, ref_merges) = timed(lambda: bpe.train_bpe(text, args.vocab_size, bpe.GPT4_SPLIT_PATTERN, specials),
                                   args.repeat)
    rows.append(("reference (incremental)", t_ref, len(ref_merges), "-"))
    if not args.skip_naive:
        t_naive, (_, naive_merges) = timed(lambda: naive_train(text, args.vocab_size, bpe.GPT4_SPLIT_PATTERN, specials), 1)
        rows.append(("naive (minbpe-style)", t_naive, len(naive_merges), str(naive_merges == ref_merges)))
    try:
        t_hf, tok = timed(lambda: hf_train(text, args.vocab_size, specials), args.repeat)
        rows.append(("hf tokenizers BPE (Rust)", t_hf, tok.get_vocab_size() - 256 - len(specials), "n/a"))
    except ImportError:
        rows.append(("hf tokenizers BPE (Rust)", float("nan"), 0, "not installed"))

    print(f"{'trainer':<26} {'seconds':>9} {'vs reference':>13} {'merges':>7}  same merges as reference")
    for name, seconds, n_merges, same in rows:
        print(f"{name:<26} {seconds:>9.3f} {seconds / t_ref:>12.1f}x {n_merges:>7}  {same}")


if __name__ == "__main__":
    main()
