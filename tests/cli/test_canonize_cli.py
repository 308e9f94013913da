"""`xaiopt canonize check MODEL`: the report, the exit status, and user mistakes."""

import sys
import types

import torch
from torch import nn

from xaiopt.cli import main


def test_check_torchvision_model(capsys):
    code = main(["canonize", "check", "torchvision:resnet18", "--input-size", "32"])
    out, err = capsys.readouterr()
    assert code == 0, err
    assert "layer1.0.bn1 -> layer1.0.conv1 [after]" in out
    assert out.count("residual_sum:") == 8
    assert out.rstrip().endswith("ok")


def _user_model():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), nn.BatchNorm2d(4), nn.ReLU(), nn.Flatten(),
                          nn.Linear(4 * 16 * 16, 3))
    bn = model[1]
    bn.running_mean.uniform_(-1, 1)
    bn.running_var.uniform_(0.5, 2)
    bn.weight.data.uniform_(-1, 1)
    return model


def test_check_user_module_callable(capsys, monkeypatch):
    mod = types.ModuleType("xaiopt_test_models")
    mod.small = _user_model
    monkeypatch.setitem(sys.modules, "xaiopt_test_models", mod)
    code = main(["canonize", "check", "module:xaiopt_test_models:small", "--input-size", "16"])
    out, err = capsys.readouterr()
    assert code == 0, err
    assert "1 -> 0 [after]" in out


def test_check_unknown_model_is_one_line(capsys):
    code = main(["canonize", "check", "torchvision:not_a_net"])
    out, err = capsys.readouterr()
    assert code == 2
    assert len(err.strip().splitlines()) == 1 and "not_a_net" in err
