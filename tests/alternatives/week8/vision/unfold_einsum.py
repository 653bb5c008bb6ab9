"""vision written differently: Tensor.unfold views, a Conv2d-shaped weight, log-softmax by hand, softplus."""
import torch
from torch import nn


def patchify(images, patch_size):
    B, C, H, W = images.shape
    if H % patch_size != 0 or W % patch_size != 0:
        raise ValueError("image size must be a multiple of the patch size")
    # [B, C, H/p, W/p, p, p] -> [B, H/p, W/p, C, p, p]
    tiles = images.unfold(2, patch_size, patch_size).unfold(3, patch_size, patch_size)
    tiles = torch.einsum("bcrsij->brscij", tiles)
    return tiles.reshape(B, -1, C * patch_size * patch_size)


class PatchEmbedding(nn.Module):
    def __init__(self, patch_size, in_channels, embed_dim, bias=True):
        super().__init__()
        self.patch_size = patch_size
        self.proj = nn.Linear(in_channels * patch_size**2, embed_dim, bias=bias)

    def forward(self, images):
        patches = patchify(images, self.patch_size)
        out = torch.einsum("bnk,dk->bnd", patches, self.proj.weight)
        return out if self.proj.bias is None else out + self.proj.bias


def _unit(x):
    return x / x.norm(dim=-1, keepdim=True).clamp_min(1e-12)


def clip_loss(image_emb, text_emb, logit_scale):
    scale = torch.exp(torch.as_tensor(logit_scale, dtype=image_emb.dtype))
    logits = scale * torch.einsum("id,jd->ij", _unit(image_emb), _unit(text_emb))
    diag = torch.diagonal(logits)
    image_to_text = (torch.logsumexp(logits, dim=1) - diag).mean()
    text_to_image = (torch.logsumexp(logits, dim=0) - diag).mean()
    return 0.5 * (image_to_text + text_to_image)


def siglip_loss(image_emb, text_emb, t, b):
    logits = t * _unit(image_emb) @ _unit(text_emb).T + b
    n = logits.shape[0]
    eye = torch.eye(n, dtype=torch.bool)
    loss = torch.where(eye, torch.nn.functional.softplus(-logits), torch.nn.functional.softplus(logits))
    return loss.sum() / n
