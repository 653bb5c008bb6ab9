"""A correct `week5.sampling` written differently from the reference.

Float64 internals, transformers-style ascending top-p, Gumbel-max sampling, beam search that
calls the model one beam at a time, and speculative decoding that draws the acceptance
uniforms before the target call.
"""

import torch


def apply_temperature(logits, temperature):
    if not temperature > 0:
        raise ValueError("temperature must be > 0")
    return (logits.double() / temperature).to(logits.dtype)


def top_k_filter(logits, k):
    sorted_desc = logits.sort(dim=-1, descending=True).values
    kth = sorted_desc[..., min(k, logits.shape[-1]) - 1].unsqueeze(-1)
    return torch.where(logits >= kth, logits, torch.full_like(logits, float("-inf")))


def top_p_filter(logits, p, min_tokens_to_keep=1):
    asc, order = logits.double().sort(dim=-1)
    cum = asc.softmax(-1).cumsum(-1)
    drop = cum <= 1 - p
    drop[..., logits.shape[-1] - min_tokens_to_keep:] = False
    mask = torch.zeros_like(drop).scatter(-1, order, drop)
    return torch.where(mask, torch.full_like(logits, float("-inf")), logits)


def min_p_filter(logits, min_p):
    logp = logits.double().log_softmax(-1)
    cut = logp.amax(-1, keepdim=True) + torch.log(torch.tensor(min_p, dtype=torch.float64))
    return torch.where(logp < cut, torch.full_like(logits, float("-inf")), logits)


def repetition_penalty(logits, input_ids, penalty):
    out = logits.clone()
    flat_out = out.reshape(-1, logits.shape[-1])
    flat_ids = input_ids.reshape(-1, input_ids.shape[-1])
    for row in range(flat_out.shape[0]):
        for tok in set(flat_ids[row].tolist()):
            x = flat_out[row, tok]
            flat_out[row, tok] = x * penalty if x < 0 else x / penalty
    return flat_out.reshape(logits.shape)


def frequency_presence_penalty(logits, input_ids, frequency, presence):
    counts = torch.nn.functional.one_hot(input_ids, logits.shape[-1]).sum(-2).double()
    out = logits.double() - frequency * counts - presence * (counts > 0).double()
    return out.to(logits.dtype)


def sample(logits, temperature=1.0, top_k=None, top_p=None, min_p=None, generator=None):
    if temperature == 0:
        return logits.argmax(-1)
    x = apply_temperature(logits.double(), temperature)
    if top_k is not None:
        x = top_k_filter(x, top_k)
    if top_p is not None:
        x = top_p_filter(x, top_p)
    if min_p is not None:
        x = min_p_filter(x, min_p)
    u = torch.rand(x.shape, generator=generator, dtype=torch.float64).clamp(1e-300, 1.0)
    return (x - torch.log(-torch.log(u))).argmax(-1)  # Gumbel-max trick


@torch.no_grad()
def beam_search(model, input_ids, num_beams, max_new_tokens, length_penalty=1.0, eos_token_id=None):
    beams = [(0.0, input_ids[0].tolist())]
    done = []
    for step in range(1, max_new_tokens + 1):
        cands = []
        for score, toks in beams:
            logp = model(torch.tensor([toks])).float()[0, -1].log_softmax(-1)
            for tok, lp in enumerate(logp.tolist()):
                cands.append((score + lp, toks + [tok]))
        cands.sort(key=lambda c: c[0], reverse=True)
        cands = cands[: 2 * num_beams]
        beams = []
        for rank, (score, toks) in enumerate(cands):
            if toks[-1] == eos_token_id or step == max_new_tokens:
                if rank < num_beams:
                    done.append((score / step**length_penalty, toks))
            elif len(beams) < num_beams:
                beams.append((score, toks))
        done = sorted(done, key=lambda d: d[0], reverse=True)[:num_beams]
        if step == max_new_tokens:
            break
        if len(done) == num_beams and beams[0][0] / step**length_penalty <= done[-1][0]:
            break
    return torch.tensor([done[0][1]], dtype=input_ids.dtype)


def _dist(logits, temperature):
    if temperature == 0:
        out = torch.zeros_like(logits, dtype=torch.float64)
        out[logits.argmax()] = 1.0
        return out
    return (logits.double() / temperature).softmax(-1)


@torch.no_grad()
def speculative_decode(target, draft, input_ids, max_new_tokens, k=4, temperature=1.0, generator=None):
    out = input_ids[0].tolist()
    goal = len(out) + max_new_tokens
    n_prop = n_acc = 0
    while len(out) < goal:
        g = min(k, goal - len(out))
        props, qs = [], []
        for _ in range(g):
            q = _dist(draft(torch.tensor([out + props]))[0, -1], temperature)
            props.append(int(torch.multinomial(q, 1, generator=generator)))
            qs.append(q)
        us = torch.rand(g, generator=generator, dtype=torch.float64)
        ps = [_dist(row, temperature) for row in target(torch.tensor([out + props]))[0, -(g + 1):]]
        for i, tok in enumerate(props):
            n_prop += 1
            if us[i] * qs[i][tok] < ps[i][tok]:
                n_acc += 1
                out.append(tok)
                continue
            res = (ps[i] - qs[i]).clamp(min=0)
            out.append(int(torch.multinomial(res / res.sum(), 1, generator=generator)))
            break
        else:
            out.append(int(torch.multinomial(ps[g], 1, generator=generator)))
    return torch.tensor([out[:goal]], dtype=input_ids.dtype), (n_acc / n_prop if n_prop else 0.0)
