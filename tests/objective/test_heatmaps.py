"""Heatmap PNGs: colours of known values, layout with the inputs above."""

import numpy as np
import torch
from PIL import Image

from xaiopt.objective.heatmaps import bwr, save_heatmap_grid


def test_bwr_colours():
    assert bwr(np.array([1.0])).tolist() == [[255, 0, 0]]
    assert bwr(np.array([-1.0])).tolist() == [[0, 0, 255]]
    assert bwr(np.array([0.0])).tolist() == [[255, 255, 255]]
    assert bwr(np.array([0.5])).tolist() == [[255, 128, 128]]


def test_grid_layout_and_per_map_scaling(tmp_path):
    a = torch.zeros(2, 1, 4, 5)
    a[0, 0, 0, 0] = 3.0      # map 0: its peak is red whatever its scale
    a[1, 0, 1, 1] = -0.01    # map 1: its (negative) peak is blue
    x = torch.full((2, 3, 4, 5), -1.0)
    low, high = torch.full((3,), -1.0), torch.full((3,), 1.0)
    path = save_heatmap_grid(a, tmp_path / "h.png", images=x, low=low, high=high, scale=1)
    img = np.asarray(Image.open(path))
    assert img.shape == (4 + 2 + 4, 5 * 2 + 2, 3)
    assert img[0, 0].tolist() == [0, 0, 0]            # the input at its lowest value is black
    assert img[6, 0].tolist() == [255, 0, 0]          # heatmap row starts after the 2-pixel gap
    assert img[7, 7 + 1].tolist() == [0, 0, 255]
    assert img[6, 1].tolist() == [255, 255, 255]
    assert img[6, 5].tolist() == [64, 64, 64]         # separator column
