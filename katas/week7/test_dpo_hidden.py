"""Hidden tests for week7/dpo: fresh seeded inputs, expected values from the reference."""

import pytest
import torch

from graders import check, reference, student

pytestmark = pytest.mark.hidden

dpo = student("week7.dpo")
model = reference("week7.dpo")


def logps(seed, B=8):
    g = torch.Generator().manual_seed(seed)
    return [-torch.rand(B, generator=g) * 60 - 2 for _ in range(4)]


@pytest.mark.points(2)
@pytest.mark.parametrize("seed", [41, 42])
def test_sequence_logps_on_fresh_logits(seed):
    g = torch.Generator().manual_seed(seed)
    logits = torch.randn(4, 11, 23, generator=g) * 3
    labels = torch.randint(0, 23, (4, 11), generator=g)
    mask = torch.rand(4, 11, generator=g) < 0.5
    mask[:, 0] = True  # position 0 never counts, even when the mask says so
    mask[:, -1] = True
    check.close(dpo.sequence_logps(logits, labels, mask), model.sequence_logps(logits, labels, mask), hint="no_shift")


@pytest.mark.points(3)
@pytest.mark.parametrize("beta,eps", [(0.05, 0.0), (0.25, 0.1), (1.5, 0.3)])
def test_dpo_loss_on_fresh_logps(beta, eps):
    fresh = logps(int(beta * 100))
    ours = [t.clone().requires_grad_(True) for t in fresh]
    theirs = [t.clone().requires_grad_(True) for t in fresh]
    loss, chosen, rejected = dpo.dpo_loss(*ours, beta=beta, label_smoothing=eps)
    want = model.dpo_loss(*theirs, beta=beta, label_smoothing=eps)  # (loss, chosen_rewards, rejected_rewards)
    check.close(loss, want[0], hint="beta_outside_sigmoid")
    check.close(chosen, want[1], what="chosen_rewards")
    check.close(rejected, want[2], what="rejected_rewards")
    # gradients come out of the call itself (a grader replays values, not autograd graphs)
    got_grads = dpo.dpo_loss.with_grad(*ours, beta=beta, label_smoothing=eps).inputs
    want_grads = model.dpo_loss.with_grad(*theirs, beta=beta, label_smoothing=eps).inputs
    for name in ("policy_chosen_logps", "policy_rejected_logps"):
        check.close(got_grads[name], want_grads[name], hint="sign_flipped", what=f"gradient of {name}")


@pytest.mark.points(2)
@pytest.mark.parametrize("seed", [51, 52])
def test_ipo_and_simpo_on_fresh_logps(seed):
    pc, pr, rc, rr = logps(seed)
    check.close(dpo.ipo_loss(pc, pr, rc, rr, beta=0.3), model.ipo_loss(pc, pr, rc, rr, beta=0.3), what="ipo_loss")
    g = torch.Generator().manual_seed(seed + 1)
    lc, lr = torch.randint(1, 40, (8,), generator=g).float(), torch.randint(1, 40, (8,), generator=g).float()
    check.close(dpo.simpo_loss(pc, pr, lc, lr, beta=2.5, gamma=1.0), model.simpo_loss(pc, pr, lc, lr, beta=2.5, gamma=1.0),
                what="simpo_loss")


@pytest.mark.points(1)
def test_dpo_loss_default_beta():
    """dpo_loss without beta and label_smoothing uses beta=0.1 and no smoothing (the signature's
    defaults): loss and rewards as the reference's with them given."""
    fresh = logps(17)
    loss, chosen, rejected = dpo.dpo_loss(*fresh)
    want = model.dpo_loss(*fresh, beta=0.1, label_smoothing=0.0)
    check.close(loss, want[0], hint="default_beta", what="loss without beta")
    check.close(chosen, want[1], hint="default_beta", what="chosen_rewards without beta")
    check.close(rejected, want[2], hint="default_beta", what="rejected_rewards without beta")
