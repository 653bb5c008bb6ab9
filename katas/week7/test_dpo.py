"""Public tests for week7/dpo.

Oracles: a direct loop over positions (and transformers' own shifted LM loss) for
`sequence_logps` on the tiny LLaMA's real logits; the published formulas written with
`F.logsigmoid` for DPO (with label smoothing), IPO and SimPO; autograd on those formulas for
the gradients; golden values from the reference; one DPO step on a toy preference pair.
"""

import math
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

from graders import check, fixtures, in_one_crossing, oracle, student, unwrap
from graders.testing import hinted, randn

dpo = student("week7.dpo")

CHECKPOINTS = Path(__file__).resolve().parents[2] / "checkpoints"


def loop_logps(logits, labels, mask):
    """The oracle: position t >= 1 is predicted by the logits at t - 1; summed where mask."""
    B, T, _ = logits.shape
    out = torch.zeros(B, dtype=torch.float64)
    for b in range(B):
        for t in range(1, T):
            if mask[b, t]:
                out[b] += torch.log_softmax(logits[b, t - 1].double(), -1)[labels[b, t]]
    return out.to(logits.dtype)


def logps_batch(B=4, seed=0, scale=20.0, requires_grad=False):
    """Four [B] tensors of plausible sequence log-probabilities (negative, tens of nats)."""
    out = [(-randn(B, seed=seed + i).abs() * scale - 1.0).requires_grad_(requires_grad) for i in range(4)]
    return out


def dpo_oracle(pc, pr, rc, rr, beta, eps):
    z = (pc - rc) - (pr - rr)
    return (-(1 - eps) * F.logsigmoid(beta * z) - eps * F.logsigmoid(-beta * z)).mean()


# --- sequence_logps ------------------------------------------------------------------------


@pytest.mark.points(3)
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_sequence_logps_matches_a_loop(seed):
    g = torch.Generator().manual_seed(seed)
    B, T, V = 3, 7, 11
    logits = randn(B, T, V, seed=seed, scale=2.0)
    labels = torch.randint(0, V, (B, T), generator=g)
    mask = torch.rand(B, T, generator=g) < 0.6
    mask[:, -1] = True
    check.close(dpo.sequence_logps(logits, labels, mask), loop_logps(logits, labels, mask), hint="no_shift")


@pytest.mark.points(2)
def test_sequence_logps_sums_over_tokens():
    """With all-zero logits every token has log-probability -log V: the sum is -n log V."""
    B, T, V = 3, 9, 8
    logits = torch.zeros(B, T, V)
    labels = torch.randint(0, V, (B, T), generator=torch.Generator().manual_seed(5))
    mask = torch.zeros(B, T, dtype=torch.bool)
    mask[0, 1:] = True
    mask[1, 4:7] = True
    mask[2, 8] = True
    check.close(dpo.sequence_logps(logits, labels, mask), -mask[:, 1:].sum(-1).to(torch.float32) * math.log(V),
                hint="mean_not_sum")


@pytest.mark.points(2)
def test_sequence_logps_ignores_masked_labels_even_when_they_are_minus_100():
    data = fixtures.load("week7/dpo")
    out = dpo.sequence_logps(data["seq_logits"], data["seq_labels"], data["seq_mask"])
    check.close(out, data["seq_logps"], hint="no_shift")


@pytest.mark.points(3)
def test_sequence_logps_on_tiny_llama_logits():
    transformers = pytest.importorskip("transformers")
    model = transformers.LlamaForCausalLM.from_pretrained(CHECKPOINTS / "llama-tiny").eval()
    g = torch.Generator().manual_seed(6)
    ids = torch.randint(1, 512, (3, 12), generator=g)
    prompt_lengths = [3, 5, 8]
    mask = torch.zeros(3, 12, dtype=torch.bool)
    for b, n in enumerate(prompt_lengths):
        mask[b, n:] = True
    with torch.no_grad():
        logits = model(ids).logits
    out = dpo.sequence_logps(logits, ids, mask)
    check.close(out, loop_logps(logits, ids, mask), hint="no_shift")
    # transformers shifts internally and averages over the counted tokens of the batch.
    check.close(-out.sum(), oracle(lm_loss_sum, model, ids, mask), hint="no_shift",
                what="-(sum of sequence_logps), vs the model's own LM loss times the number of counted tokens")


def lm_loss_sum(model, ids, mask):
    """transformers' mean LM loss over the counted tokens, times their number (only through oracle(...))."""
    with torch.no_grad():
        loss = model(ids, labels=torch.where(mask, ids, torch.full_like(ids, -100))).loss
    return loss * mask[:, 1:].sum()


# --- dpo_loss ------------------------------------------------------------------------------


@pytest.mark.points(2)
def test_dpo_loss_formula_with_beta_one():
    pc, pr, rc, rr = logps_batch(seed=10, scale=1.0)
    loss, _, _ = dpo.dpo_loss(pc, pr, rc, rr, beta=1.0)
    check.close(loss, dpo_oracle(pc, pr, rc, rr, 1.0, 0.0), hint="sign_flipped")


@pytest.mark.points(2)
@pytest.mark.parametrize("beta", [0.1, 0.5])
def test_beta_scales_the_log_ratio_inside_the_sigmoid(beta):
    pc, pr, rc, rr = logps_batch(seed=20)
    loss, _, _ = dpo.dpo_loss(pc, pr, rc, rr, beta=beta)
    check.close(loss, dpo_oracle(pc, pr, rc, rr, beta, 0.0), hint="beta_outside_sigmoid")


@pytest.mark.points(2)
@pytest.mark.parametrize("beta,eps", [(0.1, 0.1), (0.3, 0.25)])
def test_label_smoothing(beta, eps):
    pc, pr, rc, rr = logps_batch(seed=30)
    loss, _, _ = dpo.dpo_loss(pc, pr, rc, rr, beta=beta, label_smoothing=eps)
    check.close(loss, dpo_oracle(pc, pr, rc, rr, beta, eps), hint="beta_outside_sigmoid")


@pytest.mark.points(1)
def test_loss_falls_as_the_chosen_response_gains():
    pc, pr, rc, rr = logps_batch(seed=40)
    base, _, _ = dpo.dpo_loss(pc, pr, rc, rr, beta=0.1)
    better, _, _ = dpo.dpo_loss(pc + 1.0, pr, rc, rr, beta=0.1)
    check.that(bool(better < base), f"raising log pi(chosen) should lower the loss: {base.item():.5f} -> "
               f"{better.item():.5f}", hint="sign_flipped")


@pytest.mark.points(2)
def test_rewards_are_detached_beta_log_ratios():
    pc, pr, rc, rr = logps_batch(seed=50, requires_grad=True)
    _, chosen, rejected = dpo.dpo_loss(pc, pr, rc, rr, beta=0.2)
    check.close(chosen, 0.2 * (pc - rc).detach(), what="chosen_rewards")
    check.close(rejected, 0.2 * (pr - rr).detach(), what="rejected_rewards")
    check.that(not chosen.requires_grad and not rejected.requires_grad,
               "the rewards should be detached (requires_grad=False): they are for logging",
               hint="rewards_not_detached")


def policy_gradients(pc, pr, rc, rr, beta, eps):
    """d(weight * loss) / d(policy log-probs), with with_grad's fixed weight (only through oracle(...))."""
    want = [t.detach().clone().requires_grad_(True) for t in (pc, pr)]
    loss = dpo_oracle(want[0], want[1], rc.detach(), rr.detach(), beta, eps)
    weight = torch.randn(loss.shape, generator=torch.Generator().manual_seed(0), dtype=loss.dtype)
    return torch.autograd.grad((loss * weight).sum(), want)


@pytest.mark.points(3)
@pytest.mark.parametrize("beta,eps", [(0.1, 0.0), (0.4, 0.2)])
def test_gradients_flow_only_into_the_policy(beta, eps):
    pc, pr, rc, rr = logps_batch(seed=60, requires_grad=True)
    # the gradients come out of the call itself: d(w * loss) for a fixed random weight w
    got = list(dpo.dpo_loss.with_grad(pc, pr, rc, rr, beta=beta, label_smoothing=eps).inputs.values())
    check.equal(len(got), 4, what="number of log-prob inputs given to dpo_loss")
    grads = oracle(policy_gradients, pc, pr, rc, rr, beta, eps)
    check.close(got[0], grads[0], what="d loss / d policy_chosen_logps", hint="beta_outside_sigmoid")
    check.close(got[1], grads[1], what="d loss / d policy_rejected_logps", hint="beta_outside_sigmoid")
    for name, g in (("ref_chosen_logps", got[2]), ("ref_rejected_logps", got[3])):
        check.that(g is None or not bool(g.any()),
                   f"{name} received a gradient: the reference is a constant (detach it)",
                   hint="rewards_not_detached")


@pytest.mark.points(1)
def test_dpo_loss_golden():
    data = fixtures.load("week7/dpo")
    pc, pr, rc, rr = (data[f"logps_{k}"] for k in ("pc", "pr", "rc", "rr"))
    for beta, eps in [(0.1, 0.0), (0.5, 0.2)]:
        loss, chosen, rejected = dpo.dpo_loss(pc, pr, rc, rr, beta=beta, label_smoothing=eps)
        key = f"dpo_{beta}_{eps}"
        check.close(loss, data[f"{key}_loss"], what=f"loss (beta={beta}, label_smoothing={eps})")
        check.close(chosen, data[f"{key}_chosen"], what="chosen_rewards")
        check.close(rejected, data[f"{key}_rejected"], what="rejected_rewards")


@pytest.mark.points(1)
def test_dpo_loss_is_finite_for_huge_margins():
    pc, pr, rc, rr = (torch.tensor([v]) for v in (-5000.0, -10.0, -10.0, -10.0))
    loss, _, _ = dpo.dpo_loss(pc, pr, rc, rr, beta=0.5)
    check.close(loss, dpo_oracle(pc, pr, rc, rr, 0.5, 0.0), hint="unstable_logsigmoid")


# --- IPO and SimPO -------------------------------------------------------------------------


@pytest.mark.points(2)
@pytest.mark.parametrize("beta", [0.1, 1.0])
def test_ipo_loss(beta):
    pc, pr, rc, rr = logps_batch(seed=70, scale=2.0)
    check.close(dpo.ipo_loss(pc, pr, rc, rr, beta=beta), ((((pc - rc) - (pr - rr)) - 1 / (2 * beta)) ** 2).mean(),
                hint="sign_flipped")


@pytest.mark.points(2)
@pytest.mark.parametrize("beta,gamma", [(2.0, 0.5), (10.0, 1.5)])
def test_simpo_loss(beta, gamma):
    pc, pr, _, _ = logps_batch(seed=80)
    lc = torch.tensor([5.0, 12.0, 3.0, 30.0])
    lr = torch.tensor([9.0, 4.0, 3.0, 17.0])
    check.close(dpo.simpo_loss(pc, pr, lc, lr, beta=beta, gamma=gamma),
                -F.logsigmoid(beta * pc / lc - beta * pr / lr - gamma).mean(), hint="sign_flipped")


@pytest.mark.points(1)
def test_simpo_loss_is_finite_for_huge_margins():
    pc, pr = torch.tensor([-900.0, -2.0]), torch.tensor([-1.0, -2.0])
    lens = torch.tensor([1.0, 1.0])
    check.close(dpo.simpo_loss(pc, pr, lens, lens, beta=1.0, gamma=0.5),
                -F.logsigmoid(1.0 * pc / lens - 1.0 * pr / lens - 0.5).mean(), hint="unstable_logsigmoid")


# --- one DPO step --------------------------------------------------------------------------


@pytest.mark.points(3)
def _one_dpo_step():
    """A bigram LM (logits at t = table[token t]) takes one gradient step on one pair.

    Runs as one crossing (see graders.in_one_crossing): autograd flows through two student
    functions and the test's own optimizer step; only the margins come back.
    """
    sequence_logps, dpo_loss = unwrap(dpo.sequence_logps), unwrap(dpo.dpo_loss)
    V = 10
    table = randn(V, V, seed=90).requires_grad_(True)
    ref_table = table.detach().clone()
    prompt = [1, 2, 3]
    chosen = torch.tensor([prompt + [4, 5, 6]])
    rejected = torch.tensor([prompt + [7, 8, 9]])
    mask = torch.tensor([[False] * 3 + [True] * 3])

    def logps(tab, ids):
        return sequence_logps(tab[ids], ids, mask)

    with torch.no_grad():
        ref_c, ref_r = logps(ref_table, chosen), logps(ref_table, rejected)
    before = (logps(table, chosen) - logps(table, rejected)).item()
    loss, _, _ = dpo_loss(logps(table, chosen), logps(table, rejected), ref_c, ref_r, beta=0.5)
    (grad,) = torch.autograd.grad(loss, table, allow_unused=True)
    with torch.no_grad():
        table -= 1.0 * (grad if grad is not None else torch.zeros_like(table))
        after = (logps(table, chosen) - logps(table, rejected)).item()
    return float(before), float(after)


@pytest.mark.points(3)
def test_one_dpo_step_raises_the_chosen_margin():
    before, after = in_one_crossing(dpo, _one_dpo_step)
    check.that(after > before + 0.1, f"one DPO step should raise log pi(chosen) - log pi(rejected): "
               f"{before:.4f} -> {after:.4f}", hint="sign_flipped")


# --- dtypes, extreme magnitudes, the stated rules ------------------------------------------


def dtype_or(out, dtype, hint):
    """`dtype_changed` when the student's result is not in `dtype`, else `hint` (only through oracle(...))."""
    return "dtype_changed" if getattr(out, "dtype", dtype) != dtype else hint


def fresh_batch(seed, B=3, T=8, V=10, p_mask=0.4):
    """labels [B, T] and a mask [B, T] with mask[:, -1] set (no row without a counted token)."""
    g = torch.Generator().manual_seed(seed)
    labels = torch.randint(0, V, (B, T), generator=g)
    mask = torch.rand(B, T, generator=g) > p_mask
    mask[:, -1] = True
    return labels, mask


@pytest.mark.points(1)
@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16, torch.float64], ids=lambda d: str(d).removeprefix("torch."))
def test_sequence_logps_keeps_the_logits_dtype(dtype):
    labels, mask = fresh_batch(100)
    logits = randn(3, 8, 10, seed=101, dtype=dtype, scale=2.0)
    out = dpo.sequence_logps(logits, labels, mask)
    check.close(out, loop_logps(logits, labels, mask), hint=oracle(dtype_or, out, dtype, "no_shift"),
                what=f"sequence_logps of {dtype} logits")


# Logits of +-1e4 and beyond: per dtype, the spread of a row (most probabilities underflow to
# 0, so log(softmax) gives -inf); kept to hundreds in half precision so that sums stay in range.
SPREAD = {torch.float16: 100.0, torch.bfloat16: 100.0, torch.float32: 3e3, torch.float64: 3e3}


@pytest.mark.points(2)
@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16, torch.float32, torch.float64],
                         ids=lambda d: str(d).removeprefix("torch."))
def test_sequence_logps_of_extreme_logits(dtype):
    # Rows: a wide spread, the same near +1e4, and near -1e4 (a row that is all very negative).
    labels, mask = fresh_batch(102)
    logits = (randn(3, 8, 10, seed=103, dtype=torch.float64, scale=SPREAD[dtype])
              + torch.tensor([0.0, 1e4, -1e4], dtype=torch.float64)[:, None, None]).to(dtype)
    out = dpo.sequence_logps(logits, labels, mask)
    check.close(out, loop_logps(logits, labels, mask), hint=oracle(dtype_or, out, dtype, "log_of_softmax"),
                what=f"sequence_logps of {dtype} logits near 1e4")


@pytest.mark.points(1)
def test_sequence_logps_mask_may_be_zeros_and_ones():
    labels, mask = fresh_batch(104)
    logits = randn(3, 8, 10, seed=105, scale=2.0)
    out = hinted("mask_not_bool", dpo.sequence_logps, logits, labels, mask.long())  # "bool (or 0/1)"
    check.close(out, loop_logps(logits, labels, mask), hint="mask_not_bool")


@pytest.mark.points(1)
def test_sequence_logps_never_indexes_with_minus_100():
    labels, mask = fresh_batch(106)
    logits = randn(3, 8, 10, seed=107, scale=2.0)
    ignored = labels.masked_fill(~mask, -100)
    out = hinted("ignore_index", dpo.sequence_logps, logits, ignored, mask)
    check.close(out, loop_logps(logits, labels, mask), hint="ignore_index")


@pytest.mark.points(1)
@pytest.mark.parametrize("eps", [0.1, 0.4])
def test_label_smoothing_mixes_in_the_flipped_loss(eps):
    pc, pr, rc, rr = logps_batch(seed=110, scale=2.0)
    loss, _, _ = dpo.dpo_loss(pc, pr, rc, rr, beta=0.5, label_smoothing=eps)
    check.close(loss, dpo_oracle(pc, pr, rc, rr, 0.5, eps), what=f"loss with label_smoothing={eps}",
                hint="label_smoothing_ignored")


@pytest.mark.points(1)
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64], ids=lambda d: str(d).removeprefix("torch."))
def test_dpo_loss_is_finite_for_huge_margins_both_ways(dtype):
    # beta * z = -2495 and +2495: both log-sigmoid terms of the smoothed loss meet an argument
    # whose sigmoid underflows to 0 (in float64 too).
    pc, pr, rc, rr = (torch.tensor(v, dtype=dtype) for v in ([-5000.0, -10.0], [-10.0, -5000.0], [-10.0, -10.0],
                                                              [-10.0, -10.0]))
    loss, _, _ = dpo.dpo_loss(pc, pr, rc, rr, beta=0.5, label_smoothing=0.1)
    check.close(loss, dpo_oracle(pc, pr, rc, rr, 0.5, 0.1), hint="unstable_logsigmoid")


def ipo_policy_gradients(pc, pr, rc, rr, beta):
    """d(weight * IPO loss) / d(policy log-probs), with with_grad's fixed weight (only through oracle(...))."""
    want = [t.detach().clone().requires_grad_(True) for t in (pc, pr)]
    z = (want[0] - rc.detach()) - (want[1] - rr.detach())
    loss = ((z - 1 / (2 * beta)) ** 2).mean()
    weight = torch.randn(loss.shape, generator=torch.Generator().manual_seed(0), dtype=loss.dtype)
    return torch.autograd.grad((loss * weight).sum(), want)


@pytest.mark.points(1)
def test_ipo_gradients_flow_only_into_the_policy():
    pc, pr, rc, rr = logps_batch(seed=111, scale=2.0, requires_grad=True)
    got = list(dpo.ipo_loss.with_grad(pc, pr, rc, rr, beta=0.2).inputs.values())
    check.equal(len(got), 4, what="number of log-prob inputs given to ipo_loss")
    grads = oracle(ipo_policy_gradients, pc, pr, rc, rr, 0.2)
    check.close(got[0], grads[0], what="d loss / d policy_chosen_logps", hint="sign_flipped")
    check.close(got[1], grads[1], what="d loss / d policy_rejected_logps", hint="sign_flipped")
    for name, g in (("ref_chosen_logps", got[2]), ("ref_rejected_logps", got[3])):
        check.that(g is None or not bool(g.any()),
                   f"{name} received a gradient: the reference is a constant (detach it)",
                   hint="rewards_not_detached")


@pytest.mark.points(1)
def test_simpo_normalises_by_length_and_uses_gamma_as_it_is():
    pc, pr, _, _ = logps_batch(seed=112)
    lc = torch.tensor([4.0, 15.0, 2.0, 25.0])
    lr = torch.tensor([11.0, 3.0, 6.0, 9.0])
    check.close(dpo.simpo_loss(pc, pr, lc, lr, beta=2.0, gamma=0.0),
                -F.logsigmoid(2.0 * pc / lc - 2.0 * pr / lr).mean(), what="simpo_loss(gamma=0) with lengths",
                hint="simpo_length_normalisation")
    ones = torch.ones(4)
    check.close(dpo.simpo_loss(pc * 0.05, pr * 0.05, ones, ones, beta=4.0, gamma=2.0),
                -F.logsigmoid(4.0 * pc * 0.05 - 4.0 * pr * 0.05 - 2.0).mean(), what="simpo_loss(beta=4, gamma=2)",
                hint="simpo_gamma")
