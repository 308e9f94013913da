"""runtime.memory_format: channels-last where the model computes the same in it, measured by running."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from xaiopt.errors import ConfigError
from xaiopt.objective.layout import as_layout, choose_layout


class ViewNet(nn.Module):
    """A user's model that flattens with ``.view``, which channels-last strides refuse."""

    def __init__(self):
        super().__init__()
        torch.manual_seed(0)
        self.conv = nn.Conv2d(3, 4, 3, padding=1)
        self.fc = nn.Linear(4 * 8 * 8, 3)

    def forward(self, x):
        h = torch.relu(self.conv(x))
        return self.fc(h.view(h.size(0), -1))


class PlainNet(nn.Module):
    def __init__(self):
        super().__init__()
        torch.manual_seed(0)
        self.body = nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
                                  nn.Flatten(), nn.Linear(4 * 4 * 4, 3))

    def forward(self, x):
        return self.body(x)


def _x():
    return torch.randn(4, 3, 8, 8, generator=torch.Generator().manual_seed(1))


def test_auto_converts_a_model_that_computes_the_same():
    model, x = PlainNet().eval(), _x()
    with torch.no_grad():
        before = model(x)
    fmt = choose_layout("auto", [model], x)
    assert fmt is torch.channels_last
    assert model.body[0].weight.is_contiguous(memory_format=torch.channels_last)
    xl = as_layout(x, fmt)
    assert xl.is_contiguous(memory_format=torch.channels_last) and torch.equal(xl, x)
    with torch.no_grad():
        torch.testing.assert_close(model(xl), before, rtol=1e-5, atol=1e-6)


def test_auto_keeps_a_model_that_refuses_the_layout():
    model, x = ViewNet().eval(), _x()
    with torch.no_grad():
        before = model(x)
    assert choose_layout("auto", [model], x) is torch.contiguous_format
    assert model.conv.weight.is_contiguous()
    with torch.no_grad():
        assert torch.equal(model(x), before)


def test_forced_channels_last_on_a_refusing_model_is_one_line():
    with pytest.raises(ConfigError) as err:
        choose_layout("channels_last", [ViewNet().eval()], _x())
    message = str(err.value)
    assert "\n" not in message and "runtime.memory_format" in message and "auto or contiguous" in message


def test_contiguous_never_converts_and_non_images_stay():
    model = PlainNet().eval()
    assert choose_layout("contiguous", [model], _x()) is torch.contiguous_format
    assert model.body[0].weight.is_contiguous()
    lin = nn.Linear(5, 2)
    assert choose_layout("auto", [lin], torch.randn(3, 5)) is torch.contiguous_format
    with pytest.raises(ConfigError, match="needs images"):
        choose_layout("channels_last", [lin], torch.randn(3, 5))
