"""ArcFace margin arithmetic and the batched augmentation."""

from __future__ import annotations

import math

import pytest
import torch

from facefleet.training.arcface import ArcFaceHead
from facefleet.training.augment import augment_batch, to_model_input


def head_with_unit_centres() -> ArcFaceHead:
    head = ArcFaceHead(2, 2, scale=10.0, margin=0.5)
    with torch.no_grad():
        head.weight.copy_(torch.tensor([[1.0, 0.0], [0.0, 1.0]]))
    return head


@pytest.mark.parametrize("theta_deg", [10.0, 60.0, 120.0])
def test_target_logit_is_cos_theta_plus_margin(theta_deg: float) -> None:
    head = head_with_unit_centres()
    theta = math.radians(theta_deg)
    x = torch.tensor([[math.cos(theta), math.sin(theta)]])
    logits = head(x, torch.tensor([0]))
    assert logits[0, 0].item() == pytest.approx(10 * math.cos(theta + 0.5), abs=1e-4)
    assert logits[0, 1].item() == pytest.approx(10 * math.sin(theta), abs=1e-4)


def test_fallback_when_theta_plus_margin_passes_pi() -> None:
    head = head_with_unit_centres()
    theta = math.radians(170.0)  # θ + m > π
    x = torch.tensor([[math.cos(theta), math.sin(theta)]])
    logit = head(x, torch.tensor([0]))[0, 0].item()
    expected = 10 * (math.cos(theta) - math.sin(math.pi - 0.5) * 0.5)
    assert logit == pytest.approx(expected, abs=1e-4)
    # Monotonic: a larger angle never gives a larger target logit.
    worse = torch.tensor([[math.cos(theta + 0.05), math.sin(theta + 0.05)]])
    assert head(worse, torch.tensor([0]))[0, 0].item() < logit


def test_easy_margin_leaves_obtuse_angles_alone() -> None:
    head = ArcFaceHead(2, 2, scale=10.0, margin=0.5, easy_margin=True)
    with torch.no_grad():
        head.weight.copy_(torch.eye(2))
    theta = math.radians(100.0)
    x = torch.tensor([[math.cos(theta), math.sin(theta)]])
    assert head(x, torch.tensor([0]))[0, 0].item() == pytest.approx(10 * math.cos(theta), abs=1e-4)


def test_margin_lowers_the_target_logit_and_raises_the_loss() -> None:
    torch.manual_seed(0)
    x, y = torch.randn(16, 8), torch.randint(0, 4, (16,))
    plain, margin = ArcFaceHead(8, 4, margin=0.0), ArcFaceHead(8, 4, margin=0.5)
    margin.load_state_dict(plain.state_dict())
    loss = torch.nn.functional.cross_entropy
    assert loss(margin(x, y), y) > loss(plain(x, y), y)


def test_augment_shapes_range_and_determinism() -> None:
    crops = torch.randint(0, 256, (6, 112, 112, 3), dtype=torch.uint8)
    a = augment_batch(crops, torch.Generator().manual_seed(1))
    b = augment_batch(crops, torch.Generator().manual_seed(1))
    c = augment_batch(crops, torch.Generator().manual_seed(2))
    assert a.shape == (6, 3, 112, 112) and a.dtype == torch.float32
    assert a.min() >= -1.0 and a.max() <= 1.0
    assert torch.equal(a, b) and not torch.equal(a, c)
    plain = to_model_input(crops)
    assert plain.shape == a.shape and not torch.allclose(plain, a)


def test_training_input_matches_inference_preprocessing(extractor) -> None:
    """Training and inference normalize crops the same way (the checkpoint's constants)."""
    crops = torch.randint(0, 256, (3, 112, 112, 3), dtype=torch.uint8)
    meta = extractor.meta
    train_side = to_model_input(crops, meta.mean, meta.std)
    assert torch.allclose(train_side, extractor.preprocess(crops.numpy()), atol=1e-6)
