"""Models with a fixed input besides the one explained (a VQA model's question): ``canonize``,
``census`` and ``verify_equivalence`` take ``(x, *fixed)``, run ``model(x, *fixed)`` and vary ``x``
only. Measured by running, in float64, on user modules with their own forward."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from xaiopt.canonize import canonize, verify_equivalence
from xaiopt.canonize.census import census

from .helpers import randomize_batch_norms


class Conditioned(nn.Module):
    """An image stem with batch norms, a question read by an LSTM, and a head on both."""

    def __init__(self, vocab: int = 12) -> None:
        super().__init__()
        self.conv1, self.bn1 = nn.Conv2d(3, 8, 3, stride=2, padding=1), nn.BatchNorm2d(8)
        self.conv2, self.bn2 = nn.Conv2d(8, 8, 3, stride=2, padding=1), nn.BatchNorm2d(8)
        self.relu = nn.ReLU()
        self.embed = nn.Embedding(vocab, 6, padding_idx=0)
        self.lstm = nn.LSTM(6, 8, batch_first=True)
        self.head = nn.Linear(16, 5)

    def forward(self, image: torch.Tensor, question: torch.Tensor) -> torch.Tensor:
        h = self.relu(self.bn1(self.conv1(image)))
        h = self.relu(self.bn2(self.conv2(h))).mean((2, 3))
        states, _ = self.lstm(self.embed(question))
        return self.head(torch.cat([h, states[:, -1]], dim=1))


class Film(nn.Module):
    """A conditioning vector scales the features per channel (FiLM): a floating-point fixed input."""

    def __init__(self) -> None:
        super().__init__()
        self.conv, self.bn = nn.Conv2d(3, 4, 3, padding=1), nn.BatchNorm2d(4)
        self.head = nn.Linear(4, 3)

    def forward(self, image: torch.Tensor, condition: torch.Tensor) -> torch.Tensor:
        h = torch.relu(self.bn(self.conv(image))) * condition[:, :, None, None]
        return self.head(h.mean((2, 3)))


def _inputs(n: int = 2, seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    return (torch.randn(n, 3, 16, 16, generator=g, dtype=torch.float64),
            torch.randint(1, 12, (n, 5), generator=g))


def test_a_question_model_is_canonized_and_measured_by_running():
    torch.manual_seed(0)
    model = randomize_batch_norms(Conditioned()).double().eval()
    x, q = _inputs()
    twin, report = canonize(model, (x, q))
    assert report.canonized, str(report)
    assert report.batch_norms_before == 2 and report.remaining_batch_norms == []
    assert len(census(model, (x, q)).batch_norms) == 2 and census(twin, (x, q)).batch_norms == []
    assert {m.batch_norm for m in report.merges} == {"bn1", "bn2"}
    # three inputs checked: the example and two random image batches, each with the example's questions
    assert report.equivalence.n_inputs == 3 and report.equivalence.max_rel < 1e-10
    other_x, other_q = _inputs(3, seed=1)
    with torch.no_grad():
        expected = model(other_x, other_q)
        assert ((twin(other_x, other_q) - expected).abs().max() / expected.abs().max()) < 1e-10
    # the question matters to the model (else the test would prove nothing about holding it fixed)
    with torch.no_grad():
        assert (model(x, q) - model(x, q.flip(1))).abs().max() > 1e-6


def test_the_random_batches_hold_the_fixed_input():
    seen = []

    class Recording(Film):
        def forward(self, image, condition):
            seen.append(condition.clone())
            return super().forward(image, condition)

    torch.manual_seed(0)
    model = randomize_batch_norms(Recording()).double().eval()
    x = torch.randn(2, 3, 8, 8, dtype=torch.float64)
    condition = torch.tensor([[0.5, 2.0, -1.0, 1.5], [1.0, 0.0, 3.0, -2.0]], dtype=torch.float32)
    result = verify_equivalence(model, model, (x, condition), n_random=2)
    assert result.ok and result.n_inputs == 3
    # cast with the model to float64, the same values in every call
    assert len(seen) == 6 and all(c.dtype == torch.float64 and torch.equal(c, condition.double()) for c in seen)
    seen.clear()
    twin, report = canonize(model, (x, condition.double()))
    assert report.canonized and report.remaining_batch_norms == [], str(report)


def test_only_what_depends_on_the_explained_input_is_counted():
    class NormedQuestion(Conditioned):
        """A batch norm on the question's path: it never sees the image, so no relevance passes it."""

        def __init__(self):
            super().__init__()
            self.qnorm = nn.BatchNorm1d(8)

        def forward(self, image, question):
            h = self.relu(self.bn1(self.conv1(image)))
            h = self.relu(self.bn2(self.conv2(h))).mean((2, 3))
            states, _ = self.lstm(self.embed(question))
            return self.head(torch.cat([h, self.qnorm(states[:, -1])], dim=1))

    model = randomize_batch_norms(NormedQuestion()).double().eval()
    x, q = _inputs()
    assert len(census(model, (x, q)).batch_norms) == 2  # bn1, bn2; not qnorm


def test_an_example_that_is_not_tensors_is_one_line():
    model = Conditioned().double().eval()
    with pytest.raises(TypeError, match=r"^example_input: expected a tensor or a tuple of tensors \(the explained "
                                        r"input first, then the model's fixed inputs\), got dict$"):
        canonize(model, {"image": torch.zeros(1, 3, 16, 16)})


def test_the_relation_network_of_clevr_xai_is_canonized():
    """The embedded Relation Network (xaiopt.zoo.relation_network): a 4-layer conv stem with batch
    norms, an LSTM question reader, g- and f-MLPs over all pairs of grid cells."""
    from xaiopt.zoo.relation_network import build_relation_network

    model = randomize_batch_norms(build_relation_network(seed=0, image_size=64)).double().eval()
    g = torch.Generator().manual_seed(3)
    images = torch.rand(2, 3, 64, 64, generator=g, dtype=torch.float64)
    questions = torch.tensor([[5, 17, 3, 40, 2, 0, 0], [8, 1, 61, 12, 9, 33, 4]])
    twin, report = canonize(model, (images, questions))
    assert report.canonized, str(report)
    assert report.batch_norms_before == 4 and report.remaining_batch_norms == [] and report.unhooked_layers == []
    assert sorted(m.batch_norm for m in report.merges) == ["stem.1", "stem.10", "stem.4", "stem.7"]
    assert report.equivalence.max_rel < 1e-10
    with torch.no_grad():
        expected = model(images, questions)
        assert ((twin(images, questions) - expected).abs().max() / expected.abs().max()) < 1e-10
