"""Small models for the embedded benchmark (3x64x64 inputs, 4 classes): three BatchNorm CNNs and a ViT.

The layer names follow torchvision (the CNNs) and timm (the ViT) so that rules and canonizers
written for the real networks find familiar structure:

- ``vgg``: ``features`` (Conv-BN-ReLU blocks with MaxPool), ``avgpool``, ``flatten``,
  ``classifier`` (Linear-ReLU-Linear).
- ``resnet``: ``conv1``/``bn1``/``relu`` stem, ``layer1..3`` of torchvision's own ``BasicBlock``
  (so zennit's ``ResNetCanonizer`` applies unchanged), ``avgpool``, ``flatten``, ``fc``.
- ``densenet``: ``features`` with ``conv0``/``norm0``/``relu0``, ``denseblockK`` of
  BN -> ReLU -> Conv(1x1) -> BN -> ReLU -> Conv(3x3) layers whose outputs are concatenated,
  ``transitionK`` (BN -> ReLU -> Conv(1x1) -> AvgPool), ``norm5``/``relu5``; then ``avgpool``,
  ``flatten``, ``classifier``.
- ``vit``: timm's ``VisionTransformer`` in small (width 64, 3 blocks, 4 heads, MLP ratio 2):
  ``patch_embed`` (a strided Conv2d, 8x8 patches, so 64 tokens), ``cls_token`` and ``pos_embed``
  parameters, ``blocks`` of pre-norm ``Block``s (``norm1``, ``attn`` with a fused ``qkv`` Linear,
  ``scaled_dot_product_attention`` and ``proj``; ``norm2``, ``mlp`` with ``fc1``/``act``/``fc2``),
  the final ``norm`` and a ``head`` on the class token.

In the CNNs every non-linearity is a module (no functional ReLU in ``forward``), so hooks see all
of them; the ViT's GELU and LayerNorms are modules too, its softmax is the one inside
:func:`torch.nn.functional.scaled_dot_product_attention`, as in timm.

Example:
    >>> import torch
    >>> from xaiopt.zoo.benchmark_models import build_benchmark_model
    >>> model = build_benchmark_model("vgg")
    >>> model(torch.zeros(2, 3, 64, 64)).shape
    torch.Size([2, 4])
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import nn
from torchvision.models.resnet import BasicBlock

from xaiopt.errors import UnknownNameError

_ARCHITECTURES: dict[str, Callable[[int], nn.Module]] = {}


def _register(name: str) -> Callable[[Callable[[int], nn.Module]], Callable[[int], nn.Module]]:
    def decorate(builder: Callable[[int], nn.Module]) -> Callable[[int], nn.Module]:
        _ARCHITECTURES[name] = builder
        return builder

    return decorate


def architecture_names() -> tuple[str, ...]:
    """The benchmark architectures, e.g. ``("vgg", "resnet", "densenet", "vit")``."""
    return tuple(_ARCHITECTURES)


def build_benchmark_model(name: str, num_classes: int = 4) -> nn.Module:
    """A freshly initialised benchmark model (train mode, CPU); initialisation follows the torch seed."""
    try:
        builder = _ARCHITECTURES[name]
    except KeyError:
        raise UnknownNameError(
            f"benchmark model {name!r} is unknown; valid: {', '.join(_ARCHITECTURES)}"
        ) from None
    return builder(num_classes)


class BenchmarkVGG(nn.Module):
    """VGG-like: Conv-BN-ReLU(-MaxPool) blocks, global average pool, two Linear layers."""

    def __init__(self, num_classes: int = 4, widths: tuple[int, ...] = (16, 32, 64, 64)) -> None:
        super().__init__()
        layers: list[nn.Module] = []
        channels = 3
        for width in widths:
            layers += [
                nn.Conv2d(channels, width, kernel_size=3, padding=1),
                nn.BatchNorm2d(width),
                nn.ReLU(),
                nn.MaxPool2d(kernel_size=2, stride=2),
            ]
            channels = width
        self.features = nn.Sequential(*layers)
        self.avgpool = nn.AdaptiveAvgPool2d((1, 1))
        self.flatten = nn.Flatten(1)
        self.classifier = nn.Sequential(
            nn.Linear(channels, 64),
            nn.ReLU(),
            nn.Linear(64, num_classes),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.flatten(self.avgpool(self.features(x))))


class BenchmarkResNet(nn.Module):
    """ResNet-like: a strided stem, three stages of torchvision ``BasicBlock``s, global pool, fc."""

    def __init__(self, num_classes: int = 4, widths: tuple[int, ...] = (16, 32, 64)) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(3, widths[0], kernel_size=3, stride=2, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(widths[0])
        self.relu = nn.ReLU(inplace=True)
        channels = widths[0]
        for index, width in enumerate(widths, start=1):
            stride = 1 if index == 1 else 2
            downsample = None
            if stride != 1 or channels != width:
                downsample = nn.Sequential(
                    nn.Conv2d(channels, width, kernel_size=1, stride=stride, bias=False),
                    nn.BatchNorm2d(width),
                )
            setattr(self, f"layer{index}", nn.Sequential(BasicBlock(channels, width, stride, downsample)))
            channels = width
        self.num_stages = len(widths)
        self.avgpool = nn.AdaptiveAvgPool2d((1, 1))
        self.flatten = nn.Flatten(1)
        self.fc = nn.Linear(channels, num_classes)
        for module in self.modules():
            if isinstance(module, BasicBlock):
                # Residual branches start near identity: trains faster and more stably.
                nn.init.zeros_(module.bn2.weight)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.relu(self.bn1(self.conv1(x)))
        for index in range(1, self.num_stages + 1):
            x = getattr(self, f"layer{index}")(x)
        return self.fc(self.flatten(self.avgpool(x)))


class DenseLayer(nn.Module):
    """BN -> ReLU -> Conv1x1 -> BN -> ReLU -> Conv3x3; returns its input with the new maps appended."""

    def __init__(self, in_channels: int, growth_rate: int, bottleneck: int) -> None:
        super().__init__()
        inner = bottleneck * growth_rate
        self.norm1 = nn.BatchNorm2d(in_channels)
        self.relu1 = nn.ReLU()
        self.conv1 = nn.Conv2d(in_channels, inner, kernel_size=1, bias=False)
        self.norm2 = nn.BatchNorm2d(inner)
        self.relu2 = nn.ReLU()
        self.conv2 = nn.Conv2d(inner, growth_rate, kernel_size=3, padding=1, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        new = self.conv2(self.relu2(self.norm2(self.conv1(self.relu1(self.norm1(x))))))
        return torch.cat([x, new], dim=1)


class Transition(nn.Sequential):
    """BN -> ReLU -> Conv1x1 -> AvgPool, halving the resolution between dense blocks."""

    def __init__(self, in_channels: int, out_channels: int) -> None:
        super().__init__()
        self.norm = nn.BatchNorm2d(in_channels)
        self.relu = nn.ReLU()
        self.conv = nn.Conv2d(in_channels, out_channels, kernel_size=1, bias=False)
        self.pool = nn.AvgPool2d(kernel_size=2, stride=2)


class BenchmarkDenseNet(nn.Module):
    """DenseNet-like: strided stem, dense blocks joined by transitions, final BN-ReLU, pool, Linear."""

    def __init__(
        self,
        num_classes: int = 4,
        growth_rate: int = 8,
        block_layers: tuple[int, ...] = (2, 2, 2),
        init_features: int = 16,
        bottleneck: int = 2,
    ) -> None:
        super().__init__()
        self.features = nn.Sequential()
        self.features.add_module("conv0", nn.Conv2d(3, init_features, kernel_size=3, stride=2, padding=1, bias=False))
        self.features.add_module("norm0", nn.BatchNorm2d(init_features))
        self.features.add_module("relu0", nn.ReLU())
        channels = init_features
        for index, layers in enumerate(block_layers, start=1):
            block = nn.Sequential()
            for layer in range(1, layers + 1):
                block.add_module(f"denselayer{layer}", DenseLayer(channels, growth_rate, bottleneck))
                channels += growth_rate
            self.features.add_module(f"denseblock{index}", block)
            if index != len(block_layers):
                self.features.add_module(f"transition{index}", Transition(channels, channels // 2))
                channels //= 2
        self.features.add_module("norm5", nn.BatchNorm2d(channels))
        self.features.add_module("relu5", nn.ReLU())
        self.avgpool = nn.AdaptiveAvgPool2d((1, 1))
        self.flatten = nn.Flatten(1)
        self.classifier = nn.Linear(channels, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.flatten(self.avgpool(self.features(x))))


class Attention(nn.Module):
    """timm's multi-head self-attention: one fused ``qkv`` Linear, SDPA, then ``proj``."""

    def __init__(self, dim: int, num_heads: int) -> None:
        super().__init__()
        if dim % num_heads:
            raise ValueError(f"dim must be divisible by num_heads, got dim={dim}, num_heads={num_heads}")
        self.num_heads = num_heads
        self.head_dim = dim // num_heads
        self.qkv = nn.Linear(dim, 3 * dim)
        self.proj = nn.Linear(dim, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        batch, tokens, dim = x.shape
        qkv = self.qkv(x).reshape(batch, tokens, 3, self.num_heads, self.head_dim).permute(2, 0, 3, 1, 4)
        q, k, v = qkv.unbind(0)
        x = nn.functional.scaled_dot_product_attention(q, k, v)
        return self.proj(x.transpose(1, 2).reshape(batch, tokens, dim))


class Mlp(nn.Module):
    """timm's transformer MLP: ``fc1`` -> ``act`` (GELU) -> ``fc2``."""

    def __init__(self, dim: int, hidden: int) -> None:
        super().__init__()
        self.fc1 = nn.Linear(dim, hidden)
        self.act = nn.GELU()
        self.fc2 = nn.Linear(hidden, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc2(self.act(self.fc1(x)))


class Block(nn.Module):
    """timm's pre-norm transformer block: ``x + attn(norm1(x))``, then ``x + mlp(norm2(x))``."""

    def __init__(self, dim: int, num_heads: int, mlp_ratio: float) -> None:
        super().__init__()
        self.norm1 = nn.LayerNorm(dim)
        self.attn = Attention(dim, num_heads)
        self.norm2 = nn.LayerNorm(dim)
        self.mlp = Mlp(dim, int(dim * mlp_ratio))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.attn(self.norm1(x))
        return x + self.mlp(self.norm2(x))


class BenchmarkViT(nn.Module):
    """ViT-like (timm's ``VisionTransformer`` layout): 8x8 patches, a class token, pre-norm blocks, head."""

    def __init__(
        self,
        num_classes: int = 4,
        dim: int = 64,
        depth: int = 3,
        num_heads: int = 4,
        mlp_ratio: float = 2.0,
        patch_size: int = 8,
        image_size: int = 64,
    ) -> None:
        super().__init__()
        num_patches = (image_size // patch_size) ** 2
        self.patch_embed = nn.Conv2d(3, dim, kernel_size=patch_size, stride=patch_size)
        self.cls_token = nn.Parameter(torch.zeros(1, 1, dim))
        self.pos_embed = nn.Parameter(torch.zeros(1, 1 + num_patches, dim))
        self.blocks = nn.Sequential(*(Block(dim, num_heads, mlp_ratio) for _ in range(depth)))
        self.norm = nn.LayerNorm(dim)
        self.head = nn.Linear(dim, num_classes)
        # timm's init for the two embeddings; the Linear layers keep torch's default init, which
        # reached a higher accuracy in the short training budget than timm's trunc-normal(0.02).
        nn.init.trunc_normal_(self.cls_token, std=0.02)
        nn.init.trunc_normal_(self.pos_embed, std=0.02)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.patch_embed(x).flatten(2).transpose(1, 2)  # (B, patches, dim)
        x = torch.cat([self.cls_token.expand(x.shape[0], -1, -1), x], dim=1) + self.pos_embed
        x = self.norm(self.blocks(x))
        return self.head(x[:, 0])


@_register("vgg")
def _vgg(num_classes: int) -> nn.Module:
    return BenchmarkVGG(num_classes)


@_register("resnet")
def _resnet(num_classes: int) -> nn.Module:
    return BenchmarkResNet(num_classes)


@_register("densenet")
def _densenet(num_classes: int) -> nn.Module:
    return BenchmarkDenseNet(num_classes)


@_register("vit")
def _vit(num_classes: int) -> nn.Module:
    return BenchmarkViT(num_classes)
