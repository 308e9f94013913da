from __future__ import annotations

from pathlib import Path

import pytest
import torch
from torch import nn

from xaiopt.errors import ConfigError
from xaiopt.zoo.relation_network import RelationNetwork, build_relation_network


@pytest.fixture(scope="module")
def model() -> RelationNetwork:
    return build_relation_network()


def _inputs(n: int = 2, size: int = 128, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    generator = torch.Generator().manual_seed(seed)
    image = torch.randn(n, 3, size, size, generator=generator)
    question = torch.randint(1, 90, (n, 9), generator=generator)
    question[0, 6:] = 0  # questions of different lengths in one batch
    return image, question


def _count_g_input(model: RelationNetwork, image: torch.Tensor, question: torch.Tensor) -> tuple[int, ...]:
    shapes: list[tuple[int, ...]] = []
    handle = model.g[0].register_forward_hook(lambda module, args, output: shapes.append(tuple(args[0].shape)))
    try:
        with torch.no_grad():
            logits = model(image, question)
    finally:
        handle.remove()
    assert len(shapes) == 1 and torch.isfinite(logits).all()
    return shapes[0]


def test_answer_logits_and_all_ordered_pairs(model: RelationNetwork) -> None:
    image, question = _inputs(n=3)
    assert not model.training
    with torch.no_grad():
        assert model(image, question).shape == (3, 28)
    assert _count_g_input(model, image, question) == (3, 64 * 64, 24 + 2 + 24 + 2 + 128)
    small = build_relation_network(image_size=64)
    assert small.n_objects == 16
    image, question = _inputs(n=2, size=64)
    with torch.no_grad():
        assert small(image, question).shape == (2, 28)
    assert _count_g_input(small, image, question) == (2, 16 * 16, 180)


def test_layout_and_the_coordinates_are_a_buffer(model: RelationNetwork) -> None:
    stem = list(model.stem)
    assert [type(m) for m in stem] == [nn.Conv2d, nn.BatchNorm2d, nn.ReLU] * 4
    assert all(m.stride == (2, 2) and m.kernel_size == (3, 3) and m.out_channels == 24 for m in stem[::3])
    assert [type(m) for m in model.g] == [nn.Linear, nn.ReLU] * 4
    assert [type(m) for m in model.f] == [nn.Linear, nn.ReLU, nn.Linear, nn.ReLU, nn.Dropout, nn.Linear]
    assert model.lstm.input_size == 32 and model.lstm.hidden_size == 128 and model.lstm.num_layers == 1
    assert model.embedding.padding_idx == 0 and model.embedding.num_embeddings == 90
    assert "coordinates" not in dict(model.named_parameters())
    assert model.coordinates.shape == (64, 2)
    assert model.coordinates.min() == -1 and model.coordinates.max() == 1


def test_sizes_are_checked() -> None:
    with pytest.raises(ValueError, match="image_size=100.*multiple of 16"):
        RelationNetwork(image_size=100)
    with pytest.raises(TypeError, match="unknown sizes width"):
        build_relation_network(width=3)
    with pytest.raises(ValueError, match=r"\(N, 3, 64, 64\).*\(1, 3, 128, 128\)"):
        build_relation_network(image_size=64)(torch.zeros(1, 3, 128, 128), torch.ones(1, 4, dtype=torch.long))


def test_seeded_weights_leave_the_global_rng_alone() -> None:
    state = torch.random.get_rng_state()
    a, b, c = build_relation_network(seed=3), build_relation_network(seed=3), build_relation_network(seed=4)
    assert torch.equal(torch.random.get_rng_state(), state)
    for (name, pa), (_, pb) in zip(a.state_dict().items(), b.state_dict().items()):
        assert torch.equal(pa, pb), name
    assert not torch.equal(a.g[0].weight, c.g[0].weight)
    image, question = _inputs()
    with torch.no_grad():
        assert torch.equal(a(image, question), b(image, question))
        assert not torch.allclose(a(image, question), c(image, question))


def test_the_question_matters_and_padding_does_not(model: RelationNetwork) -> None:
    image, _ = _inputs(n=1)
    first = torch.tensor([[3, 14, 15, 9, 26]])
    other = torch.tensor([[27, 18, 28, 18, 28]])
    with torch.no_grad():
        asked = model(image, first)
        assert (asked - model(image, other)).abs().max() > 1e-4
        padded = model(image, torch.cat([first, torch.zeros(1, 7, dtype=torch.long)], dim=1))
        torch.testing.assert_close(padded, asked, rtol=0, atol=1e-6)


def test_each_question_of_a_padded_batch_reads_to_its_own_last_word() -> None:
    # float64: a batch of 1 and a batch of 2 may sum in another order, which float32 would show at 1e-6
    model = build_relation_network().double()
    image, _ = _inputs(n=2, seed=1)
    image = image.double()
    batch = torch.tensor([[3, 14, 15, 0, 0, 0], [27, 18, 28, 18, 28, 4]])
    with torch.no_grad():
        together = model(image, batch)
        torch.testing.assert_close(together[0], model(image[:1], batch[:1, :3])[0], rtol=0, atol=1e-10)
        torch.testing.assert_close(together[1], model(image[1:], batch[1:])[0], rtol=0, atol=1e-10)
        # the gather is what makes this true: the LSTM has read on through the padding by the last position
        states, _ = model.lstm(model.embedding(batch))
        torch.testing.assert_close(model.encode_question(batch), states[[0, 1], [2, 5]], rtol=0, atol=0)
        assert (states[0, -1] - states[0, 2]).abs().max() > 1e-4


def test_batched_pairs_equal_a_loop_over_every_pair_in_float64() -> None:
    model = build_relation_network(seed=5).double()
    image, question = _inputs(n=2, seed=2)
    image = image.double()
    with torch.no_grad():
        logits = model(image, question)[0]
        # independent reference for sample 0: objects read cell by cell, the question run unpadded
        cells = model.stem(image[:1])[0]  # (24, 8, 8)
        grid = cells.shape[1]
        objects = []
        for row in range(grid):
            for col in range(grid):
                x, y = -1 + 2 * col / (grid - 1), -1 + 2 * row / (grid - 1)
                objects.append(torch.cat([cells[:, row, col], torch.tensor([x, y], dtype=torch.float64)]))
        length = int((question[0] != 0).sum())
        states, _ = model.lstm(model.embedding(question[:1, :length]))
        words = states[0, -1]
        total = torch.zeros(256, dtype=torch.float64)
        for o_i in objects:
            for o_j in objects:
                total += model.g(torch.cat([o_i, o_j, words]))
        expected = model.f(total)
    assert len(objects) == 64
    torch.testing.assert_close(logits, expected, rtol=0, atol=1e-10)


def test_all_four_batch_norms_run(model: RelationNetwork) -> None:
    calls: list[str] = []
    handles = [
        module.register_forward_hook(lambda m, args, out, name=name: calls.append(name))
        for name, module in model.named_modules()
        if isinstance(module, nn.BatchNorm2d)
    ]
    try:
        with torch.no_grad():
            model(*_inputs())
    finally:
        for handle in handles:
            handle.remove()
    assert calls == ["stem.1", "stem.4", "stem.7", "stem.10"]


@pytest.mark.parametrize("suffix", [".pt", ".safetensors"])
def test_weights_file_round_trip(tmp_path: Path, suffix: str) -> None:
    source = build_relation_network(seed=7, image_size=64)
    file = tmp_path / f"rn{suffix}"
    if suffix == ".safetensors":
        safetensors = pytest.importorskip("safetensors.torch")
        safetensors.save_file(source.state_dict(), str(file))
    else:
        torch.save(source.state_dict(), file)
    loaded = build_relation_network(file, image_size=64)  # seed 0: only the file can make them equal
    assert not loaded.training
    image, question = _inputs(size=64)
    with torch.no_grad():
        assert torch.equal(loaded(image, question), source(image, question))


def _one_line_error(file: Path, *needles: str) -> None:
    with pytest.raises(ConfigError) as caught:
        build_relation_network(file)
    message = str(caught.value)
    assert "\n" not in message and str(file) in message
    for needle in needles:
        assert needle in message, message


def test_files_that_do_not_fit_are_one_line_errors(tmp_path: Path) -> None:
    _one_line_error(tmp_path / "absent.pt", "does not exist")

    state = build_relation_network().state_dict()
    wrong = dict(state, **{"f.5.weight": torch.zeros(10, 256)})
    torch.save(wrong, tmp_path / "wrong.pt")
    _one_line_error(tmp_path / "wrong.pt", "f.5.weight", "(10, 256)", "(28, 256)")

    missing = {k: v for k, v in state.items() if k != "lstm.weight_hh_l0"}
    torch.save(missing, tmp_path / "missing.pt")
    _one_line_error(tmp_path / "missing.pt", "missing in the file: lstm.weight_hh_l0")

    torch.save([1, 2, 3], tmp_path / "list.pt")
    _one_line_error(tmp_path / "list.pt", "no state dict")
