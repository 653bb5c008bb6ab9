"""Hidden tests for week8/vision: fresh inputs, expected values from the reference."""

import pytest
import torch

from graders import check, reference, student
from graders.testing import randn

pytestmark = pytest.mark.hidden

vision = student("week8.vision")
ref = reference("week8.vision")


@pytest.mark.points(2)
@pytest.mark.parametrize("shape,p", [((3, 3, 32, 48), 8), ((2, 5, 14, 21), 7), ((1, 2, 4, 4), 1)])
def test_hidden_patchify(shape, p):
    images = randn(*shape, seed=sum(shape) + p, dtype=torch.float32)
    check.close(vision.patchify(images, p), ref.patchify(images, p), hint="patch_channel_order")


@pytest.mark.points(2)
def test_hidden_patch_embedding_with_shared_weights():
    torch.manual_seed(21)
    emb, want = vision.PatchEmbedding(4, 3, 10), ref.PatchEmbedding(4, 3, 10)
    state = {"proj.weight": randn(10, 48, seed=22, dtype=torch.float32), "proj.bias": randn(10, seed=23, dtype=torch.float32)}
    emb.load_state_dict(state)
    want.load_state_dict(state)
    images = randn(2, 3, 16, 12, seed=24, dtype=torch.float32)
    with torch.no_grad():
        check.close(emb(images), want(images), hint="patch_channel_order")


@pytest.mark.points(2)
@pytest.mark.parametrize("B,D,scale", [(8, 16, 2.659), (3, 5, -0.5), (16, 4, 4.6)])
def test_hidden_clip(B, D, scale):
    img, txt = randn(B, D, seed=B * D, dtype=torch.float32), randn(B, D, seed=B * D + 1, dtype=torch.float32)
    s = torch.tensor(scale)
    check.close(vision.clip_loss(img, txt, s), ref.clip_loss(img, txt, s), hint="clip_one_direction")


@pytest.mark.points(2)
@pytest.mark.parametrize("B,D,t,b", [(8, 16, 10.0, -10.0), (3, 5, 1.0, 0.0), (16, 4, 25.0, -3.0)])
def test_hidden_siglip(B, D, t, b):
    img, txt = randn(B, D, seed=B + D, dtype=torch.float32), randn(B, D, seed=B + D + 1, dtype=torch.float32)
    check.close(vision.siglip_loss(img, txt, t, b), ref.siglip_loss(img, txt, t, b), hint="siglip_labels")
