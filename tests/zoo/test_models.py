from __future__ import annotations

import pytest
import torch
from torch import nn
from torchvision.models.resnet import BasicBlock

from xaiopt.errors import ConfigError, UnknownNameError
from xaiopt.zoo import load_dataset, load_model
from xaiopt.zoo.cache import read_sidecar
from xaiopt.zoo.training import TrainingRecipe, evaluate_accuracy, train_benchmark_model


@pytest.mark.parametrize("architecture", ["vgg", "resnet", "densenet"])
def test_benchmark_models_map_a_batch_to_four_logits(architecture: str) -> None:
    model = load_model(f"benchmark:{architecture}", weights="random")
    assert not model.training
    assert any(isinstance(m, nn.BatchNorm2d) for m in model.modules())
    with torch.no_grad():
        logits = model(torch.randn(5, 3, 64, 64))
    assert logits.shape == (5, 4)
    assert torch.isfinite(logits).all()


def test_layer_names_follow_torchvision() -> None:
    vgg = load_model("benchmark:vgg", weights="random")
    assert isinstance(vgg.features, nn.Sequential) and isinstance(vgg.classifier, nn.Sequential)
    assert isinstance(vgg.classifier[-1], nn.Linear) and vgg.classifier[-1].out_features == 4
    resnet = load_model("benchmark:resnet", weights="random")
    blocks = [m for m in resnet.modules() if isinstance(m, BasicBlock)]
    assert len(blocks) == 3 and blocks[1].downsample is not None  # zennit's ResNetCanonizer applies
    densenet = load_model("benchmark:densenet", weights="random")
    names = dict(densenet.named_modules())
    expected = ["features.conv0", "features.denseblock1.denselayer1.norm1", "features.transition1.conv"]
    for name in [*expected, "features.norm5", "classifier"]:
        assert name in names


def test_random_weights_are_seeded_and_leave_the_global_rng_alone() -> None:
    state = torch.random.get_rng_state()
    a = load_model("benchmark:vgg", weights="random")
    b = load_model("benchmark:vgg", weights="random")
    assert torch.equal(torch.random.get_rng_state(), state)
    for (name, pa), (_, pb) in zip(a.state_dict().items(), b.state_dict().items()):
        assert torch.equal(pa, pb), name


def test_trained_vgg_reaches_95_percent_on_held_out_test_data(trained_vgg: nn.Module, zoo_cache_dir) -> None:
    sidecar = read_sidecar("vgg", cache_dir=zoo_cache_dir)
    assert sidecar is not None and sidecar["test_accuracy"] >= 0.95
    assert not trained_vgg.training
    # Independent of the recorded number: a fresh evaluation on other test seeds.
    assert evaluate_accuracy(trained_vgg, n=512, seed=7) >= 0.95
    data = load_dataset("benchmark", n=64, seed=0)
    with torch.no_grad():
        assert (trained_vgg(data.x).argmax(dim=1) == data.y).float().mean() >= 0.95


def test_training_is_deterministic() -> None:
    recipe = TrainingRecipe(steps=6, eval_samples=32)
    first, result = train_benchmark_model("vgg", recipe=recipe)
    second, _ = train_benchmark_model("vgg", recipe=recipe)
    assert 0.0 <= result.test_accuracy <= 1.0
    for (name, a), (_, b) in zip(first.state_dict().items(), second.state_dict().items()):
        assert torch.equal(a, b), name


def test_recipe_key_changes_with_the_recipe_and_architecture() -> None:
    base = TrainingRecipe()
    assert base.key("vgg") == TrainingRecipe().key("vgg")
    assert base.key("vgg") != TrainingRecipe(steps=301).key("vgg")
    assert base.key("vgg") != base.key("resnet")


def test_torchvision_models_load_with_random_weights() -> None:
    model = load_model("torchvision:resnet18", num_classes=3)
    assert not model.training
    with torch.no_grad():
        assert model(torch.zeros(1, 3, 64, 64)).shape == (1, 3)


def test_torchvision_random_weights_are_the_same_in_every_process() -> None:
    # several workers of one study each load the model: they must get the same function
    torch.manual_seed(123)
    before = torch.random.get_rng_state()
    a = load_model("torchvision:resnet18", num_classes=3)
    torch.manual_seed(999)
    b = load_model("torchvision:resnet18", num_classes=3)
    for (name, pa), pb in zip(a.state_dict().items(), b.state_dict().values()):
        assert torch.equal(pa, pb), name
    torch.manual_seed(123)
    load_model("torchvision:resnet18", num_classes=3)
    assert torch.equal(torch.random.get_rng_state(), before)


def test_module_callables_are_imported_and_called() -> None:
    model = load_model("module:xaiopt.zoo.benchmark_models:BenchmarkVGG", num_classes=3)
    assert not model.training
    with torch.no_grad():
        assert model(torch.zeros(2, 3, 64, 64)).shape == (2, 3)


@pytest.mark.parametrize(
    ("name", "error", "fragment"),
    [
        ("benchmark:alexnet", UnknownNameError, "benchmark:vgg, benchmark:resnet, benchmark:densenet"),
        ("resnet18", UnknownNameError, "torchvision:<name>"),
        ("hub:resnet18", UnknownNameError, "module:<pkg.mod>:<callable>"),
        ("torchvision:resnet19", UnknownNameError, "resnet18"),
        ("module:no_such_pkg_xyz:build", ConfigError, "no_such_pkg_xyz"),
        ("module:torch.nn:NoSuchLayer", ConfigError, "NoSuchLayer"),
        ("module:torch", UnknownNameError, "module:<pkg.mod>:<callable>"),
        ("module:builtins:dict", ConfigError, "not a torch.nn.Module"),
        ("module:torch:zeros", ConfigError, "zeros"),
    ],
)
def test_bad_model_names_raise_one_clear_line(name: str, error: type[Exception], fragment: str) -> None:
    with pytest.raises(error) as info:
        load_model(name)
    message = str(info.value)
    assert "\n" not in message and fragment in message


def test_bad_benchmark_options_raise_config_errors() -> None:
    with pytest.raises(ConfigError, match="num_classes=10"):
        load_model("benchmark:vgg", num_classes=10)
    with pytest.raises(ConfigError, match="'imagenet'"):
        load_model("benchmark:vgg", weights="imagenet")


def test_torchvision_weights_not_on_disk_are_one_line_naming_url_and_path(tmp_path, monkeypatch) -> None:
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    with pytest.raises(ConfigError) as error:
        load_model("torchvision:resnet18", weights="DEFAULT")
    message = str(error.value)
    assert "\n" not in message and "ResNet18_Weights.IMAGENET1K_V1 are not on disk" in message
    assert "https://download.pytorch.org/models/resnet18-f37072fd.pth" in message
    assert str(tmp_path / "torch" / "hub" / "checkpoints" / "resnet18-f37072fd.pth") in message


def test_torchvision_weights_unknown_or_corrupt_are_one_line(tmp_path, monkeypatch) -> None:
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    with pytest.raises(ConfigError, match="weights='IMAGENET9K' is unknown; valid: DEFAULT, IMAGENET1K_V1"):
        load_model("torchvision:resnet18", weights="IMAGENET9K")
    file = tmp_path / "torch" / "hub" / "checkpoints" / "resnet18-f37072fd.pth"
    file.parent.mkdir(parents=True)
    torch.save({"fc.weight": torch.zeros(2, 2)}, file)  # not the published file: its hash differs
    with pytest.raises(ConfigError, match="cannot be loaded .*download it again"):
        load_model("torchvision:resnet18", weights="ResNet18_Weights.IMAGENET1K_V1")
