"""The Relation Network for visual question answering on CLEVR, as the CLEVR-XAI benchmark explains it.

The architecture of Santoro et al. (2017), "A simple neural network module for relational reasoning", as
Arras, Osman & Samek (CLEVR-XAI, 2022) describe the model they explained with LRP (every size below is a
constructor argument, so a weights file of other sizes fits a model built with its sizes). A study names
it ``relation_network:clevr`` (``clevr<size>`` for another image size) with ``clevr_xai:PATH`` data,
whose questions become the model's fixed second input (studies/paper_vqa_clevr_xai.yaml).

- ``image`` (N, 3, H, W) float, H = W = ``image_size`` (128 by default), a multiple of 16.
- ``stem``: four Conv2d(3x3, stride 2, padding 1, ``channels`` = 24) -> BatchNorm2d -> ReLU blocks, each a
  module of its own; 128x128 pixels become an 8x8 grid, i.e. 64 "objects" of 24 features.
- every object gets its normalized (x, y) position appended (``coordinates``, a fixed buffer in [-1, 1],
  x along the width, y along the height, objects in row-major order) -> 26 features.
- ``question`` (N, L) int64 word indices, 0 = padding: ``embedding`` (32 wide, ``padding_idx=0``) ->
  single-layer ``lstm`` (``question_dim`` = 128); the question's embedding is the LSTM state at its last
  non-padding token, so trailing padding changes nothing.
- ``g``: an MLP (four Linear(.., 256) + ReLU) over all ordered pairs (o_i, o_j, q), 26 + 26 + 128 = 180 inputs,
  64 * 64 = 4096 pairs per image at 128x128; its outputs are summed over the pairs.
- ``f``: Linear-ReLU, Linear-ReLU, Dropout(0.5), Linear -> (N, ``n_answers``) answer logits (CLEVR: 28).

For explanations the question is a fixed second input: the relevance of interest is that of the image
pixels for the predicted answer; the question is not explained. Every non-linearity is a module (no
functional ReLU in ``forward``), so hooks and LRP rules see all of them.

Example:
    >>> import torch
    >>> from xaiopt.zoo.relation_network import build_relation_network
    >>> model = build_relation_network()  # seeded random weights; or a local .pt/.pth/.safetensors file
    >>> question = torch.tensor([[5, 17, 3, 0, 0]])  # word indices, 0 = padding
    >>> model(torch.zeros(1, 3, 128, 128), question).shape
    torch.Size([1, 28])
"""

from __future__ import annotations

from pathlib import Path

import torch
import torch.fx
from torch import nn

from xaiopt.zoo.weights import check_fit, read_state_dict

_WORD_DIM = 32
_STEM_LAYERS = 4  # each halves the resolution: image_size must be a multiple of 2 ** 4
_SIZE_NAMES = ("vocab_size", "n_answers", "image_size", "channels", "question_dim", "g_dim", "f_dim")


def _check_inputs(image: torch.Tensor, question: torch.Tensor, image_size: int) -> None:
    """One clear ValueError for inputs of the wrong shape (kept out of ``forward``'s own code so that
    torch.fx traces the forward, as the canonizer does; torch.fx.wrap records this call instead)."""
    if image.dim() != 4 or tuple(image.shape[1:]) != (3, image_size, image_size):
        raise ValueError(f"image must be (N, 3, {image_size}, {image_size}) for this RelationNetwork, "
                         f"got {tuple(image.shape)}")
    if question.dim() != 2 or question.shape[0] != image.shape[0]:
        raise ValueError(f"question must be (N, L) word indices with N={image.shape[0]}, got {tuple(question.shape)}")


torch.fx.wrap("_check_inputs")


class RelationNetwork(nn.Module):
    """Santoro et al.'s Relation Network: CNN objects, LSTM question, g over all object pairs, f on their sum.

    Example:
        >>> model = RelationNetwork(image_size=64).eval()
        >>> model(torch.zeros(2, 3, 64, 64), torch.ones(2, 7, dtype=torch.long)).shape
        torch.Size([2, 28])
    """

    def __init__(
        self,
        vocab_size: int = 90,
        n_answers: int = 28,
        image_size: int = 128,
        channels: int = 24,
        question_dim: int = 128,
        g_dim: int = 256,
        f_dim: int = 256,
    ) -> None:
        super().__init__()
        sizes = dict(zip(_SIZE_NAMES, (vocab_size, n_answers, image_size, channels, question_dim, g_dim, f_dim)))
        bad = [f"{name}={value!r}" for name, value in sizes.items() if not isinstance(value, int) or value < 1]
        if bad:
            raise ValueError(f"RelationNetwork sizes must be positive integers, got {', '.join(bad)}")
        factor = 2**_STEM_LAYERS
        if image_size % factor:
            raise ValueError(
                f"image_size={image_size} is invalid for RelationNetwork; valid: a multiple of {factor} "
                f"(its {_STEM_LAYERS} stride-2 convolutions), e.g. 64 or 128"
            )
        self.image_size = image_size
        self.grid = image_size // factor

        layers: list[nn.Module] = []
        width = 3
        for _ in range(_STEM_LAYERS):
            layers += [
                nn.Conv2d(width, channels, kernel_size=3, stride=2, padding=1),
                nn.BatchNorm2d(channels),
                nn.ReLU(),
            ]
            width = channels
        self.stem = nn.Sequential(*layers)

        # Not persistent: the positions follow from image_size, so a weights file neither needs nor carries them.
        # Kept in float64 and cast in forward, so that a model in float64 sees them exact, not float32-rounded.
        position = torch.linspace(-1.0, 1.0, self.grid, dtype=torch.float64)
        y, x = torch.meshgrid(position, position, indexing="ij")
        self.register_buffer("coordinates", torch.stack([x, y], dim=-1).reshape(-1, 2), persistent=False)

        self.embedding = nn.Embedding(vocab_size, _WORD_DIM, padding_idx=0)
        self.lstm = nn.LSTM(_WORD_DIM, question_dim, num_layers=1, batch_first=True)

        object_dim = channels + 2
        g_layers: list[nn.Module] = []
        width = 2 * object_dim + question_dim
        for _ in range(4):
            g_layers += [nn.Linear(width, g_dim), nn.ReLU()]
            width = g_dim
        self.g = nn.Sequential(*g_layers)
        self.f = nn.Sequential(
            nn.Linear(g_dim, f_dim),
            nn.ReLU(),
            nn.Linear(f_dim, f_dim),
            nn.ReLU(),
            nn.Dropout(0.5),
            nn.Linear(f_dim, n_answers),
        )

    @property
    def n_objects(self) -> int:
        """Objects per image: the cells of the stem's output grid (64 at 128x128)."""
        return self.grid * self.grid

    def encode_question(self, question: torch.Tensor) -> torch.Tensor:
        """(N, L) word indices -> (N, question_dim): the LSTM state at each question's last non-padding token."""
        states, _ = self.lstm(self.embedding(question))
        positions = torch.arange(question.shape[1], device=question.device)
        # The LSTM reads left to right, so the state at the last word is untouched by the padding after it;
        # a question of padding only takes the state at position 0.
        last = (positions * (question != 0)).amax(dim=1)
        return states.gather(1, last.view(-1, 1, 1).expand(-1, 1, states.shape[2])).squeeze(1)

    def forward(self, image: torch.Tensor, question: torch.Tensor) -> torch.Tensor:
        _check_inputs(image, question, self.image_size)
        features = self.stem(image).flatten(2).transpose(1, 2)  # (N, objects, channels), row-major cells
        batch, count = features.size(0), features.size(1)
        coordinates = self.coordinates.to(features.dtype).expand(batch, -1, -1)
        objects = torch.cat([features, coordinates], dim=2)  # (N, K, channels + 2)
        words = self.encode_question(question)  # (N, question_dim)
        first = objects.unsqueeze(2).expand(-1, -1, count, -1)  # o_i along dim 1
        second = objects.unsqueeze(1).expand(-1, count, -1, -1)  # o_j along dim 2
        asked = words.view(batch, 1, 1, -1).expand(-1, count, count, -1)
        pairs = torch.cat([first, second, asked], dim=3).reshape(batch, count * count, -1)  # (N, K*K, 180)
        return self.f(self.g(pairs).sum(dim=1))


def build_relation_network(
    weights: str | Path | None = None, *, seed: int = 0, **sizes: int
) -> RelationNetwork:
    """A :class:`RelationNetwork` in eval mode on the CPU: seeded random weights, or a local state dict file.

    ``sizes`` are the constructor's (``vocab_size``, ``n_answers``, ``image_size``, ``channels``,
    ``question_dim``, ``g_dim``, ``f_dim``). Random weights follow ``seed`` and leave torch's global RNG as
    it was. ``weights`` is a ``.pt``/``.pth`` file (read with ``torch.load(weights_only=True)``) or a
    ``.safetensors`` file whose tensors must fit the model exactly (optionally under ``"state_dict"`` or
    ``"model"``, keys optionally prefixed ``module.``); nothing is downloaded. A file that is missing,
    unreadable, not a state dict or does not fit raises a one-line :class:`~xaiopt.errors.ConfigError`.

    Example:
        >>> model = build_relation_network(seed=1, image_size=64)
        >>> torch.save(model.state_dict(), "rn.pt")
        >>> build_relation_network("rn.pt", image_size=64).training
        False
    """
    unknown = sorted(set(sizes) - set(_SIZE_NAMES))
    if unknown:
        raise TypeError(
            f"build_relation_network got unknown sizes {', '.join(unknown)}; valid: {', '.join(_SIZE_NAMES)}"
        )
    # Only the CPU generator: modules are initialised on the CPU, and torch.manual_seed would also reseed
    # every CUDA device, which fork_rng(devices=[]) does not restore.
    with torch.random.fork_rng(devices=[]):
        torch.random.default_generator.manual_seed(seed)
        model = RelationNetwork(**sizes)
    if weights is not None:
        path = Path(weights).expanduser()
        state = read_state_dict(path, "RelationNetwork", valid="a local state dict file (.pt, .pth, .safetensors)")
        check_fit(model, state, path, "RelationNetwork")
        model.load_state_dict(state)
    return model.eval()
