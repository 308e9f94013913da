"""Model code written the way third-party packages write it, not the way torchvision does.

Each pattern here has been seen in pip-installable model ports: convolutions that subclass
``nn.Conv2d`` with their own "same"-padding forward, a batch norm fused with its activation in one
module with its own forward, modules that hold a weight and call ``F.conv2d`` themselves, fixed
blur filters held as buffers, a head written as ``F.avg_pool2d(...).view(x.size(0), -1)``.
"""

from __future__ import annotations

import math
import types

import torch
from torch import nn
from torch.nn import functional as F


class SamePadConv2d(nn.Conv2d):
    """TensorFlow-style "same" padding computed from the input size in its own forward."""

    def __init__(self, cin: int, cout: int, k: int, stride: int = 1, groups: int = 1, bias: bool = False):
        super().__init__(cin, cout, k, stride=stride, padding=0, groups=groups, bias=bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        ih, iw = x.shape[-2:]
        kh, kw = self.weight.shape[-2:]
        sh, sw = self.stride
        pad_h = max((math.ceil(ih / sh) - 1) * sh + kh - ih, 0)
        pad_w = max((math.ceil(iw / sw) - 1) * sw + kw - iw, 0)
        x = F.pad(x, [pad_w // 2, pad_w - pad_w // 2, pad_h // 2, pad_h - pad_h // 2])
        return F.conv2d(x, self.weight, self.bias, self.stride, 0, self.dilation, self.groups)


class NormAct(nn.BatchNorm2d):
    """Batch norm and activation in one module (as timm's BatchNormAct2d), with its own forward."""

    def __init__(self, channels: int, act: bool = True):
        super().__init__(channels)
        self.drop = nn.Identity()
        self.act = nn.SiLU() if act else nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.batch_norm(x, self.running_mean, self.running_var, self.weight, self.bias, self.training,
                         self.momentum, self.eps)
        return self.act(self.drop(x))


class SqueezeExcite(nn.Module):
    def __init__(self, channels: int, reduced: int):
        super().__init__()
        self.reduce = nn.Conv2d(channels, reduced, 1)
        self.expand = nn.Conv2d(reduced, channels, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        s = x.mean((2, 3), keepdim=True)
        return x * torch.sigmoid(self.expand(F.silu(self.reduce(s))))


class MBConv(nn.Module):
    def __init__(self, channels: int, expand: int = 4):
        super().__init__()
        mid = channels * expand
        self.expand_conv = SamePadConv2d(channels, mid, 1)
        self.bn0 = NormAct(mid)
        self.depthwise = SamePadConv2d(mid, mid, 3, groups=mid)
        self.bn1 = NormAct(mid)
        self.se = SqueezeExcite(mid, max(1, channels // 4))
        self.project = SamePadConv2d(mid, channels, 1)
        self.bn2 = NormAct(channels, act=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.bn1(self.depthwise(self.bn0(self.expand_conv(x))))
        return x + self.bn2(self.project(self.se(y)))


class PortedEfficientNet(nn.Module):
    """An EfficientNet port: same-padding conv subclasses, fused norm+act, SE, mean pooling."""

    def __init__(self, num_classes: int = 5):
        super().__init__()
        self.stem = SamePadConv2d(3, 8, 3, stride=2)
        self.bn_stem = NormAct(8)
        self.blocks = nn.Sequential(MBConv(8), MBConv(8))
        self.head = SamePadConv2d(8, 16, 1)
        self.bn_head = nn.BatchNorm2d(16)
        self.fc = nn.Linear(16, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.blocks(self.bn_stem(self.stem(x)))
        x = F.silu(self.bn_head(self.head(x)))
        return self.fc(x.mean((2, 3)))


class PreActBlock(nn.Module):
    def __init__(self, cin: int, cout: int, stride: int = 1):
        super().__init__()
        self.bn1 = nn.BatchNorm2d(cin)
        self.conv1 = nn.Conv2d(cin, cout, 3, stride, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(cout)
        self.conv2 = nn.Conv2d(cout, cout, 3, 1, 1, bias=False)
        self.shortcut = nn.Conv2d(cin, cout, 1, stride, bias=False) if stride != 1 or cin != cout else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = F.relu(self.bn1(x))
        shortcut = self.shortcut(out) if self.shortcut is not None else x
        out = self.conv1(out)
        out = self.conv2(F.relu(self.bn2(out)))
        return out + shortcut


class PreActResNet(nn.Module):
    """Pre-activation ResNet in the style of CIFAR ports: last BN -> ReLU -> avg_pool2d -> view -> Linear."""

    def __init__(self, num_classes: int = 5):
        super().__init__()
        self.conv1 = nn.Conv2d(3, 8, 3, 1, 1, bias=False)
        self.layer1 = PreActBlock(8, 8)
        self.layer2 = PreActBlock(8, 16, stride=2)
        self.bn = nn.BatchNorm2d(16)
        self.linear = nn.Linear(16, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.layer2(self.layer1(self.conv1(x)))
        out = F.relu(self.bn(out))
        out = F.avg_pool2d(out, out.shape[-2:])
        out = out.view(out.size(0), -1)
        return self.linear(out)


class DenseLayer(nn.Sequential):
    def __init__(self, cin: int, growth: int):
        super().__init__()
        self.add_module("norm1", nn.BatchNorm2d(cin))
        self.add_module("relu1", nn.ReLU(inplace=True))
        self.add_module("conv1", nn.Conv2d(cin, 2 * growth, 1, bias=False))
        self.add_module("norm2", nn.BatchNorm2d(2 * growth))
        self.add_module("relu2", nn.ReLU(inplace=True))
        self.add_module("conv2", nn.Conv2d(2 * growth, growth, 3, padding=1, bias=False))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.cat([x, super().forward(x)], 1)


class PortedDenseNet(nn.Module):
    """A DenseNet port: features end in norm5, the forward does relu -> avg_pool2d -> view -> linear."""

    def __init__(self, num_classes: int = 5):
        super().__init__()
        self.features = nn.Sequential()
        self.features.add_module("conv0", nn.Conv2d(3, 8, 3, padding=1, bias=False))
        self.features.add_module("norm0", nn.BatchNorm2d(8))
        self.features.add_module("relu0", nn.ReLU(inplace=True))
        self.features.add_module("block1", nn.Sequential(DenseLayer(8, 4), DenseLayer(12, 4)))
        self.features.add_module("norm5", nn.BatchNorm2d(16))
        self.last_linear = nn.Linear(16, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.relu(self.features(x), inplace=True)
        x = F.avg_pool2d(x, kernel_size=x.shape[-2:], stride=1)
        x = x.view(x.size(0), -1)
        return self.last_linear(x)


class OwnWeightConv(nn.Module):
    """A layer that holds its weight and convolves by itself (no nn.Conv2d anywhere)."""

    def __init__(self, cin: int, cout: int):
        super().__init__()
        self.weight = nn.Parameter(torch.randn(cout, cin, 3, 3) * 0.2)
        self.bias = nn.Parameter(torch.randn(cout) * 0.1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.conv2d(x, self.weight, self.bias, padding=1)


class BlurPool(nn.Module):
    """Anti-aliased downsampling: a fixed binomial filter held as a buffer."""

    def __init__(self, channels: int):
        super().__init__()
        row = torch.tensor([1.0, 2.0, 1.0])
        kernel = (row[:, None] * row[None, :]) / 16
        self.channels = channels
        self.register_buffer("filt", kernel.expand(channels, 1, 3, 3).clone())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.conv2d(F.pad(x, (1, 1, 1, 1), mode="reflect"), self.filt, stride=2, groups=self.channels)


class FunctionalNet(nn.Module):
    """Own-weight convolutions and a blur pool, with a batch norm after each own-weight conv."""

    def __init__(self, num_classes: int = 5):
        super().__init__()
        self.conv1 = OwnWeightConv(3, 6)
        self.bn1 = nn.BatchNorm2d(6)
        self.blur = BlurPool(6)
        self.conv2 = OwnWeightConv(6, 8)
        self.bn2 = nn.BatchNorm2d(8)
        self.fc = nn.Linear(8, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.blur(F.relu(self.bn1(self.conv1(x))))
        x = F.relu(self.bn2(self.conv2(x)))
        return self.fc(torch.flatten(F.adaptive_avg_pool2d(x, 1), 1))


class ComputedWeightNet(nn.Module):
    """A convolution whose weight is computed in the forward: no module holds it, no rule reaches it."""

    def __init__(self, num_classes: int = 5):
        super().__init__()
        self.weight = nn.Parameter(torch.randn(6, 3, 3, 3) * 0.2)
        self.gain = nn.Parameter(torch.ones(6, 1, 1, 1))
        self.conv = nn.Conv2d(6, 6, 3, padding=1)
        self.fc = nn.Linear(6, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.relu(F.conv2d(x, self.weight * self.gain, padding=1))
        x = F.relu(self.conv(x))
        return self.fc(x.mean((2, 3)))


class StrayNorm(nn.Module):
    """A batch norm on a residual branch that feeds an addition directly: nothing to merge into. The
    other branch is not an affine map of the same tensor (tanh before its conv), so the sum cannot be
    re-parameterized into one convolution either (``conv(x) + bn(x)`` would be)."""

    def __init__(self, num_classes: int = 5):
        super().__init__()
        self.conv = nn.Conv2d(3, 4, 3, padding=1)
        self.branch = nn.Conv2d(4, 4, 3, padding=1)
        self.identity = nn.BatchNorm2d(4)
        self.fc = nn.Linear(4, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.relu(self.conv(x))
        x = F.relu(self.branch(torch.tanh(x)) + self.identity(x))
        return self.fc(x.mean((2, 3)))


class MixConv(nn.Module):
    """Mixed kernel sizes written with zip over torch.split pieces, then one batch norm after the concat."""

    def __init__(self, channels: int, splits: tuple[int, ...] = (4, 2, 2)):
        super().__init__()
        self.splits = list(splits)
        self.convs = nn.ModuleList(nn.Conv2d(c, c, 2 * i + 3, padding=i + 1, groups=c, bias=False)
                                   for i, c in enumerate(splits))
        self.bn = nn.BatchNorm2d(channels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        pieces = torch.split(x, self.splits, dim=1)
        out = [conv(piece) for piece, conv in zip(pieces, self.convs)]
        return F.relu(self.bn(torch.cat(tuple(out), dim=1)))


class MixedKernelNet(nn.Module):
    def __init__(self, num_classes: int = 5):
        super().__init__()
        self.stem = nn.Conv2d(3, 8, 3, padding=1)
        self.mix = MixConv(8)
        self.fc = nn.Linear(8, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(self.mix(F.relu(self.stem(x))).mean((2, 3)))


def adapted_densenet(num_classes: int = 5) -> nn.Module:
    """A library model adapted on the instance, as model-zoo ports do: the head renamed and
    ``forward`` replaced by a method bound to the instance (the class's forward no longer runs)."""
    model = PortedDenseNet(num_classes)
    model.classifier = model.last_linear
    del model.last_linear

    def logits(self, features: torch.Tensor) -> torch.Tensor:
        x = F.relu(features)
        x = F.avg_pool2d(x, kernel_size=x.shape[-2:], stride=1)
        return self.classifier(x.view(x.size(0), -1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.logits(self.features(x))

    model.logits = types.MethodType(logits, model)
    model.forward = types.MethodType(forward, model)
    return model
