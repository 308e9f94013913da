"""Small members of each torchvision family, with random weights (nothing is downloaded).

Where a family's smallest member is still slow in float64 on two CPU cores, the same torchvision
classes are built with fewer/narrower blocks; the blocks, and so the canonization, are the same.
"""

from __future__ import annotations

from functools import partial

import torch
from torch import nn
from torchvision import models as tm
from torchvision.models.efficientnet import EfficientNet, FusedMBConvConfig, MBConvConfig
from torchvision.models.resnet import Bottleneck, ResNet


def vgg11_bn():
    model = tm.vgg11_bn(num_classes=10, init_weights=False)
    model.classifier = _small_vgg_head()
    return model


def vgg16_bn():
    model = tm.vgg16_bn(num_classes=10, init_weights=False)
    model.classifier = _small_vgg_head()
    return model


def _small_vgg_head():
    # the 25088x4096 head is irrelevant to canonization and costs seconds to copy in float64
    return nn.Sequential(nn.Linear(512 * 7 * 7, 32), nn.ReLU(True), nn.Dropout(), nn.Linear(32, 10))


def resnext_small():
    return ResNet(Bottleneck, [1, 1, 1, 1], groups=8, width_per_group=4, num_classes=10)


def wide_resnet_small():
    return ResNet(Bottleneck, [1, 1, 1, 1], width_per_group=128, num_classes=10)


def efficientnet_v2_small():
    setting = [
        FusedMBConvConfig(1, 3, 1, 24, 24, 1),
        FusedMBConvConfig(4, 3, 2, 24, 32, 2),
        MBConvConfig(4, 3, 2, 32, 48, 2),
    ]
    return EfficientNet(setting, 0.2, norm_layer=partial(nn.BatchNorm2d, eps=1e-3), last_channel=128, num_classes=10)


# name -> (constructor, input side, extra rewrites expected besides batch-norm merges)
ARCHITECTURES = {
    "vgg11_bn": (vgg11_bn, 32, {}),
    "resnet18": (partial(tm.resnet18, num_classes=10), 32, {"residual_sum": 8}),
    "resnext_small": (resnext_small, 32, {"residual_sum": 4}),
    "wide_resnet_small": (wide_resnet_small, 32, {"residual_sum": 4}),
    "densenet121": (partial(tm.densenet121, num_classes=10), 32, {"merge:threshrelu": 62, "concat": 62}),
    "efficientnet_b0": (partial(tm.efficientnet_b0, num_classes=10), 32, {"se_gate": 16, "residual_sum": 9}),
    "efficientnet_v2_small": (efficientnet_v2_small, 32, {"se_gate": 2, "residual_sum": 3}),
    "mobilenet_v2": (partial(tm.mobilenet_v2, num_classes=10), 32, {"residual_sum": 10}),
    "mobilenet_v3_small": (partial(tm.mobilenet_v3_small, num_classes=10), 32, {"se_gate": 9, "residual_sum": 6}),
    "regnet_y_400mf": (partial(tm.regnet_y_400mf, num_classes=10), 32, {"se_gate": 16, "residual_sum": 16}),
    "regnet_x_400mf": (partial(tm.regnet_x_400mf, num_classes=10), 32, {"residual_sum": 22}),
    "shufflenet_v2_x0_5": (partial(tm.shufflenet_v2_x0_5, num_classes=10), 32, {"concat": 16}),
    "mnasnet0_5": (partial(tm.mnasnet0_5, num_classes=10), 32, {"residual_sum": 10}),
    "googlenet": (partial(tm.googlenet, num_classes=10, aux_logits=False, init_weights=False), 32, {"concat": 9}),
    "inception_v3": (
        partial(tm.inception_v3, num_classes=10, aux_logits=False, init_weights=False), 75, {"concat": 15}
    ),
}


EXTRA = {"vgg16_bn": vgg16_bn, "resnet50": partial(tm.resnet50, num_classes=10)}


def build(name: str, seed: int = 0) -> nn.Module:
    torch.manual_seed(seed)
    if name in EXTRA:
        return EXTRA[name]()
    return ARCHITECTURES[name][0]()
