"""Public tests for week8/vision.

Oracles: a stride-p `nn.Conv2d` (the standard ViT patch embedding), CLIP's loss as the
paper's pseudo-code and transformers' `image_text_contrastive_loss` compute it (cross-entropy
over the similarity matrix and its transpose; not imported, to keep this file fast), and
SigLIP's pairwise loss written out pair by pair from the paper with softplus.
"""

import math

import pytest
import torch
import torch.nn.functional as F
from hypothesis import given, strategies as st
from torch import nn

from graders import check, in_one_crossing, is_instance, oracle, student, type_name, unwrap
from graders.testing import randn

vision = student("week8.vision")


def pixel_reader(channels, p, dtype=torch.float64):
    """A Conv2d whose output channel d copies pixel d of each patch in (c, i, j) order."""
    n = channels * p * p
    conv = nn.Conv2d(channels, n, kernel_size=p, stride=p, bias=False).to(dtype)
    with torch.no_grad():
        conv.weight.copy_(torch.eye(n, dtype=dtype).reshape(n, channels, p, p))
    return conv


def conv_patches(images, p):
    with torch.no_grad():
        return pixel_reader(images.shape[1], p, images.dtype)(images).flatten(2).transpose(1, 2)


# --- patchify ------------------------------------------------------------------------------


@pytest.mark.points(3)
@given(B=st.integers(1, 2), C=st.integers(1, 4), p=st.integers(1, 4), rows=st.integers(1, 3),
       cols=st.integers(1, 3), seed=st.integers(0, 2**16))
def test_patchify_matches_a_stride_p_conv(B, C, p, rows, cols, seed):
    images = randn(B, C, rows * p, cols * p, seed=seed, dtype=torch.float64)
    check.close(vision.patchify(images, p), conv_patches(images, p), hint="patch_channel_order")


@pytest.mark.points(1)
def test_patch_order_is_row_major_over_the_grid():
    images = randn(2, 1, 6, 10, seed=1, dtype=torch.float64)  # one channel: only the order of the patches matters
    check.close(vision.patchify(images, 2), conv_patches(images, 2), hint="patch_grid_order")


@pytest.mark.points(1)
def test_each_patch_holds_only_its_own_pixels():
    """Pixels store the index of the patch they sit in: every output row must be constant."""
    p, rows, cols = 3, 2, 4
    ids = torch.arange(rows * cols, dtype=torch.float64).reshape(rows, cols)
    images = ids.repeat_interleave(p, 0).repeat_interleave(p, 1).expand(1, 2, rows * p, cols * p).contiguous()
    check.close(vision.patchify(images, p),
                torch.arange(rows * cols, dtype=torch.float64)[None, :, None].expand(1, rows * cols, 2 * p * p),
                hint="patch_reshape")


@pytest.mark.points(1)
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16, torch.float16, torch.float64])
def test_patchify_keeps_dtype(dtype):
    images = randn(1, 3, 8, 12, seed=2, dtype=dtype)
    check.close(vision.patchify(images, 4), conv_patches(images.double(), 4).to(dtype), hint="patch_dtype")


@pytest.mark.points(1)
@pytest.mark.parametrize("shape", [(1, 3, 8, 10), (1, 3, 9, 8)])
def test_patchify_rejects_sizes_not_divisible_by_p(shape):
    def rejects():
        with check.raises(ValueError, hint="patch_divisibility"):
            vision.patchify(torch.zeros(shape), 4)

    try:
        rejects()
        return
    except pytest.fail.Exception as exc:  # e.g. a RuntimeError from reshape instead of a ValueError
        message = str(exc)
    check.that(False, message, hint=None if "NOT STARTED" in message else "patch_divisibility")


def _patchify_on_meta(shape, p):
    """patchify of a float16 batch on the meta device (nothing is allocated): where the result lives,
    its dtype and shape, as plain data (one crossing)."""
    try:
        out = unwrap(vision.patchify)(torch.empty(shape, dtype=torch.float16, device="meta"), p)
    except NotImplementedError as exc:
        if "meta" not in str(exc):
            raise  # a stub: NOT STARTED
        # torch's "Cannot copy out of meta tensor": patchify copied the pixels to another device
        return f"patchify raised NotImplementedError: {exc} (it copies the images to another device)"
    return [out.device.type, str(out.dtype), list(out.shape)]


def expected_meta_patches(shape, p):
    """The device, dtype and [B, N, C*p*p] shape patchify keeps (only through oracle(...))."""
    B, C, H, W = shape
    return ["meta", "torch.float16", [B, (H // p) * (W // p), C * p * p]]


@pytest.mark.points(1)
def test_patchify_keeps_the_device():
    """Images on the meta device (no GPU needed): the patches stay there, in the images' dtype."""
    got = in_one_crossing(vision, _patchify_on_meta, (2, 3, 8, 12), 4)
    check.that(not isinstance(got, str), f"{got}", hint="patch_device")
    check.equal(got, oracle(expected_meta_patches, (2, 3, 8, 12), 4),
                what="[device, dtype, shape] of patchify(float16 images on the meta device, 4)", hint="patch_device")


# --- PatchEmbedding ------------------------------------------------------------------------


@pytest.mark.points(2)
@given(C=st.integers(1, 3), p=st.integers(1, 4), D=st.integers(1, 6), bias=st.booleans(), seed=st.integers(0, 2**16))
def test_patch_embedding_equals_conv2d_with_copied_weights(C, p, D, bias, seed):
    torch.manual_seed(seed)
    conv = nn.Conv2d(C, D, kernel_size=p, stride=p, bias=bias).double()
    emb = vision.PatchEmbedding(p, C, D, bias=bias)
    emb.double()
    state = {"proj.weight": conv.weight.detach().reshape(D, -1)}
    if bias:
        state["proj.bias"] = conv.bias.detach()
    emb.load_state_dict(state)
    images = randn(2, C, 2 * p, 3 * p, seed=seed, dtype=torch.float64)
    expected = oracle(conv_embedding, conv, images)
    check.close(emb(images), expected, hint="patch_channel_order")


def conv_embedding(conv, images):
    """The patch embedding as a strided Conv2d (called only through oracle(...))."""
    with torch.no_grad():
        return conv(images).flatten(2).transpose(1, 2)


@pytest.mark.points(1)
def test_patch_embedding_holds_a_linear_projection():
    emb = vision.PatchEmbedding(4, 3, 16)
    proj = emb.proj
    check.that(is_instance(proj, nn.Linear), f"PatchEmbedding.proj should be an nn.Linear, got {type_name(proj)}")
    check.equal(list(proj.weight.shape), [16, 3 * 4 * 4], what="proj.weight shape")


# --- CLIP ----------------------------------------------------------------------------------


def clip_oracle(image_emb, text_emb, logit_scale):
    """CLIP (Radford et al., 2021, fig. 3), built as transformers does: texts x images similarities."""
    img, txt = F.normalize(image_emb, dim=-1), F.normalize(text_emb, dim=-1)
    logits_per_text = txt @ img.T * torch.as_tensor(logit_scale, dtype=img.dtype).exp()
    targets = torch.arange(len(logits_per_text))
    return (F.cross_entropy(logits_per_text, targets) + F.cross_entropy(logits_per_text.T, targets)) / 2


def unit_rows(*shape, seed):
    return F.normalize(randn(*shape, seed=seed, dtype=torch.float64), dim=-1)


@pytest.mark.points(3)
@given(B=st.integers(1, 6), D=st.integers(2, 8), logit_scale=st.floats(-1.0, 4.6), seed=st.integers(0, 2**16))
def test_clip_loss_matches_the_paper(B, D, logit_scale, seed):
    img, txt = unit_rows(B, D, seed=seed), unit_rows(B, D, seed=seed + 1)
    scale = torch.tensor(logit_scale, dtype=torch.float64)
    check.close(vision.clip_loss(img, txt, scale), clip_oracle(img, txt, scale), hint="clip_one_direction")


@pytest.mark.points(1)
@pytest.mark.parametrize("logit_scale", [0.0, math.log(1 / 0.07)])
def test_clip_logit_scale_is_a_log_scale(logit_scale):
    img, txt = unit_rows(5, 4, seed=3), unit_rows(5, 4, seed=4)
    check.close(vision.clip_loss(img, txt, torch.tensor(logit_scale, dtype=torch.float64)),
                clip_oracle(img, txt, logit_scale), hint="clip_scale")
    check.close(vision.clip_loss(img, txt, logit_scale), clip_oracle(img, txt, logit_scale),
                what="loss with logit_scale given as a Python float", hint="clip_scale")


@pytest.mark.points(1)
def test_clip_loss_normalises_embeddings():
    img, txt = randn(6, 5, seed=5, dtype=torch.float64) * 7.0, randn(6, 5, seed=6, dtype=torch.float64) * 0.2
    check.close(vision.clip_loss(img, txt, 2.0), clip_oracle(img, txt, 2.0), hint="no_normalize")


@pytest.mark.points(1)
def test_clip_loss_gradients():
    img = randn(4, 6, seed=7, dtype=torch.float64).requires_grad_()
    txt = randn(4, 6, seed=8, dtype=torch.float64).requires_grad_()
    scale = torch.tensor(1.5, dtype=torch.float64, requires_grad=True)
    got = vision.clip_loss.with_grad(img, txt, scale)  # d(w * loss), w a fixed random weight
    expected = oracle(clip_gradients, img, txt, scale)
    check.equal(len(got.inputs), 3, what="number of inputs that received a gradient")
    for i, (name, g) in enumerate(zip(["image_emb", "text_emb", "logit_scale"], got.inputs.values())):
        check.close(g, expected[i], what=f"gradient of the loss with respect to {name}")


def clip_gradients(img, txt, scale):
    """d(w * loss) / d(img, txt, scale), with with_grad's fixed weight w (called only through oracle(...))."""
    inputs = [t.detach().clone().requires_grad_() for t in (img, txt, scale)]
    loss = clip_oracle(*inputs)
    weight = torch.randn(loss.shape, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    return torch.autograd.grad((loss * weight).sum(), inputs)


# --- SigLIP --------------------------------------------------------------------------------


def siglip_oracle(image_emb, text_emb, t, b):
    """Zhai et al. (2023), eq. 1: -(1/|B|) sum_i sum_j log sigmoid(z_ij (t x_i.y_j + b)) = sum softplus(-z * logit) / B."""
    img, txt = F.normalize(image_emb, dim=-1), F.normalize(text_emb, dim=-1)
    n = img.shape[0]
    total = torch.zeros((), dtype=img.dtype)
    for i in range(n):
        for j in range(n):
            z = 1.0 if i == j else -1.0
            total = total + F.softplus(-z * (t * (img[i] @ txt[j]) + b))
    return total / n


@pytest.mark.points(3)
@given(B=st.integers(1, 6), D=st.integers(2, 8), t=st.floats(0.5, 20.0), b=st.floats(-10.0, 2.0),
       seed=st.integers(0, 2**16))
def test_siglip_loss_matches_the_paper(B, D, t, b, seed):
    img, txt = unit_rows(B, D, seed=seed), unit_rows(B, D, seed=seed + 1)
    check.close(vision.siglip_loss(img, txt, t, b), siglip_oracle(img, txt, t, b), hint="siglip_labels")


@pytest.mark.points(1)
def test_siglip_divides_by_the_batch_size():
    img, txt = unit_rows(6, 4, seed=9), unit_rows(6, 4, seed=10)
    check.close(vision.siglip_loss(img, txt, 10.0, -10.0), siglip_oracle(img, txt, 10.0, -10.0),
                hint="siglip_reduction")


@pytest.mark.points(1)
def test_siglip_temperature_is_used_as_given():
    img, txt = unit_rows(4, 4, seed=11), unit_rows(4, 4, seed=12)
    t, b = torch.tensor(3.0, dtype=torch.float64), torch.tensor(-1.0, dtype=torch.float64)
    check.close(vision.siglip_loss(img, txt, t, b), siglip_oracle(img, txt, t, b), hint="siglip_scale")


@pytest.mark.points(1)
def test_siglip_loss_normalises_embeddings():
    img, txt = randn(5, 3, seed=13, dtype=torch.float64) * 4.0, randn(5, 3, seed=14, dtype=torch.float64) * 0.3
    check.close(vision.siglip_loss(img, txt, 10.0, -5.0), siglip_oracle(img, txt, 10.0, -5.0), hint="no_normalize")


@pytest.mark.points(1)
@pytest.mark.parametrize("loss", ["clip", "siglip"])
def test_losses_are_symmetric_in_images_and_texts(loss):
    img, txt = randn(5, 4, seed=15, dtype=torch.float64), randn(5, 4, seed=16, dtype=torch.float64)
    fn = vision.clip_loss if loss == "clip" else vision.siglip_loss
    args = (2.0,) if loss == "clip" else (5.0, -2.0)
    forward, swapped = fn(img, txt, *args), fn(txt, img, *args)  # both student calls: outside the check
    check.close(forward, swapped, what=f"{loss}_loss(images, texts) vs (texts, images)",
                hint="clip_one_direction" if loss == "clip" else "siglip_labels")


# --- extreme scales, square shapes, every argument ------------------------------------------


def anti_matched(B, D, seed, dtype):
    """Unit image rows and texts pointing AWAY from their image (cosine about -1 on the diagonal):
    at a large scale every matching pair's probability underflows (inputs only)."""
    img = unit_rows(B, D, seed=seed)
    txt = F.normalize(-img + 0.1 * randn(B, D, seed=seed + 1, dtype=torch.float64), dim=-1)
    return img.to(dtype), txt.to(dtype)


@pytest.mark.points(1)
@pytest.mark.parametrize("dtype,scale", [(torch.float32, 1e4), (torch.float64, 1e4), (torch.bfloat16, 100.0)])
def test_clip_loss_at_a_large_logit_scale(dtype, scale):
    """exp(logit_scale) = 1e4 (100 in bfloat16, CLIP's own clamp): log(softmax(.)) of the matching
    pairs is log(0) = -inf there; cross-entropy (log-softmax) stays finite."""
    img, txt = anti_matched(5, 8, seed=20, dtype=dtype)
    logit_scale = torch.tensor(math.log(scale), dtype=dtype)
    check.close(vision.clip_loss(img, txt, logit_scale),
                clip_oracle(img.double(), txt.double(), logit_scale.double()).to(dtype),
                hint="clip_unstable_softmax", check_dtype=False)


@pytest.mark.points(1)
@pytest.mark.parametrize("dtype,t,b", [(torch.float32, 1e3, 0.0), (torch.float64, 1e3, 0.0),
                                       (torch.float64, 10.0, -1e3), (torch.bfloat16, 100.0, -10.0)])
def test_siglip_loss_at_large_temperatures_and_biases(dtype, t, b):
    """Logits of -1e3 (-110 in bfloat16) on the matching pairs: log(sigmoid(.)) is -inf there."""
    img, txt = anti_matched(4, 6, seed=22, dtype=dtype)
    check.close(vision.siglip_loss(img, txt, t, b), siglip_oracle(img.double(), txt.double(), t, b).to(dtype),
                hint="siglip_logsigmoid", check_dtype=False)


@pytest.mark.points(1)
@pytest.mark.parametrize("b", [3.0, -3.0])
def test_siglip_uses_the_bias(b):
    img, txt = unit_rows(4, 5, seed=24), unit_rows(4, 5, seed=25)
    check.close(vision.siglip_loss(img, txt, 5.0, b), siglip_oracle(img, txt, 5.0, b), hint="siglip_bias")


@pytest.mark.points(1)
@pytest.mark.parametrize("loss", ["clip", "siglip"])
def test_losses_with_as_many_pairs_as_dimensions(loss):
    """B == D: img @ txt (no transpose) runs without error here, and is wrong."""
    img, txt = randn(4, 4, seed=26, dtype=torch.float64), randn(4, 4, seed=27, dtype=torch.float64)
    if loss == "clip":
        check.close(vision.clip_loss(img, txt, 1.0), clip_oracle(img, txt, 1.0), hint="similarity_transpose")
    else:
        check.close(vision.siglip_loss(img, txt, 4.0, -1.0), siglip_oracle(img, txt, 4.0, -1.0),
                    hint="similarity_transpose")
