"""Kata: ViT patch embedding and contrastive image-text losses (CLIP, SigLIP).

A Vision Transformer reads an image as a sequence of patches: cut it into p x p squares,
flatten each, and project it with one shared linear layer. That is exactly a Conv2d with
kernel_size = stride = p, and the tests hold you to that equivalence.

CLIP and SigLIP train an image encoder and a text encoder so that matching pairs in a
batch score high and every other pairing scores low. Row i of `image_emb` and row i of
`text_emb` are a matching pair; embeddings are L2-normalised inside the losses.

Must catch: patch pixels flattened in (p, p, C) order instead of (C, p, p); patches
ordered column by column; reshape without permute; embeddings not normalised; CLIP's
logit_scale not exponentiated (or exponentiated in SigLIP); only one direction of CLIP's
loss; SigLIP with 0/1 labels, with softmax, or divided by B*B instead of B.

Run time: `pytest katas/week8/test_vision.py` takes about 4 s with a correct solution on a
2-core laptop CPU. Much longer means something in your code is slow (see the hints); a test
that runs past its limit fails with TIMEOUT, naming your function, and the kata's other
tests of that function are skipped.
"""
import torch
from torch import nn


def patchify(images: torch.Tensor, patch_size: int) -> torch.Tensor:
    """Cut images into non-overlapping patches: `[B, C, H, W] -> [B, N, C*p*p]`.

    N = (H/p) * (W/p). Patches are in row-major order over the grid (left to right, then
    top to bottom: patch n sits at grid row n // (W/p), column n % (W/p)). Each patch is
    flattened channel-major, index c*p*p + i*p + j for channel c, row i, column j inside the
    patch: the order of `conv.weight.reshape(D, C*p*p)` for a Conv2d with kernel_size =
    stride = p, so `patchify(x, p) @ conv.weight.reshape(D, -1).T + conv.bias` equals
    `conv(x).flatten(2).transpose(1, 2)`.
    ValueError if H or W is not divisible by p. Keep dtype and device.
    Forbidden here: F.unfold / nn.Unfold and F.conv2d / nn.Conv2d (the conv is the tests' oracle).
    Pitfall: `images.reshape(B, N, -1)` alone mixes pixels of different patches; you need
    a reshape to (B, C, H/p, p, W/p, p), a permute, and a reshape.
    """
    raise NotImplementedError


class PatchEmbedding(nn.Module):
    """ViT patch embedding: `[B, C, H, W] -> [B, N, embed_dim]` (no class token, no positions).

    Holds `proj: nn.Linear(in_channels * patch_size**2, embed_dim, bias=bias)`, applied to
    `patchify(images, patch_size)`. Its weight `[embed_dim, C*p*p]` uses the patchify
    order, so it equals a stride-p Conv2d's weight reshaped: `conv.weight.reshape(D, -1)`.
    """

    def __init__(self, patch_size: int, in_channels: int, embed_dim: int, bias: bool = True):
        super().__init__()
        raise NotImplementedError

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError


def clip_loss(image_emb: torch.Tensor, text_emb: torch.Tensor, logit_scale) -> torch.Tensor:
    """CLIP's symmetric InfoNCE loss (Radford et al., 2021): a 0-dim tensor.

    Args:
        image_emb, text_emb: `[B, D]`; row i of each is a matching pair. Not normalised:
            L2-normalise each row first.
        logit_scale: the LOG of the temperature scale, as CLIP's learned parameter
            (initialised to log(1/0.07)); a float or 0-dim tensor. It is exponentiated here.

    logits = exp(logit_scale) * img_n @ txt_n.T      # [B, B], row i = image i vs all texts
    loss = (cross_entropy(logits, arange(B)) + cross_entropy(logits.T, arange(B))) / 2
    (image->text over the rows, text->image over the columns.)
    Worked example: with logit_scale = 0 the scale is 1, not 0.
    """
    raise NotImplementedError


def siglip_loss(image_emb: torch.Tensor, text_emb: torch.Tensor, t, b) -> torch.Tensor:
    """SigLIP's pairwise sigmoid loss (Zhai et al., 2023): a 0-dim tensor.

    Args:
        image_emb, text_emb: `[B, D]`, L2-normalised here (row i of each match).
        t: the temperature AS USED (already exp'ed: the paper's t = exp(t')), float or tensor.
        b: the bias (the paper initialises it to -10), float or tensor.

    logits[i, j] = t * <img_i, txt_j> + b; labels z[i, j] = +1 if i == j else -1;
        loss = -(1/B) * sum_i sum_j log sigmoid(z[i, j] * logits[i, j])
    Every one of the B*B pairs is an independent binary problem; the sum is divided by B
    (the batch size), not by B*B. No softmax anywhere.
    """
    raise NotImplementedError
