"""Hidden tests for week7/sft: fresh seeded examples, expected values from the reference."""

import pytest
import torch

from graders import check, reference, student

pytestmark = pytest.mark.hidden

sft = student("week7.sft")
model = reference("week7.sft")


def random_examples(n, seed, max_prompt=6, max_response=6):
    g = torch.Generator().manual_seed(seed)
    out = []
    for _ in range(n):
        n_prompt = int(torch.randint(0, max_prompt + 1, (), generator=g))
        n_response = int(torch.randint(0, max_response + 1, (), generator=g))
        ids = torch.randint(3, 500, (n_prompt + n_response,), generator=g).tolist()
        out.append((ids[:n_prompt], ids[n_prompt:]))
    return out


@pytest.mark.points(2)
@pytest.mark.parametrize("seed", [11, 12, 13])
def test_build_example_on_fresh_pairs(seed):
    for i, (prompt, response) in enumerate(random_examples(12, seed)):
        max_len = 4 + (i * 3) % 11
        ids, labels = sft.build_example(prompt, response, max_len, 2)
        want = model.build_example(prompt, response, max_len, 2)  # (input_ids, labels)
        check.equal(list(ids), want[0], hint="eos_missing", what="input_ids")
        check.equal(list(labels), want[1], hint="prompt_not_masked", what="labels")


@pytest.mark.points(2)
@pytest.mark.parametrize("seed", [21, 22])
def test_sft_loss_on_fresh_logits(seed):
    g = torch.Generator().manual_seed(seed)
    logits = torch.randn(3, 10, 17, generator=g) * 2
    labels = torch.randint(0, 17, (3, 10), generator=g)
    labels[:, :4] = -100
    check.close(sft.sft_loss(logits, labels), model.sft_loss(logits, labels), hint="no_shift")


def as_example(prompt, response, max_len, eos_id=0):
    """(input_ids, labels) built here: inputs to student code never come from the reference."""
    ids = prompt + response + [eos_id]
    return ids[:max_len], ([-100] * len(prompt) + response + [eos_id])[:max_len]


@pytest.mark.points(3)
@pytest.mark.parametrize("seed,max_len", [(31, 10), (32, 16), (33, 13)])
def test_pack_on_fresh_examples(seed, max_len):
    examples = [as_example(p, r, max_len) for p, r in random_examples(10, seed)]
    rows, want = sft.pack(examples, max_len), model.pack(examples, max_len)
    check.equal(len(rows), len(want), hint="packing_rule", what="number of rows")
    for i, row in enumerate(rows):
        check.equal(row["input_ids"], want[i]["input_ids"], hint="packing_rule", what=f"rows[{i}]['input_ids']")
        check.equal(row["labels"], want[i]["labels"], hint="packing_leaks_loss", what=f"rows[{i}]['labels']")
        check.equal(row["position_ids"], want[i]["position_ids"], hint="positions_not_reset",
                    what=f"rows[{i}]['position_ids']")
        check.equal(row["attention_mask"], want[i]["attention_mask"], hint="packing_leaks_attention",
                    what=f"rows[{i}]['attention_mask']")
