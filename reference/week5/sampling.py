"""Decoding strategies: logit filters, sampling, beam search, speculative decoding (reference)."""

import torch

NEG_INF = float("-inf")


def apply_temperature(logits: torch.Tensor, temperature: float) -> torch.Tensor:
    if temperature <= 0:
        raise ValueError("temperature must be positive (sample() treats 0 as greedy)")
    return logits / temperature


def top_k_filter(logits: torch.Tensor, k: int) -> torch.Tensor:
    k = min(k, logits.shape[-1])
    kth = torch.topk(logits, k, dim=-1).values[..., -1:]
    return logits.masked_fill(logits < kth, NEG_INF)


def top_p_filter(logits: torch.Tensor, p: float, min_tokens_to_keep: int = 1) -> torch.Tensor:
    sorted_logits, order = torch.sort(logits, dim=-1, descending=True)
    probs = torch.softmax(sorted_logits, dim=-1)
    mass_before = torch.cumsum(probs, dim=-1) - probs  # mass of strictly more probable tokens
    remove = mass_before >= p
    remove[..., :min_tokens_to_keep] = False
    remove = remove.scatter(-1, order, remove)
    return logits.masked_fill(remove, NEG_INF)


def min_p_filter(logits: torch.Tensor, min_p: float) -> torch.Tensor:
    probs = torch.softmax(logits, dim=-1)
    threshold = min_p * probs.amax(dim=-1, keepdim=True)
    return logits.masked_fill(probs < threshold, NEG_INF)


def repetition_penalty(logits: torch.Tensor, input_ids: torch.Tensor, penalty: float) -> torch.Tensor:
    seen = torch.zeros(logits.shape, dtype=torch.bool, device=logits.device)
    seen.scatter_(-1, input_ids, True)
    penalised = torch.where(logits < 0, logits * penalty, logits / penalty)
    return torch.where(seen, penalised, logits)


def frequency_presence_penalty(
    logits: torch.Tensor, input_ids: torch.Tensor, frequency: float, presence: float
) -> torch.Tensor:
    counts = torch.zeros(logits.shape, dtype=logits.dtype, device=logits.device)
    counts.scatter_add_(-1, input_ids, torch.ones(input_ids.shape, dtype=logits.dtype, device=logits.device))
    return logits - counts * frequency - (counts > 0).to(logits.dtype) * presence


def sample(logits, temperature=1.0, top_k=None, top_p=None, min_p=None, generator=None) -> torch.Tensor:
    if temperature == 0:
        return logits.argmax(dim=-1)
    logits = apply_temperature(logits, temperature)
    if top_k is not None:
        logits = top_k_filter(logits, top_k)
    if top_p is not None:
        logits = top_p_filter(logits, top_p)
    if min_p is not None:
        logits = min_p_filter(logits, min_p)
    probs = torch.softmax(logits.float(), dim=-1)
    flat = probs.reshape(-1, probs.shape[-1])
    ids = torch.multinomial(flat, 1, generator=generator)
    return ids.reshape(logits.shape[:-1])


@torch.no_grad()
def beam_search(model, input_ids, num_beams, max_new_tokens, length_penalty=1.0, eos_token_id=None):
    k = num_beams
    running = input_ids[:1]  # [n, T + step]; one beam until the first step widens the search
    running_scores = torch.zeros(1, dtype=torch.float32, device=input_ids.device)
    finished: list[tuple[float, torch.Tensor]] = []  # (score, sequence), best first
    for step in range(max_new_tokens):
        logprobs = torch.log_softmax(model(running)[:, -1, :].float(), dim=-1)  # [n, V]
        vocab = logprobs.shape[-1]
        totals = (running_scores[:, None] + logprobs).flatten()
        top_scores, top_idx = torch.topk(totals, min(2 * k, totals.numel()))
        gen_len = step + 1
        last = step == max_new_tokens - 1
        next_seqs, next_scores = [], []
        for rank, (score, idx) in enumerate(zip(top_scores.tolist(), top_idx.tolist())):
            beam, token = divmod(idx, vocab)
            seq = torch.cat([running[beam], running.new_tensor([token])])
            if last or token == eos_token_id:
                if rank < k:  # only the first k candidates may finish
                    finished.append((score / gen_len**length_penalty, seq))
            elif len(next_seqs) < k:
                next_seqs.append(seq)
                next_scores.append(score)
        finished = sorted(finished, key=lambda h: h[0], reverse=True)[:k]
        if last:
            break
        running = torch.stack(next_seqs)
        running_scores = torch.tensor(next_scores, dtype=torch.float32, device=input_ids.device)
        # done once k hypotheses are finished and the best running beam, scored at its
        # current length, cannot beat the worst of them
        if len(finished) == k and next_scores[0] / gen_len**length_penalty <= finished[-1][0]:
            break
    return finished[0][1][None, :]


def _probs(logits: torch.Tensor, temperature: float) -> torch.Tensor:
    """Next-token distribution; temperature 0 is a one-hot on the argmax."""
    if temperature == 0:
        return torch.nn.functional.one_hot(logits.argmax(-1), logits.shape[-1]).to(torch.float64)
    return torch.softmax(logits.to(torch.float64) / temperature, dim=-1)


def _draw(probs: torch.Tensor, generator) -> int:
    return int(torch.multinomial(probs, 1, generator=generator))


@torch.no_grad()
def speculative_decode(target, draft, input_ids, max_new_tokens, k=4, temperature=1.0, generator=None):
    ids = input_ids
    start = input_ids.shape[1]
    proposed = accepted = 0
    while ids.shape[1] - start < max_new_tokens:
        n_draft = min(k, max_new_tokens - (ids.shape[1] - start))
        seq, q = ids, []
        for _ in range(n_draft):
            q_i = _probs(draft(seq)[0, -1], temperature)
            token = _draw(q_i, generator)
            q.append(q_i)
            seq = torch.cat([seq, seq.new_tensor([[token]])], dim=1)
        # one target pass scores every proposal plus the bonus position
        p = _probs(target(seq)[0, -(n_draft + 1):], temperature)  # [n_draft + 1, V]
        new = []
        for i in range(n_draft):
            token = int(seq[0, ids.shape[1] + i])
            proposed += 1
            ratio = p[i, token] / q[i][token]
            if temperature == 0:
                ok = bool(p[i, token] == 1)
            else:
                ok = bool(torch.rand((), generator=generator, dtype=torch.float64) < ratio)
            if ok:
                accepted += 1
                new.append(token)
                continue
            residual = torch.clamp(p[i] - q[i], min=0)
            new.append(_draw(residual / residual.sum(), generator))
            break
        else:
            new.append(_draw(p[n_draft], generator))  # bonus token from the target
        ids = torch.cat([ids, ids.new_tensor([new])], dim=1)
    return ids[:, : start + max_new_tokens], accepted / max(proposed, 1)
