"""Week 5 — decoding strategies.

A language model gives you logits `[..., V]` for the next token; *decoding* turns them into
tokens. This kata builds the pieces every inference engine has:

1. logit filters (temperature, top-k, top-p, min-p) and penalties (repetition,
   frequency/presence), with the exact semantics of transformers' logits warpers;
2. `sample`, which chains them and draws a token;
3. `beam_search`, token for token the same as `model.generate(num_beams=...)`;
4. `speculative_decode`, which uses a cheap draft model to propose tokens and a target
   model to verify them, while sampling *exactly* from the target's distribution.

Conventions for the filters: input logits `[..., V]` (any leading batch shape, any float
dtype), output the same shape and dtype, with removed tokens set to `-inf` and kept tokens
left unchanged. Never modify the input in place.

Run time: `pytest katas/week5/test_sampling.py` takes about 12 s with a correct solution on a
2-core laptop CPU. Much longer means something in your code is slow (see the hints); a test
that runs past its limit fails with TIMEOUT, naming your function, and the kata's other
tests of that function are skipped.
"""

import torch


def apply_temperature(logits: torch.Tensor, temperature: float) -> torch.Tensor:
    """Divide logits by `temperature` (> 0; raise ValueError otherwise).

    T < 1 sharpens the distribution, T > 1 flattens it. `softmax(logits / T)`.
    (Greedy decoding, "temperature 0", is handled by `sample`, not here.)
    """
    raise NotImplementedError


def top_k_filter(logits: torch.Tensor, k: int) -> torch.Tensor:
    """Keep the k largest logits of each row; set the rest to -inf.

    Ties: every token tied with the k-th largest value is kept, so a row may keep more
    than k tokens. Worked example, k = 2:

        [3.0, 1.0, 1.0, 0.5]  ->  [3.0, 1.0, 1.0, -inf]     (three kept: both 1.0s tie)

    Pitfall: `torch.topk(...).indices` picks one of the tied tokens arbitrarily; compare
    values against the k-th largest value instead. k larger than V keeps everything.
    """
    raise NotImplementedError


def top_p_filter(logits: torch.Tensor, p: float, min_tokens_to_keep: int = 1) -> torch.Tensor:
    """Nucleus filtering: keep the smallest set of most probable tokens whose mass reaches p.

    Sort the probabilities (softmax of the row) from most to least probable; keep tokens
    while the mass of the tokens *before* them is still below p. The token that crosses p
    is kept. Always keep at least `min_tokens_to_keep` tokens.

    Worked example, probabilities [0.5, 0.3, 0.15, 0.05]:
        p = 0.6  -> keep 0.5 and 0.3 (0.5 < 0.6, so the 0.3 that crosses is kept)
        p = 0.5  -> keep only 0.5 (its mass already reaches p)
        p = 0.85 -> keep 0.5, 0.3, 0.15 (mass before the 0.05 is 0.95 >= 0.85)

    Same results as transformers' `TopPLogitsWarper` (which removes, in ascending order,
    tokens whose cumulative mass is <= 1 - p).
    """
    raise NotImplementedError


def min_p_filter(logits: torch.Tensor, min_p: float) -> torch.Tensor:
    """Keep tokens whose probability is at least `min_p` times the top token's probability.

    probs = softmax(logits); remove where probs < min_p * max(probs). As transformers'
    `MinPLogitsWarper` (the most probable token always survives).
    """
    raise NotImplementedError


def repetition_penalty(logits: torch.Tensor, input_ids: torch.Tensor, penalty: float) -> torch.Tensor:
    """CTRL's repetition penalty, as transformers' `RepetitionPenaltyLogitsProcessor`.

    logits `[..., V]`, input_ids `[..., T]` (same leading shape): the tokens already seen.
    For every token that occurs in its row's input_ids (once or many times: no counting),
    make it less likely when penalty > 1:

        logit > 0  ->  logit / penalty
        logit < 0  ->  logit * penalty     (dividing a negative logit would *raise* it!)

    Example, penalty 2: 4.0 -> 2.0, -1.0 -> -2.0. Tokens not seen are untouched.
    """
    raise NotImplementedError


def frequency_presence_penalty(
    logits: torch.Tensor, input_ids: torch.Tensor, frequency: float, presence: float
) -> torch.Tensor:
    """OpenAI's frequency and presence penalties.

        logit[j] - count[j] * frequency - (count[j] > 0) * presence

    where count[j] is how many times token j occurs in the row's input_ids `[..., T]`.
    Unlike `repetition_penalty` this is additive and counts repeats.
    """
    raise NotImplementedError


def sample(
    logits: torch.Tensor,
    temperature: float = 1.0,
    top_k: int | None = None,
    top_p: float | None = None,
    min_p: float | None = None,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """Draw one token per row: logits `[..., V]` -> LongTensor `[...]`.

    temperature == 0 means greedy: the argmax, no randomness. Otherwise, in this order:
    temperature, then top-k, then top-p, then min-p, then softmax and `torch.multinomial`
    (pass `generator` so that runs are reproducible).

    Order matters: top-p and min-p look at probabilities, which depend on the temperature,
    so the temperature must be applied *before* filtering (as transformers does).
    """
    raise NotImplementedError


def beam_search(
    model,
    input_ids: torch.Tensor,
    num_beams: int,
    max_new_tokens: int,
    length_penalty: float = 1.0,
    eos_token_id: int | None = None,
) -> torch.Tensor:
    """Beam search with the exact rules of transformers' `generate(num_beams=k, do_sample=False)`.

    `model(ids)` takes LongTensor `[B, L]` and returns logits `[B, L, V]`; `input_ids` is
    `[1, T]`. Returns the best hypothesis, `[1, T + n]` with n <= max_new_tokens.

    Each beam carries the sum of the log-probabilities (log_softmax of the last logits) of
    its generated tokens. At every step (k = num_beams):

    1. score every (beam, next token) pair, total = beam score + log p(token); take the
       best 2k pairs over all beams (at the first step there is a single beam: the prompt);
    2. walk those 2k candidates from best to worst. A candidate ending in `eos_token_id`
       becomes a *finished hypothesis* only if it is among the first k (otherwise it is
       dropped); its score is  total / (generated length, EOS included) ** length_penalty.
       The first k candidates that do not end in EOS are the new running beams;
    3. keep only the k best finished hypotheses;
    4. stop after `max_new_tokens` steps — at the last step every one of the first k
       candidates is finished, EOS or not — or as soon as k hypotheses are finished and
       the best running beam, scored at its current length
       (running score / generated length ** length_penalty), is <= the worst finished one.

    Return the best finished hypothesis. length_penalty > 0 favours longer sequences
    (the negative sum is divided by a larger number), < 0 favours shorter ones.
    Pitfall: the length-penalised score only ranks *finished* hypotheses; running beams
    are always ranked by their raw summed log-probs.
    """
    raise NotImplementedError


def speculative_decode(
    target,
    draft,
    input_ids: torch.Tensor,
    max_new_tokens: int,
    k: int = 4,
    temperature: float = 1.0,
    generator: torch.Generator | None = None,
) -> tuple[torch.Tensor, float]:
    """Speculative decoding (Leviathan et al. 2023; Chen et al. 2023).

    `target(ids)` and `draft(ids)` map LongTensor `[1, L]` to logits `[1, L, V]`. Returns
    (tokens `[1, T + max_new_tokens]`, acceptance rate = accepted draft tokens / proposed
    draft tokens).

    One round, with p = target's and q = draft's next-token distributions at `temperature`:
      1. the draft proposes g = min(k, tokens still to generate) tokens x1..xg, each drawn
         from q given the previous ones;
      2. one target call on the extended sequence gives p at all g + 1 positions;
      3. for i = 1..g: accept xi with probability min(1, p(xi) / q(xi)) (draw u uniform in
         [0, 1), accept if u < p/q). On the first rejection, replace xi by a draw from the
         *residual* distribution  max(0, p - q) / sum(max(0, p - q))  and end the round;
      4. if all g were accepted, draw a bonus token from the target's p at position g + 1.
    Stop once max_new_tokens tokens are generated (drop any extra bonus token).

    This makes the output follow the target's distribution exactly, whatever the draft.
    Temperature 0: both models are greedy, xi is accepted iff it equals the target's
    argmax, and a rejection (or the bonus) takes the target's argmax — so the output is
    exactly the target's greedy decoding.

    Pitfalls: resampling a rejected token from p instead of the residual (biases towards
    tokens the draft likes); forgetting to normalise the residual.
    """
    raise NotImplementedError
