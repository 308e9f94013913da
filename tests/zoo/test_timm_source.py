"""``timm:<name>[.<tag>]`` models: random init, state dict files, the offline Hugging Face cache, errors."""

from __future__ import annotations

import os
import re
import socket
import sys

import pytest

timm = pytest.importorskip("timm")

import torch  # noqa: E402
import yaml  # noqa: E402
from pydantic import ValidationError  # noqa: E402
from safetensors.torch import save_file  # noqa: E402

from xaiopt.cli import main  # noqa: E402
from xaiopt.config.schema import ModelConfig  # noqa: E402
from xaiopt.errors import ConfigError, UnknownNameError  # noqa: E402
from xaiopt.zoo import load_model  # noqa: E402
from xaiopt.zoo.timm_models import hf_hub_cache_dir  # noqa: E402

ARCH, TAG = "resnet10t", "c3_in1k"  # timm's smallest ResNet with pretrained weights (~5M parameters)


def source_state(num_classes: int = 3, seed: int = 123) -> dict[str, torch.Tensor]:
    """A state dict that no seeded random init of load_model reproduces."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = timm.create_model(ARCH, num_classes=num_classes)
    with torch.no_grad():  # the BN statistics too, so buffers are checked as well as parameters
        for name, buf in model.named_buffers():
            if buf.is_floating_point():
                buf.uniform_(0.5, 1.5)
    return {k: v.clone() for k, v in model.state_dict().items()}


def assert_state_equal(model: torch.nn.Module, state: dict[str, torch.Tensor], skip: tuple[str, ...] = ()) -> None:
    own = model.state_dict()
    assert set(own) == set(state)
    for key, value in state.items():
        if not key.startswith(skip):
            assert torch.equal(own[key], value), key


@pytest.fixture
def no_network(monkeypatch):
    def refuse(*args, **kwargs):
        raise AssertionError("a network connection was attempted")

    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(socket, "create_connection", refuse)


def fake_hub_cache(root, repo: str, state: dict[str, torch.Tensor], revision: str = "0123abcd" * 5) -> None:
    """The layout huggingface_hub writes: models--ORG--NAME/{refs/main, snapshots/<rev>/model.safetensors}."""
    repo_dir = root / f"models--{repo.replace('/', '--')}"
    snapshot = repo_dir / "snapshots" / revision
    snapshot.mkdir(parents=True)
    (repo_dir / "refs").mkdir()
    (repo_dir / "refs" / "main").write_text(revision)
    save_file(state, str(snapshot / "model.safetensors"))


def test_random_init_is_seeded_eval_and_takes_num_classes() -> None:
    a = load_model(f"timm:{ARCH}", num_classes=3)
    b = load_model(f"timm:{ARCH}", weights="random", num_classes=3)
    assert isinstance(a, timm.models.ResNet) and not a.training
    assert_state_equal(a, b.state_dict())
    with torch.no_grad():
        logits = a(torch.randn(2, 3, 32, 32))
    assert logits.shape == (2, 3) and torch.isfinite(logits).all()


@pytest.mark.parametrize("suffix", [".pth", ".safetensors"])
def test_a_state_dict_file_is_loaded_exactly(tmp_path, suffix) -> None:
    state = source_state()
    path = tmp_path / f"finetuned{suffix}"
    if suffix == ".safetensors":
        save_file(state, str(path))
    else:
        torch.save({"state_dict": state, "epoch": 7}, path)  # a training script's wrapper
    model = load_model(f"timm:{ARCH}", num_classes=3, weights=str(path))
    assert not model.training
    assert_state_equal(model, state)
    random = load_model(f"timm:{ARCH}", num_classes=3)
    assert not torch.equal(random.fc.weight, model.fc.weight)


def test_pretrained_comes_from_the_local_hub_cache_without_network(tmp_path, monkeypatch, no_network) -> None:
    state = source_state(num_classes=1000)
    fake_hub_cache(tmp_path / "hub", f"timm/{ARCH}.{TAG}", state)
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "hub"))
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    for name in (f"timm:{ARCH}", f"timm:{ARCH}.{TAG}"):  # the default tag, and the tag spelled out
        model = load_model(name, weights="pretrained")
        assert_state_equal(model, state)
        assert model.pretrained_cfg["tag"] == TAG
    assert "HF_HUB_OFFLINE" not in os.environ  # the offline switch is put back
    # another head size: the pretrained backbone and a fresh head, as timm fine-tunes
    small = load_model(f"timm:{ARCH}", weights="pretrained", num_classes=3)
    assert small.fc.weight.shape == (3, 512)
    assert torch.equal(small.conv1[0].weight, state["conv1.0.weight"])


def test_pretrained_not_on_disk_says_what_to_download_and_where(tmp_path, monkeypatch, no_network) -> None:
    monkeypatch.delenv("HF_HUB_CACHE", raising=False)
    monkeypatch.delenv("HUGGINGFACE_HUB_CACHE", raising=False)
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))
    assert hf_hub_cache_dir() == tmp_path / "hf" / "hub"
    with pytest.raises(ConfigError) as caught:
        load_model("timm:resnet18", weights="pretrained")
    message = str(caught.value)
    assert "\n" not in message
    assert "'timm/resnet18.a1_in1k'" in message  # the default tag's hub repo
    assert str(tmp_path / "hf" / "hub") in message
    assert "weights: /path/to/file.safetensors|.pth" in message


def test_unknown_names_and_tags_are_one_line_with_what_is_valid() -> None:
    with pytest.raises(UnknownNameError, match=r"'timm:resnet10x' is unknown.*close: .*timm:resnet10t"):
        load_model("timm:resnet10x")
    with pytest.raises(UnknownNameError, match=rf"no tag 'in22k'; valid: timm:{ARCH}\.{TAG}"):
        load_model(f"timm:{ARCH}.in22k")
    with pytest.raises(ConfigError, match=r"weights='DEFAULT' is invalid; valid: unset or 'random', 'pretrained'"):
        load_model(f"timm:{ARCH}", weights="DEFAULT")


def test_files_that_are_missing_unreadable_or_do_not_fit(tmp_path) -> None:
    missing = tmp_path / "nope.safetensors"
    with pytest.raises(ConfigError, match=re.escape(f"weights file '{missing}' does not exist")):
        load_model(f"timm:{ARCH}", weights=str(missing))

    garbage = tmp_path / "garbage.pth"
    garbage.write_bytes(b"not a checkpoint")
    with pytest.raises(ConfigError, match=re.escape(f"cannot read weights file '{garbage}'")):
        load_model(f"timm:{ARCH}", weights=str(garbage))

    other_head = tmp_path / "five.pth"
    torch.save(source_state(num_classes=5), other_head)
    with pytest.raises(ConfigError) as caught:
        load_model(f"timm:{ARCH}", num_classes=3, weights=str(other_head))
    message = str(caught.value)
    assert "\n" not in message and f"'{other_head}' does not fit" in message and "num_classes=3" in message
    assert "fc.weight is (5, 512) in the file, (3, 512) in the model" in message

    state = source_state()
    del state["conv1.0.weight"]
    state["extra.weight"] = torch.zeros(1)
    partial = tmp_path / "partial.safetensors"
    save_file(state, str(partial))
    with pytest.raises(ConfigError, match=r"missing in the file: conv1\.0\.weight; not in the model: extra\.weight"):
        load_model(f"timm:{ARCH}", num_classes=3, weights=str(partial))


def test_without_timm_the_error_says_how_to_install_it(monkeypatch) -> None:
    monkeypatch.setitem(sys.modules, "timm", None)  # import timm now raises ImportError
    with pytest.raises(ConfigError, match=r"^model 'timm:resnet18' needs timm: pip install 'xaiopt\[timm\]'$"):
        load_model("timm:resnet18")


def test_config_accepts_timm_names_with_tags() -> None:
    assert ModelConfig(name="timm:resnet50.a1_in1k", weights="pretrained").name == "timm:resnet50.a1_in1k"
    with pytest.raises(ValidationError, match=r"timm:NAME\[\.TAG\]"):
        ModelConfig(name="timm:resnet50.a1.in1k")


def test_cli_create_with_an_unknown_timm_model_is_one_line_exit_2(tmp_path, capsys, monkeypatch) -> None:
    monkeypatch.chdir(tmp_path)
    study = tmp_path / "t.yaml"
    study.write_text(yaml.safe_dump({
        "name": "t", "device": "cpu", "model": {"name": "timm:resnet18x", "num_classes": 4},
        "data": {"name": "benchmark", "n_samples": 4}, "metrics": ["sparseness"], "sampler": "random",
    }))
    code = main(["study", "create", str(study), "--storage", f"sqlite:///{tmp_path / 't.db'}"])
    out, err = capsys.readouterr()
    assert code == 2, (out, err)
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("xaiopt: error: ")
    assert "'timm:resnet18x' is unknown" in lines[0] and "timm:resnet18" in lines[0]
    assert not (tmp_path / "t.db").exists()
