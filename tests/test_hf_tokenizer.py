"""The course tokenizer in Hugging Face format (issue 18).

`checkpoints/tokenizer/build.py` writes the week-1 tokenizer as a Hugging Face
`tokenizer.json` (+ `tokenizer_config.json`, `special_tokens_map.json`) into
`checkpoints/tokenizer/hf/` and next to the trained model in `checkpoints/gpt2-tiny-trained/`.
Here both copies must give exactly the ids of the week-1 reference `Tokenizer` (loaded from
the course's own `checkpoints/tokenizer/tokenizer.json`), through `tokenizers` and through
`transformers.AutoTokenizer`, and the model and the tokenizer must load and generate from one
directory. Offline, a few seconds.
"""

import importlib.util
import json
import random
from functools import lru_cache
from pathlib import Path

import pytest
import regex

ROOT = Path(__file__).resolve().parents[1]
CHECKPOINTS = ROOT / "checkpoints"
COURSE_JSON = CHECKPOINTS / "tokenizer" / "tokenizer.json"
HF_DIRS = [CHECKPOINTS / "tokenizer" / "hf", CHECKPOINTS / "gpt2-tiny-trained"]
HF_FILES = ["tokenizer.json", "tokenizer_config.json", "special_tokens_map.json"]
EOT = "<|endoftext|>"
dir_ids = lambda d: d.relative_to(CHECKPOINTS).as_posix()


def _load(name, path):
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@lru_cache(maxsize=None)
def course_tokenizer():
    """The week-1 reference Tokenizer built from the course's own file (its README's loader)."""
    bpe = _load("reference_week1_bpe", ROOT / "reference" / "week1" / "bpe.py")
    data = json.loads(COURSE_JSON.read_text(encoding="utf-8"))
    merges = [(bytes.fromhex(a), bytes.fromhex(b)) for a, b in data["merges"]]
    vocab = {i: bytes([i]) for i in range(256)}
    for a, b in merges:
        vocab[len(vocab)] = a + b
    for text, i in data["special_tokens"].items():
        vocab[i] = text.encode("utf-8")
    return bpe.Tokenizer(vocab, merges, data["pattern"], list(data["special_tokens"]))


@lru_cache(maxsize=None)
def hf_tokenizer(directory):
    from tokenizers import Tokenizer

    return Tokenizer.from_file(str(directory / "tokenizer.json"))


@lru_cache(maxsize=None)
def auto_tokenizer(directory):
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(directory)


def bytes_to_unicode():
    """GPT-2's byte -> character table, as openai/gpt-2's encoder.py writes it."""
    bs = list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1)) + list(range(ord("®"), ord("ÿ") + 1))
    cs = bs[:]
    n = 0
    for b in range(2**8):
        if b not in bs:
            bs.append(b)
            cs.append(2**8 + n)
            n += 1
    return dict(zip(bs, [chr(c) for c in cs]))


CORPUS_LINES = (ROOT / "fixtures" / "corpus" / "corpus.txt").read_text(encoding="utf-8").splitlines(keepends=True)

TEXTS = [
    "",
    "Hello, world! The quick brown fox jumps over the lazy dog.",
    "Once upon a time, there was a little cat named Tom.",
    "I'm sure you'LL see THEY'RE fine; we've done it. I'D say 'twas.",
    "Spaces before punctuation stay : a . b , c ! d ? e 's f n't g",
    # multi-byte UTF-8: accents (composed and combining), CJK, emoji (with modifiers and ZWJ)
    "naïve café, Ærøskøbing, Ångström, straße ẞ, a\u0301b",
    "日本語のテキスト、中文文本。한국어 텍스트",
    "🙂👍🏽 👨‍👩‍👧 🇫🇷 ✓ €100 ½ ²",
    "Привет, мир! Γειά σου κόσμε. مرحبا بالعالم",
    # numbers: runs longer than the pattern's 3 digits, other scripts' digits
    "1 12 123 1234 1234567 12345678901 3.14159 -42 1,000,000 0x7f 2024-01-31",
    "١٢٣٤٥ ۱۲۳ १२३४ ⅫⅣ 𝟘𝟙𝟚𝟛",
    # whitespace runs and newlines, at the start, middle and end
    "   leading spaces",
    "trailing spaces   ",
    "a  b   c    d\t\te \t f",
    "line one\nline two\n\nline four\n\n\n",
    "\n\n\nstarts with newlines",
    "windows\r\nline\r\nendings\r\n",
    "  \n  \n",
    " ",
    "\n",
    "\t",
    # other Unicode whitespace and controls the split pattern has to agree on
    "nbsp\xa0here, ideographic\u3000space, line\u2028sep, nel\x85x, fs\x1cgs\x1d, zwsp\u200bx\x0bvt\x0cff",
    "\x00\x01\x7f control bytes",
    # the special token: alone, repeated, glued to words, and near-misses
    EOT,
    EOT + EOT,
    "The end." + EOT + "Once upon a time",
    " " + EOT + " \n" + EOT + "\n",
    "<|endoftext", "endoftext|>", "<|endoftext|", "<|EndOfText|>", "<|endoftext|>>",
]


def fuzzed_texts(n=400, seed=0):
    """Seeded random strings over pieces where splitting and merging are delicate."""
    pieces = list("aZet hsdm'\"19.,!?-_\n\r\t") + [
        " ", "  ", "\n\n", "the", " the", "'s", "'LL", "é", "ß", "日", "本", "🙂", "👍🏽", "١", "½", "Ⅻ",
        "\U0001d7d8", "\xa0", "\u3000", "\u2028", "\x85", "\x1c", "\u200b", "\x0b", "\u0301", EOT, "<|",
    ]
    rng = random.Random(seed)
    return ["".join(rng.choice(pieces) for _ in range(rng.randint(1, 24))) for _ in range(n)]


ALL_TEXTS = TEXTS + CORPUS_LINES + fuzzed_texts()


def test_the_texts_cover_what_the_issue_names():
    joined = "".join(ALL_TEXTS)
    assert EOT in joined and "\n\n" in joined and "   " in joined and "1234567" in joined
    assert any(len(c.encode("utf-8")) == 4 for c in joined)  # emoji: 4-byte UTF-8
    assert len(CORPUS_LINES) > 100


def test_the_directories_hold_the_hf_files():
    for directory in HF_DIRS:
        for name in HF_FILES:
            path = directory / name
            assert path.is_file(), f"{path} is missing: run python checkpoints/tokenizer/build.py"
            assert path.stat().st_size < 64_000, f"{path} is {path.stat().st_size} bytes"
        assert (directory / "tokenizer.json").read_bytes() == (HF_DIRS[0] / "tokenizer.json").read_bytes()


@pytest.mark.parametrize("directory", HF_DIRS, ids=dir_ids)
def test_the_vocabulary_is_the_course_vocabulary_in_the_byte_level_alphabet(directory):
    """Every id stands for the same bytes; merge r is the kata's merge r (so its id is 256 + r)."""
    to_unicode = bytes_to_unicode()
    course = course_tokenizer()
    vocab = hf_tokenizer(directory).get_vocab(with_added_tokens=True)
    assert len(vocab) == len(course.vocab) == 512
    want = {"".join(to_unicode[b] for b in token): i for i, token in course.vocab.items() if i < 511}
    want[EOT] = 511
    assert vocab == want
    model = json.loads((directory / "tokenizer.json").read_text(encoding="utf-8"))["model"]
    merged = ["".join(pair) for pair in model["merges"]]
    assert [vocab[token] for token in merged] == list(range(256, 511))
    added = json.loads((directory / "tokenizer.json").read_text(encoding="utf-8"))["added_tokens"]
    assert [(t["id"], t["content"], t["special"]) for t in added] == [(511, EOT, True)]


@pytest.mark.parametrize("directory", HF_DIRS, ids=dir_ids)
def test_tokenizers_library_gives_the_kata_ids(directory):
    course, hf = course_tokenizer(), hf_tokenizer(directory)
    for text in ALL_TEXTS:
        want = course.encode(text)
        assert hf.encode(text).ids == want, f"{text!r}"
        assert hf.decode(want, skip_special_tokens=False) == text == course.decode(want), f"{text!r}"


@pytest.mark.parametrize("directory", HF_DIRS, ids=dir_ids)
def test_auto_tokenizer_gives_the_kata_ids(directory):
    course, tok = course_tokenizer(), auto_tokenizer(directory)
    assert len(tok) == 512 and tok.eos_token == EOT and tok.eos_token_id == tok.pad_token_id == 511
    for text in ALL_TEXTS:
        want = course.encode(text)
        assert tok(text)["input_ids"] == want, f"{text!r}"   # no BOS/EOS added
        assert tok.encode(text) == want, f"{text!r}"
        assert tok.decode(want) == text, f"{text!r}"           # no clean-up of spaces
    batch = tok(TEXTS[1:4])["input_ids"]
    assert batch == [course.encode(t) for t in TEXTS[1:4]]


def test_the_pre_tokenizer_splits_like_the_kata_pattern():
    """The split pattern is the GPT-4 one as Oniguruma reads it (build.hf_pattern): the same
    pieces as the `regex` module's findall, including digit runs longer than three."""
    pre = hf_tokenizer(HF_DIRS[0]).pre_tokenizer
    pattern = course_tokenizer().pattern
    to_unicode = bytes_to_unicode()
    for text in TEXTS + fuzzed_texts(2000, seed=1):
        for part in text.split(EOT):
            want = ["".join(to_unicode[b] for b in piece.encode("utf-8")) for piece in regex.findall(pattern, part)]
            assert [piece for piece, _ in pre.pre_tokenize_str(part)] == want, f"{part!r}"


@pytest.mark.parametrize("directory", HF_DIRS, ids=dir_ids)
def test_decoding_any_ids_matches_the_kata_including_split_characters(directory):
    """Ids that cut a UTF-8 character (tokens that are part of one, or a slice of an encoding)
    decode as the kata's `decode` does: invalid bytes become U+FFFD."""
    course, hf, tok = course_tokenizer(), hf_tokenizer(directory), auto_tokenizer(directory)
    rng = random.Random(2)
    sequences = [[i] for i in range(512)] + [rng.choices(range(512), k=rng.randint(1, 12)) for _ in range(300)]
    emoji = course.encode("a🙂👍🏽日本")
    sequences += [emoji[i:j] for i in range(len(emoji)) for j in range(i + 1, len(emoji) + 1)]
    for ids in sequences:
        want = course.decode(ids)
        assert hf.decode(ids, skip_special_tokens=False) == want, ids
        assert tok.decode(ids) == want, ids


def test_tokenizer_and_model_load_and_generate_from_one_directory():
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    directory = CHECKPOINTS / "gpt2-tiny-trained"
    tok = AutoTokenizer.from_pretrained(directory)
    model = AutoModelForCausalLM.from_pretrained(directory).eval()
    assert model.config.vocab_size == len(tok) == 512
    assert model.config.eos_token_id == tok.eos_token_id and model.config.pad_token_id == tok.pad_token_id
    assert tok.model_max_length == model.config.n_positions

    prompt = "Once upon a time"
    inputs = tok(prompt, return_tensors="pt")
    assert inputs["input_ids"][0].tolist() == course_tokenizer().encode(prompt)
    torch.manual_seed(0)
    with torch.no_grad():
        out = model.generate(**inputs, max_new_tokens=12, do_sample=False, eos_token_id=None,
                             pad_token_id=tok.pad_token_id)
    new = out[0, inputs["input_ids"].shape[1]:].tolist()
    assert len(new) == 12
    text = tok.decode(out[0], skip_special_tokens=True)
    assert isinstance(text, str) and text.startswith(prompt) and len(text) > len(prompt)
    assert tok.decode(out[0]) == course_tokenizer().decode(out[0].tolist())
    # the trained model continues a story (the greedy text of checkpoints/README.md)
    assert text.startswith("Once upon a time, there was"), text


def test_build_output_is_up_to_date(tmp_path):
    """Re-running the writer gives the committed files byte for byte. (If only a different
    `tokenizers` release lays out tokenizer.json differently, the files must still say the
    same thing when the installed library reads and writes both.)"""
    from tokenizers import Tokenizer

    build = _load("checkpoints_tokenizer_build", CHECKPOINTS / "tokenizer" / "build.py")
    build.main(tmp_path)
    written = sorted(p.relative_to(tmp_path).as_posix() for p in tmp_path.rglob("*") if p.is_file())
    assert written == sorted(["tokenizer/tokenizer.json"]
                             + [f"{dir_ids(d)}/{name}" for d in HF_DIRS for name in HF_FILES])
    for rel in written:
        fresh, committed = (tmp_path / rel).read_bytes(), (CHECKPOINTS / rel).read_bytes()
        if fresh != committed and rel in [f"{dir_ids(d)}/tokenizer.json" for d in HF_DIRS]:
            same = (Tokenizer.from_str(fresh.decode()).to_str() == Tokenizer.from_str(committed.decode()).to_str())
            assert same, f"checkpoints/{rel} is stale: run python checkpoints/tokenizer/build.py"
            continue
        assert fresh == committed, f"checkpoints/{rel} is stale: run python checkpoints/tokenizer/build.py"
    again = tmp_path / "again"
    build.main(again)
    assert all((again / rel).read_bytes() == (tmp_path / rel).read_bytes() for rel in written)
