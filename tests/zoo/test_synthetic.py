from __future__ import annotations

import torch

from xaiopt.zoo import synthetic
from xaiopt.zoo.synthetic import generate, input_bounds


def test_same_seed_gives_identical_tensors() -> None:
    a, b = generate(64, seed=3), generate(64, seed=3)
    assert torch.equal(a.pixels, b.pixels)
    assert torch.equal(a.masks, b.masks)
    assert torch.equal(a.y, b.y)


def test_different_seed_or_split_gives_different_images() -> None:
    base = generate(16, seed=0, split="test").pixels
    assert not torch.equal(base, generate(16, seed=1, split="test").pixels)
    assert not torch.equal(base, generate(16, seed=0, split="train").pixels)


def test_first_samples_do_not_depend_on_how_many_are_asked_for() -> None:
    many = generate(300, seed=0)
    few = generate(5, seed=0)
    later = generate(10, seed=0, start=250)
    assert torch.equal(few.pixels, many.pixels[:5])
    assert torch.equal(later.pixels, many.pixels[250:260])
    assert torch.equal(later.y, many.y[250:260])


def test_object_colour_appears_exactly_on_the_mask() -> None:
    batch = generate(64, seed=0)
    assert batch.masks.shape == (64, 1, 64, 64) and batch.masks.dtype == torch.bool
    # The object is flat-coloured and drawn last; background and distractors are continuous
    # noise, so the pixels of exactly the object's colour are exactly the mask.
    same_colour = (batch.pixels == batch.colours.view(64, 3, 1, 1)).all(dim=1, keepdim=True)
    assert torch.equal(same_colour, batch.masks)


def test_masks_are_sizeable_and_inside_the_image() -> None:
    masks = generate(128, seed=0).masks
    area = masks.sum(dim=(1, 2, 3))
    assert area.min() >= 60  # smallest object: a triangle of radius 9 (~105 px)
    assert area.max() <= 64 * 64 // 3
    border = masks.clone()
    border[:, :, 1:-1, 1:-1] = False
    assert not border.any()


def test_circle_mask_area_matches_its_shape_class() -> None:
    batch = generate(256, seed=0)
    area = batch.masks.sum(dim=(1, 2, 3)).float()
    mean_area = torch.stack([area[batch.y == c].mean() for c in range(4)])
    # Same radius distribution for every class: circle (pi r^2) > square ((1.6 r)^2)
    # > plus (2 * 0.6r * 2r - (0.6r)^2) > triangle (3*sqrt(3)/4 r^2).
    circle, square, triangle, plus = mean_area.tolist()
    assert circle > square > plus > triangle


def test_labels_cycle_through_the_classes() -> None:
    y = generate(32, seed=5).y
    assert y.dtype == torch.int64
    assert y.tolist() == [i % 4 for i in range(32)]
    assert y.bincount().tolist() == [8, 8, 8, 8]
    assert synthetic.CLASS_NAMES == ("circle", "square", "triangle", "plus")


def test_low_and_high_bound_the_normalised_data() -> None:
    batch = generate(256, seed=0)
    x = batch.x
    low, high = input_bounds()
    assert low.shape == high.shape == (3,)
    assert (x >= low.view(1, 3, 1, 1) - 1e-6).all()
    assert (x <= high.view(1, 3, 1, 1) + 1e-6).all()
    assert torch.allclose(low, (0 - synthetic.MEAN) / synthetic.STD)
    assert torch.allclose(high, (1 - synthetic.MEAN) / synthetic.STD)
    # Both bounds are reached: the bounds are tight, not loose guesses.
    assert torch.isclose(x.amin(dim=(0, 2, 3)), low, atol=0.05).all()
    assert torch.isclose(x.amax(dim=(0, 2, 3)), high, atol=0.05).all()
