"""The report of a real small study, opened in headless Chromium: every figure drawn, every image
loaded, no console error, no request leaving the machine; the gallery's attributions are the trial's."""

from __future__ import annotations

import contextlib
import shutil
from pathlib import Path

import pytest
import torch
import yaml

from xaiopt.analysis import recommend
from xaiopt.config import parse_config
from xaiopt.objective import Objective
from xaiopt.objective.attrs import spec_dict
from xaiopt.report import write_report
from xaiopt.report.gallery import gallery_rows
from xaiopt.space import ExplainerSpec
from xaiopt.study import create_study, load_study, optimize
from xaiopt.study.attribute import attribute_settings
from xaiopt.study.pareto import distinct_complete, front_trials

from .conftest import build

CHROMIUM = shutil.which("chromium") or ("/usr/bin/chromium" if Path("/usr/bin/chromium").exists() else None)
FLAGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking",
         "--disable-component-update", "--disable-sync"]

CFG = {
    "name": "small",
    "device": "cpu",
    "seed": 0,
    "data": {"n_samples": 4},
    "space": {"layer_groups": 2, "rules": ["zplus", "epsilon", "gamma"], "gamma": [0.25, 1.0],
              "epsilon": [1e-6, 0.1], "first_layer": ["zbox", "flat"], "canonize": [True, False]},
    "metrics": ["sparseness", "relevance_rank_accuracy", "relevance_mass_accuracy"],
    "sampler": {"name": "random"},
    "runtime": {"heatmaps": 0},
    "baselines": ["epsilon_plus_flat"],
}


@pytest.fixture(scope="module")
def small(tmp_path_factory):
    """Two baselines (canonized and plain: one canonization pair) and three searched trials."""
    storage = f"sqlite:///{tmp_path_factory.mktemp('small') / 's.db'}"
    create_study(parse_config(CFG), storage=storage)
    optimize("small", storage=storage, n_trials=5, device="cpu")
    return load_study("small", storage=storage)


@contextlib.contextmanager
def _chromium_page():
    """A page of headless Chromium and the list of the dialogs (alert, confirm) it opened."""
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, headless=True, args=FLAGS)
        try:
            page = browser.new_page(viewport={"width": 1400, "height": 900})
            dialogs: list[str] = []
            page.on("dialog", lambda d: (dialogs.append(d.message), d.dismiss()))
            yield page, dialogs
        finally:
            browser.close()


def _render(page, path: Path) -> dict:
    problems: list[str] = []
    page.on("console", lambda m: problems.append(f"console {m.type}: {m.text}") if m.type == "error" else None)
    page.on("pageerror", lambda e: problems.append(f"page error: {e}"))
    page.on("requestfailed", lambda r: problems.append(f"request failed: {r.url[:100]}"))
    outside: list[str] = []

    def route(r):
        if r.request.url.startswith(("file:", "data:")):
            r.continue_()
        else:
            outside.append(r.request.url)
            r.abort()

    page.route("**/*", route)
    page.goto(path.as_uri())
    page.wait_for_function("Array.from(document.querySelectorAll('.figure .plotly-graph-div')).every("
                           "d => d.querySelector('.main-svg'))", timeout=20_000)
    page.wait_for_timeout(300)
    return {
        "problems": problems, "outside": outside,
        "figures": page.evaluate("Array.from(document.querySelectorAll('.figure .plotly-graph-div')).map("
                                 "d => [d.closest('.figure').dataset.figure, d.querySelectorAll('.main-svg').length])"),
        "images": page.evaluate("Array.from(document.images).map(i => i.complete && i.naturalWidth > 0)"),
        "text": page.inner_text("body"),
    }


@pytest.mark.skipif(CHROMIUM is None, reason="no Chromium at /usr/bin/chromium (apt-get install chromium)")
def test_report_renders_in_a_browser(small, url, tmp_path):
    from playwright.sync_api import sync_playwright

    rec = recommend(small)
    index = write_report(small, tmp_path / "small", images=2, device="cpu")
    # a constructed study with four metrics: the scatter-matrix layout, and no gallery
    rows = [dict(values=[0.2, 3.0, 0.5, 0.9]), dict(values=[0.8, 1.0, 0.4, 0.8]), dict(values=[0.5, 2.0, 0.6, 0.7])]
    four = write_report(build(url, ["sparseness", "avg_sensitivity", "relevance_mass_accuracy", "random_logit"],
                              rows), tmp_path / "four", images=0)
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, headless=True, args=FLAGS)
        try:
            got = _render(browser.new_page(viewport={"width": 1400, "height": 900}), index)
            got4 = _render(browser.new_page(viewport={"width": 1400, "height": 900}), four)
        finally:
            browser.close()
    for g in (got, got4):
        assert g["problems"] == [] and g["outside"] == []
        assert g["figures"] and all(n > 0 for _, n in g["figures"]), g["figures"]
    names = [n for n, _ in got["figures"]]
    assert names == ["pareto", "parallel", "radar", "hypervolume", "canonization", "timing"]  # importance: too few
    assert "parameter importance needs at least 10" in got["text"]
    # gallery: 2 inputs + 2 per setting (recommended, compromise when another, each baseline once)
    rows = gallery_rows(small, rec)
    baselines = {t.user_attrs["baseline"] for t in small.study.trials if "baseline" in t.user_attrs}
    assert {n for _, n in rows} >= {rec.best.number, rec.compromise.number}
    assert all(any(b in label for label, _ in rows) for b in baselines - {rec.best.baseline})
    assert len(got["images"]) == 2 + 2 * len(rows) and all(got["images"])
    assert f"Recommended: trial {rec.best.number}" in got["text"]
    assert f"{len(distinct_complete(small))} distinct settings" in got["text"]
    assert f"{len(front_trials(small))} Pareto-optimal" in got["text"]
    assert "pareto" in [n for n, _ in got4["figures"]] and not got4["images"]


def test_gallery_attributions_are_the_trials(small):
    rec = recommend(small)
    trial = next(t for t in small.study.trials if t.number == rec.best.number)
    got = attribute_settings(small, [spec_dict(trial)], 3, device="cpu")
    objective = Objective(small.config, device=torch.device("cpu"))
    _, _, full = objective.evaluate_per_sample(ExplainerSpec.from_dict(spec_dict(trial)))
    assert got.attributions[0].shape == (3, 1, *full.shape[2:])
    torch.testing.assert_close(got.attributions[0], full[:3], rtol=1e-5, atol=1e-6)
    bench = objective.bench
    assert torch.equal(got.targets, bench.y[:3].cpu())
    assert got.target_names == tuple(bench.class_names[int(c)] for c in bench.y[:3])
    assert got.masks is not None and got.masks.shape == (3, 1, *full.shape[2:])


XSS = "<img src=x onerror=alert(1)>"


@pytest.mark.skipif(CHROMIUM is None, reason="no Chromium at /usr/bin/chromium (apt-get install chromium)")
def test_user_strings_render_as_text_never_as_markup(url, tmp_path):

    rows = [dict(values=[0.2, 0.5], baseline=f"{XSS}:canonized"), dict(values=[0.8, 0.4]), dict(values=[0.5, 0.6])]
    index = write_report(build(url, ["sparseness", "relevance_mass_accuracy"], rows, name=XSS), tmp_path / "xss",
                         images=0, dashboard=False)
    html_text = index.read_text()
    assert XSS not in html_text  # escaped wherever the page or a figure shows it
    with _chromium_page() as (page, dialogs):
        got = _render(page, index)
        injected = page.evaluate("document.querySelectorAll('img[src=\"x\"]').length")
    assert dialogs == [] and injected == 0 and got["problems"] == []
    assert f"study {XSS}" in got["text"]  # shown as the text it is


# what a user can name: the study, the image folder's path and its classes, a plugin metric
HOSTILE = {
    "study": "<img src=x onerror=alert('study')>",
    "folder": "<img src=x onerror=alert('path')>",
    "class_a": "<img src=x onerror=alert('class')>",
    "class_b": "\"'><svg onload=alert('class2')>",
    "metric": "<svg onload=alert('metric')>",
}


@pytest.fixture
def hostile_metric():
    from xaiopt.metrics import register_metric, registry

    @register_metric(HOSTILE["metric"], category="complexity", direction="minimize", passes="none")
    def l1(ctx):
        return ctx.attributions.abs().flatten(1).sum(1)

    yield HOSTILE["metric"]
    registry._REGISTRY.pop(HOSTILE["metric"], None)  # later tests list this process's metric names


@pytest.mark.skipif(CHROMIUM is None, reason="no Chromium at /usr/bin/chromium (apt-get install chromium)")
def test_a_real_study_of_hostile_names_renders_them_as_text(tmp_path, hostile_metric):
    """A real study (trials run, gallery attributions computed) on an image folder whose path and
    class names, study name and plugin metric name are markup: the page shows each as text."""
    import numpy as np
    from PIL import Image

    data = tmp_path / HOSTILE["folder"] / "data"
    rng = np.random.default_rng(0)
    for c in (HOSTILE["class_a"], HOSTILE["class_b"]):
        (data / c).mkdir(parents=True)
        for i in range(2):
            Image.fromarray(rng.integers(0, 255, (32, 32, 3), dtype=np.uint8)).save(data / c / f"{i}.png")
    cfg = {"name": HOSTILE["study"], "device": "cpu", "seed": 0,
           "model": {"name": "torchvision:resnet18", "num_classes": 2},
           "data": {"name": f"imagefolder:{data}", "n_samples": 4, "image_size": 32},
           "space": {"layer_groups": 1, "rules": ["epsilon", "zplus"], "epsilon": [0.1], "first_layer": ["zbox"],
                     "canonize": [True, False]},
           "metrics": ["sparseness", hostile_metric], "sampler": {"name": "random"},
           "runtime": {"heatmaps": 0}, "baselines": []}
    storage = f"sqlite:///{tmp_path / 'h.db'}"
    create_study(parse_config(cfg), storage=storage)
    optimize(HOSTILE["study"], storage=storage, n_trials=3, device="cpu")
    loaded = load_study(HOSTILE["study"], storage=storage)
    index = write_report(loaded, tmp_path / "out", images=4, device="cpu", dashboard=False)
    html_text = index.read_text()
    for what, s in HOSTILE.items():
        assert s not in html_text, what  # escaped wherever the page or a figure shows it
    with _chromium_page() as (page, dialogs):
        got = _render(page, index)
        injected = page.evaluate("document.querySelectorAll('img[src=\"x\"], svg[onload]').length")
        configs = page.evaluate("Array.from(document.querySelectorAll('pre')).map(e => e.textContent)")
    assert dialogs == [] and injected == 0 and got["problems"] == [] and got["outside"] == []
    assert got["images"] and all(got["images"])  # the gallery was drawn
    text = got["text"]
    assert f"study {HOSTILE['study']}" in text
    for what in ("class_a", "class_b"):
        assert f"class {HOSTILE[what]}" in text, what  # the gallery's column headers
    assert HOSTILE["metric"] in text  # the recommendation's and the profile's metric columns
    # the study's config as text: parsed back, it names the folder, markup and all
    shown = [yaml.safe_load(c) for c in configs if "imagefolder:" in c]
    assert [c["data"]["name"] for c in shown] == [f"imagefolder:{data}"]


@pytest.mark.skipif(CHROMIUM is None, reason="no Chromium at /usr/bin/chromium (apt-get install chromium)")
def test_hostile_names_in_optuna_dashboard_render_as_text(tmp_path, hostile_metric):
    """The recommendation xaiopt writes into the study's optuna-dashboard note, the Pareto graph it
    publishes and the dashboard's own pages (served by `xaiopt dashboard`) show markup as text."""
    import json
    import os
    import socket
    import subprocess
    import sys
    import time
    import urllib.request

    from xaiopt.report.dashboard import publish

    url = f"sqlite:///{tmp_path / 'd.db'}"
    rows = [dict(values=[0.2, 5.0], baseline=f"{HOSTILE['class_a']}:canonized"), dict(values=[0.8, 4.0]),
            dict(values=[0.5, 6.0])]
    loaded = build(url, ["sparseness", hostile_metric], rows, name=HOSTILE["study"])
    publish(loaded)
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    log = tmp_path / "dashboard.log"
    proc = subprocess.Popen([sys.executable, "-m", "xaiopt", "dashboard", "--storage", url, "--port", str(port)],
                            stdout=log.open("w"), stderr=subprocess.STDOUT, env={**os.environ, "PYTHONUNBUFFERED": "1"})
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                with urllib.request.urlopen(f"{base}/api/studies", timeout=5) as r:
                    sid = json.loads(r.read())["study_summaries"][0]["study_id"]
                break
            except OSError:
                assert proc.poll() is None and time.monotonic() < deadline, log.read_text()
                time.sleep(0.3)
        seen: dict[str, str] = {}
        with _chromium_page() as (page, dialogs):
            for view in ("", "/trials", "/analytics", "/note"):
                page.goto(f"{base}/dashboard/studies/{sid}{view}")
                page.wait_for_function(f"document.body.innerText.includes({json.dumps(HOSTILE['study'])})",
                                       timeout=20_000)
                page.wait_for_timeout(500)
                injected = page.evaluate("document.querySelectorAll('img[src=\"x\"], svg[onload]').length")
                assert injected == 0, view
                seen[view] = page.inner_text("body")
    finally:
        proc.terminate()
        proc.wait(timeout=30)
    assert dialogs == []
    note = seen["/note"]  # the note xaiopt wrote, as text: the study, the metric, the baseline
    assert f"xaiopt recommendation for {HOSTILE['study']}" in note
    assert HOSTILE["metric"] in note and HOSTILE["class_a"] in note
