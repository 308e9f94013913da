"""Heatmap PNGs: colours of known values, layout with the inputs above."""

import numpy as np
import torch
from PIL import Image

from xaiopt.objective.heatmaps import bwr, save_heatmap_grid


def test_bwr_colours():
    assert bwr(np.array([1.0])).tolist() == [[255, 0, 0]]
    assert bwr(np.array([-1.0])).tolist() == [[0, 0, 255]]
    assert bwr(np.array([0.0])).tolist() == [[255, 255, 255]]
    assert bwr(np.array([0.5])).tolist() == [[255, 128, 128]]


def test_grid_layout_and_per_map_scaling(tmp_path):
    a = torch.zeros(2, 1, 4, 5)
    a[0, 0, 0, 0] = 3.0      # map 0: its peak is red whatever its scale
    a[1, 0, 1, 1] = -0.01    # map 1: its (negative) peak is blue
    x = torch.full((2, 3, 4, 5), -1.0)
    low, high = torch.full((3,), -1.0), torch.full((3,), 1.0)
    path = save_heatmap_grid(a, tmp_path / "h.png", images=x, low=low, high=high, scale=1)
    img = np.asarray(Image.open(path))
    assert img.shape == (4 + 2 + 4, 5 * 2 + 2, 3)
    assert img[0, 0].tolist() == [0, 0, 0]            # the input at its lowest value is black
    assert img[6, 0].tolist() == [255, 0, 0]          # heatmap row starts after the 2-pixel gap
    assert img[7, 7 + 1].tolist() == [0, 0, 255]
    assert img[6, 1].tolist() == [255, 255, 255]
    assert img[6, 5].tolist() == [64, 64, 64]         # separator column


def _ink(region: np.ndarray) -> int:
    """Pixels of a white text band that carry ink (any channel below mid grey)."""
    return int((region.min(axis=-1) < 128).sum())


def test_title_and_labels_frame_the_unchanged_grid(tmp_path):
    from xaiopt.objective.heatmaps import LINE, PAD

    g = torch.Generator().manual_seed(0)
    a = torch.randn(3, 1, 8, 10, generator=g)
    x = torch.rand(3, 3, 8, 10, generator=g)
    low, high = torch.zeros(3), torch.ones(3)
    plain = np.asarray(Image.open(save_heatmap_grid(a, tmp_path / "p.png", images=x, low=low, high=high, scale=3)))
    # scale 3 of the 1x grid: every pixel a 3x3 block
    one = np.asarray(Image.open(save_heatmap_grid(a, tmp_path / "1.png", images=x, low=low, high=high, scale=1)))
    assert np.array_equal(plain, one.repeat(3, axis=0).repeat(3, axis=1))
    assert plain.shape == ((8 + 2 + 8) * 3, (3 * 10 + 2 * 2) * 3, 3)

    labels = ["label: circle", "label: plus", "pred: class 7"]
    path = save_heatmap_grid(a, tmp_path / "l.png", images=x, low=low, high=high, scale=3,
                             title="trial 3", labels=labels)
    img = np.asarray(Image.open(path))
    band = LINE + 2 * PAD  # one line of title above, one line of labels below
    assert img.shape == (band + plain.shape[0] + band, plain.shape[1], 3)
    assert np.array_equal(img[band:band + plain.shape[0]], plain)
    assert _ink(img[:band]) > 20
    # each tile's caption is under that tile (the separator columns stay blank)
    tile, gap = 10 * 3, 2 * 3
    below = img[band + plain.shape[0]:]
    for i in range(3):
        assert _ink(below[:, i * (tile + gap): i * (tile + gap) + tile]) > 10
    for i in range(2):
        assert _ink(below[:, i * (tile + gap) + tile: (i + 1) * (tile + gap)]) == 0
    assert not list(tmp_path.glob(".*.tmp"))  # written through a temporary file, nothing left behind


def test_a_long_title_wraps_to_the_image_width(tmp_path):
    from xaiopt.objective.heatmaps import LINE, PAD, _font

    a = torch.randn(2, 1, 16, 16)
    words = "canonize=yes first=zbox conv1=gamma(0.25) conv2=gamma(0.25) conv3=epsilon(0.01) classifier=epsilon(1e-06)"
    img = np.asarray(Image.open(save_heatmap_grid(a, tmp_path / "t.png", scale=3, title=f"trial 12: {words}")))
    width = (2 * 16 + 2) * 3
    assert img.shape[1] == width
    title = img.shape[0] - 16 * 3
    lines = (title - 2 * PAD) // LINE
    assert title == lines * LINE + 2 * PAD
    # as many lines as a greedy word wrap at that width needs, measured with the same font
    font, n, line = _font(), 1, ""
    for word in f"trial 12: {words}".split():
        trial = f"{line} {word}".strip()
        if font.getlength(trial) > width - 2 * PAD and line:
            n, line = n + 1, word
        else:
            line = trial
    assert lines == n >= 2
    for k in range(lines):  # every line carries text
        assert _ink(img[PAD + k * LINE: PAD + (k + 1) * LINE]) > 10


def test_target_labels_name_the_class_and_its_kind():
    from xaiopt.objective.heatmaps import target_labels

    names = ("circle", "square", "triangle", "plus")
    assert target_labels([0, 3], class_names=names) == ["label: circle", "label: plus"]
    assert target_labels([2], class_names=names, kind="predicted") == ["pred: triangle"]
    assert target_labels([5, 1]) == ["label: class 5", "label: class 1"]
    # a label the model gets wrong also names what the model predicts
    assert target_labels([0, 1], class_names=names, predicted=[0, 2]) == ["label: circle",
                                                                         "label: square, pred: triangle"]


def test_trial_uploads_a_labelled_png_and_a_repeat_carries_its_own_copy(tmp_path):
    import optuna
    from optuna.artifacts import FileSystemArtifactStore, download_artifact, get_all_artifact_meta

    from xaiopt.config import parse_config
    from xaiopt.objective import Objective
    from xaiopt.objective.attrs import heatmap_artifact
    from xaiopt.objective.heatmaps import LINE, PAD
    from xaiopt.space import ExplainerSpec

    cfg = parse_config({"name": "hm", "device": "cpu", "data": {"n_samples": 4}, "metrics": ["sparseness"],
                        "sampler": {"name": "random"}, "space": {"layer_groups": 2}, "runtime": {"heatmaps": 2}})
    store = FileSystemArtifactStore(str(tmp_path / "art"))
    (tmp_path / "art").mkdir()
    objective = Objective(cfg, device=torch.device("cpu"), artifact_store=store)
    study = optuna.create_study(storage=f"sqlite:///{tmp_path / 'h.db'}", directions=["maximize"])
    study.enqueue_trial({}, user_attrs={"baseline": "epsilon_plus:plain"})
    study.optimize(objective, n_trials=1)
    first = study.trials[0]
    study.enqueue_trial(first.params)
    study.optimize(objective, n_trials=1)
    first, repeat = study.trials
    assert repeat.user_attrs["duplicate_of"] == 0 and repeat.values == first.values

    metas = {t.number: get_all_artifact_meta(t, storage=study._storage) for t in (first, repeat)}
    assert [len(m) for m in metas.values()] == [1, 1]
    assert {m[0].mimetype for m in metas.values()} == {"image/png"}
    assert heatmap_artifact(first) == metas[0][0].artifact_id
    assert heatmap_artifact(repeat) == metas[1][0].artifact_id != metas[0][0].artifact_id
    files = {}
    for n, m in metas.items():
        download_artifact(artifact_store=store, file_path=str(tmp_path / f"{n}.png"), artifact_id=m[0].artifact_id)
        files[n] = (tmp_path / f"{n}.png").read_bytes()
    assert files[0] == files[1]  # the repeat shows its original's image

    img = np.asarray(Image.open(tmp_path / "0.png"))
    # the grid in the middle is the unlabelled grid of the same attributions, recomputed
    _, _, attributions = objective.evaluate(ExplainerSpec.from_dict(first.system_attrs["xaiopt:explainer"]))
    bench = objective.bench
    plain = np.asarray(Image.open(save_heatmap_grid(attributions[:2], tmp_path / "p.png", images=bench.x[:2],
                                                    low=bench.low, high=bench.high)))
    assert img.shape[1] == plain.shape[1] == (2 * 64 + 2) * 3
    label_band = LINE + 2 * PAD
    title = img.shape[0] - plain.shape[0] - label_band
    assert title >= LINE + 2 * PAD and (title - 2 * PAD) % LINE == 0
    assert np.array_equal(img[title:title + plain.shape[0]], plain)
    assert _ink(img[:title]) > 50 and _ink(img[-label_band:]) > 20
    assert objective.heatmap_captions(2) == [f"label: {bench.class_names[int(c)]}" if int(c) == int(p) else
                                             f"label: {bench.class_names[int(c)]}, pred: {bench.class_names[int(p)]}"
                                             for c, p in zip(bench.y[:2], bench.logits[:2].argmax(1))]
