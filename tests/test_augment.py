import pytest
import torch

from mnistbench.augment import is_on, random_affine
from mnistbench.config import AugmentParams


def digit_like(n=8, seed=0):
    """A bright blob away from the border, in [0, 1], like an MNIST digit."""
    images = torch.zeros(n, 1, 28, 28)
    images[:, :, 10:18, 12:16] = torch.rand(n, 1, 8, 4, generator=torch.Generator().manual_seed(seed))
    return images


def centre_of_mass(images):
    coords = torch.arange(28, dtype=torch.float32)
    mass = images.sum(dim=(1, 2, 3))
    rows = (images.sum(dim=(1, 3)) * coords).sum(1) / mass
    cols = (images.sum(dim=(1, 2)) * coords).sum(1) / mass
    return rows, cols


def test_all_zero_is_off_and_the_identity():
    none = AugmentParams(degrees=0, translate=0, scale=0)
    assert not is_on(none)
    images = digit_like()
    assert torch.allclose(random_affine(images, none, torch.Generator().manual_seed(0)), images, atol=1e-6)


def test_same_generator_state_same_images_and_a_new_draw_per_call():
    aug = AugmentParams(degrees=10, translate=0.1, scale=0.1)
    images = digit_like()
    a = random_affine(images, aug, torch.Generator().manual_seed(3))
    b = random_affine(images, aug, torch.Generator().manual_seed(3))
    assert torch.equal(a, b)
    g = torch.Generator().manual_seed(3)
    assert not torch.equal(random_affine(images, aug, g), random_affine(images, aug, g))


def test_shifts_stay_within_translate():
    aug = AugmentParams(degrees=0, translate=0.1, scale=0)  # at most 2.8 pixels along each axis
    images = digit_like(n=64)
    moved = random_affine(images, aug, torch.Generator().manual_seed(0))
    (r0, c0), (r1, c1) = centre_of_mass(images), centre_of_mass(moved)
    shift = torch.stack([r1 - r0, c1 - c0])
    assert shift.abs().max() <= 2.8 + 0.05
    assert shift.abs().max() > 1.0  # and they do move
    assert moved.shape == images.shape and moved.min() >= 0 and moved.max() <= 1


def test_rotation_keeps_the_mass_of_a_centred_digit():
    aug = AugmentParams(degrees=15, translate=0, scale=0)
    images = torch.zeros(16, 1, 28, 28)
    images[:, :, 11:17, 11:17] = 1.0  # centred: a rotation moves no mass outside the image
    rotated = random_affine(images, aug, torch.Generator().manual_seed(0))
    assert rotated.sum(dim=(1, 2, 3)) == pytest.approx(images.sum(dim=(1, 2, 3)), rel=0.03)
    assert not torch.allclose(rotated, images)
