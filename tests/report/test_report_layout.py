"""The report's layout in headless Chromium, at the image sizes users have: 64-px benchmark images
(with object masks) and 224-px photos from an image folder (no masks), each at a desktop and at a
narrow viewport. The page is never wider than the viewport (what is wider scrolls inside its own
box), every gallery image can be seen, the charts fit without scrolling sideways, a bar of height 0
says "0", the gallery's caption speaks of masks only when the data has them, and the Pareto graph
xaiopt publishes to optuna-dashboard fits its card. Screenshots land in the test's tmp dir."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import numpy as np
import pytest

from xaiopt.config import parse_config
from xaiopt.report import canonization_figure, write_report
from xaiopt.report.dashboard import PARETO_GRAPH_ID, publish
from xaiopt.study import create_study, load_study, optimize

from .conftest import build, spec
from .test_report_browser import CFG, CHROMIUM, FLAGS, _render

needs_chromium = pytest.mark.skipif(CHROMIUM is None,
                                    reason="no Chromium at /usr/bin/chromium (apt-get install chromium)")

DESKTOP, NARROW = 1400, 600
IMAGES = 4

# What "wider than the page" means here. An element whose nearest ancestor with overflow-x other than
# `visible` is none must lie within the viewport (it would widen the page); an element inside such a
# box may be wider than the viewport, because the box clips it and scrolls (that box itself is held to
# the rule like any other element). plotly's text-measuring SVG (#js-plotly-tester) sits far off-screen
# on purpose and widens nothing.
_LAYOUT = """() => {
  const vw = document.documentElement.clientWidth;
  const name = el => el.tagName.toLowerCase() + (el.id ? '#' + el.id : '') +
    (typeof el.className === 'string' && el.className.trim() ? '.' + el.className.trim().split(/\\s+/).join('.') : '');
  const boxed = el => {
    for (let a = el.parentElement; a && a !== document.documentElement; a = a.parentElement) {
      if (getComputedStyle(a).overflowX !== 'visible') return true;
    }
    return false;
  };
  const wide = [];
  for (const el of document.body.querySelectorAll('*')) {
    if (el.closest('#js-plotly-tester')) continue;
    const r = el.getBoundingClientRect();
    if (r.width === 0 || boxed(el)) continue;
    if (r.right > vw + 0.5 || r.left < -0.5) wide.push(`${name(el)} ${Math.round(r.left)}..${Math.round(r.right)}`);
  }
  const figures = Array.from(document.querySelectorAll('.figure')).map(
    f => [f.dataset.figure, f.scrollWidth, f.clientWidth]);
  return {viewport: vw, inner: window.innerWidth, scrollWidth: document.documentElement.scrollWidth, wide, figures};
}"""

# Every gallery image, brought into view the way a reader would (scrolling the gallery's own box,
# then the page), must be the element actually shown at its centre (not clipped, not under the
# sticky label column) and lie inside the box.
_GALLERY = """() => {
  const box = document.querySelector('#gallery .gallery-box');
  const out = {box: [box.clientWidth, box.scrollWidth], images: []};
  for (const img of box.querySelectorAll('img')) {
    img.scrollIntoView({block: 'center', inline: 'nearest'});
    const r = img.getBoundingClientRect(), b = box.getBoundingClientRect();
    const hit = document.elementFromPoint(r.left + r.width / 2, r.top + r.height / 2);
    out.images.push({alt: img.alt, shown: hit === img, inside: r.left >= b.left - 0.5 && r.right <= b.right + 0.5,
                     width: r.width, natural: img.naturalWidth, loaded: img.complete && img.naturalWidth > 0});
  }
  box.scrollLeft = 0;
  return out;
}"""


def _open(browser, index: Path, width: int, shot: Path) -> dict:
    page = browser.new_page(viewport={"width": width, "height": 900})
    try:
        got = _render(page, index)
        got["layout"] = page.evaluate(_LAYOUT)
        got["caption"] = page.inner_text("#gallery") if page.query_selector("#gallery") else None
        got["gallery"] = page.evaluate(_GALLERY) if got["caption"] is not None else None
        got["zeros"] = page.evaluate("Array.from(document.querySelectorAll("
                                     "'[data-figure=canonization] .bartext')).map(t => t.textContent)")
        page.evaluate("window.scrollTo(0, 0)")
        page.screenshot(path=str(shot), full_page=True)
        return got
    finally:
        page.close()


def _check_layout(got: dict, width: int) -> None:
    assert got["problems"] == [] and got["outside"] == []
    assert got["figures"] and all(n > 0 for _, n in got["figures"]), got["figures"]
    assert got["images"] and all(got["images"])
    lay = got["layout"]
    assert lay["scrollWidth"] <= lay["inner"] and lay["viewport"] <= width, lay
    assert lay["wide"] == [], lay["wide"]
    if width >= DESKTOP:  # a desktop shows every chart whole, no sideways scrolling
        assert all(sw <= cw + 1 for _, sw, cw in lay["figures"]), lay["figures"]
    g = got["gallery"]
    assert len(g["images"]) == IMAGES * (1 + len(got["rows"]))
    bad = [i for i in g["images"] if not (i["shown"] and i["inside"] and i["loaded"])]
    assert bad == [], bad
    # scaled to the page, never enlarged past the tile, never squeezed below 96 px
    assert all(95 <= i["width"] <= i["natural"] + 0.5 for i in g["images"]), [i["width"] for i in g["images"]]


def _study_64(tmp: Path):
    cfg = {**CFG, "name": "layout64", "data": {"n_samples": IMAGES}}
    storage = f"sqlite:///{tmp / 's64.db'}"
    create_study(parse_config(cfg), storage=storage)
    optimize("layout64", storage=storage, n_trials=3, device="cpu")
    return load_study("layout64", storage=storage)


def _study_224(tmp: Path):
    """An image folder of 224-px photos of two of the benchmark's classes, no masks folder, explained
    with the benchmark's VGG (its global pooling takes any image size)."""
    from PIL import Image, ImageDraw

    data = tmp / "photos"
    rng = np.random.default_rng(0)
    for cls in ("circle", "square"):
        (data / cls).mkdir(parents=True)
        for i in range(2):
            img = Image.fromarray(rng.integers(40, 120, (224, 224, 3), dtype=np.uint8))
            x, y = (int(v) for v in rng.integers(30, 120, 2))
            box = (x, y, x + 80, y + 80)
            draw = ImageDraw.Draw(img)
            draw.ellipse(box, fill=(240, 180, 180)) if cls == "circle" else draw.rectangle(box, fill=(150, 210, 220))
            img.save(data / cls / f"{i}.png")
    cfg = {**CFG, "name": "layout224", "model": {"name": "benchmark:vgg"},
           "data": {"name": f"imagefolder:{data}", "n_samples": IMAGES, "image_size": 224,
                    "classes": ["circle", "square", "triangle", "plus"]},
           "metrics": ["sparseness", "complexity"]}
    storage = f"sqlite:///{tmp / 's224.db'}"
    create_study(parse_config(cfg), storage=storage)
    optimize("layout224", storage=storage, n_trials=3, device="cpu")
    return load_study("layout224", storage=storage)


@needs_chromium
def test_report_fits_the_page_at_64_and_224_px(tmp_path):
    from playwright.sync_api import sync_playwright

    from xaiopt.analysis import recommend
    from xaiopt.report.gallery import gallery_rows

    reports = {}
    for px, make in ((64, _study_64), (224, _study_224)):
        loaded = make(tmp_path)
        rows = gallery_rows(loaded, recommend(loaded))
        reports[px] = (write_report(loaded, tmp_path / f"report{px}", images=IMAGES, device="cpu", dashboard=False),
                       rows)
    seen = {}
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, headless=True, args=FLAGS)
        try:
            for px, (index, rows) in reports.items():
                for width in (DESKTOP, NARROW):
                    got = _open(browser, index, width, tmp_path / f"report{px}-{width}.png")
                    got["rows"] = rows
                    seen[px, width] = got
        finally:
            browser.close()
    for (_, width), got in seen.items():
        _check_layout(got, width)
    # a desktop fits four 224-px images beside the labels; a narrow window first scales them down,
    # then scrolls the gallery inside its box (the page itself stays put, checked above)
    desk, narrow = seen[224, DESKTOP]["gallery"], seen[224, NARROW]["gallery"]
    assert desk["box"][1] <= desk["box"][0], desk["box"]
    assert narrow["box"][1] > narrow["box"][0] and all(i["width"] < i["natural"] for i in narrow["images"]), \
        narrow["box"]
    assert {i["natural"] for i in desk["images"]} == {224} and {i["natural"] for i in seen[64, DESKTOP]["gallery"][
        "images"]} == {192}  # 224 px kept as is, 64 px enlarged 3x
    # the caption follows the data: masks outlined for the benchmark, not a word of masks for photos
    assert "outlined in green" in seen[64, DESKTOP]["caption"]
    assert "mask" not in seen[224, DESKTOP]["caption"].lower()
    assert all(p.stat().st_size > 10_000 for p in tmp_path.glob("report*-*.png"))


def test_a_zero_bar_says_zero(url):
    """A setting that is the study's worst on a metric has a bar of height 0: it carries "0"."""
    rows = [dict(values=[0.2, 3.0], spec=spec(True, "gamma")), dict(values=[0.5, 2.0], spec=spec(False, "gamma")),
            dict(values=[0.9, 1.0], spec=spec(True, "zplus"))]
    fig = canonization_figure(build(url, ["sparseness", "avg_sensitivity"], rows))
    canon, plain = fig.data
    assert list(canon.y) == [0.0, 0.0] and list(canon.text) == ["0", "0"]  # trial 0: worst on both
    assert list(plain.y) == pytest.approx([3 / 7, 0.5]) and list(plain.text) == ["", ""]


@needs_chromium
def test_zero_bars_are_drawn_and_the_chart_fits(url, tmp_path):
    from playwright.sync_api import sync_playwright

    # three canonization pairs (canonized, plain) of the same rule
    values = [[0.2, 3.0, 0.5], [0.5, 2.0, 0.1], [0.9, 1.0, 0.9], [0.3, 1.5, 0.4], [0.6, 2.5, 0.6], [0.4, 2.2, 0.7]]
    rows = [dict(values=v, spec=spec(k % 2 == 0, ("gamma", "zplus", "rule4")[k // 2])) for k, v in enumerate(values)]
    loaded = build(url, ["sparseness", "avg_sensitivity", "relevance_mass_accuracy"], rows)
    index = write_report(loaded, tmp_path / "zeros", images=0, dashboard=False)
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, headless=True, args=FLAGS)
        try:
            page = browser.new_page(viewport={"width": DESKTOP, "height": 900})
            got = _render(page, index)
            layout = page.evaluate(_LAYOUT)
            texts = page.evaluate("Array.from(document.querySelectorAll('[data-figure=canonization] .bartext'))"
                                  ".map(t => t.textContent)")
            page.query_selector("#canonization").screenshot(path=str(tmp_path / "canonization.png"))
        finally:
            browser.close()
    assert got["problems"] == [] and layout["wide"] == [] and layout["scrollWidth"] <= layout["inner"]
    assert texts.count("0") == 3  # trial 0 on sparseness and on avg_sensitivity, trial 1 on mass accuracy
    canon = dict((n, (sw, cw)) for n, sw, cw in layout["figures"])["canonization"]
    assert canon[0] <= canon[1] + 1, canon  # three pairs in a row, no sideways scrolling


@needs_chromium
def test_dashboard_pareto_graph_fits_its_card(tmp_path):
    """optuna-dashboard draws a published graph in a half-width card 450 px high on the study's
    History page: xaiopt's figure (2-D, 3-D, scatter matrix) fits it, legend and all; the note, on
    the Note page, says where the graph is."""
    from playwright.sync_api import sync_playwright

    url = f"sqlite:///{tmp_path / 'd.db'}"
    rows = [dict(values=[0.2, 3.0, 0.5, 0.9], baseline="epsilon_plus_flat:canonized"),
            dict(values=[0.8, 1.0, 0.4, 0.8]), dict(values=[0.5, 2.0, 0.6, 0.7]), dict(values=[0.6, 2.5, 0.3, 0.95])]
    metrics = ["sparseness", "avg_sensitivity", "relevance_mass_accuracy", "random_logit"]
    for k in (2, 3, 4):
        publish(build(url, metrics[:k], [dict(r, values=r["values"][:k]) for r in rows], name=f"m{k}"))
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    log = tmp_path / "dashboard.log"
    proc = subprocess.Popen([sys.executable, "-m", "xaiopt", "dashboard", "--storage", url, "--port", str(port)],
                            stdout=log.open("w"), stderr=subprocess.STDOUT, env={**os.environ, "PYTHONUNBUFFERED": "1"})
    base = f"http://127.0.0.1:{port}"
    sel = f"[id='user-defined-plot:{PARETO_GRAPH_ID}']"
    fits = {}
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                with urllib.request.urlopen(f"{base}/api/studies", timeout=5) as r:
                    ids = {s["study_name"]: s["study_id"] for s in json.loads(r.read())["study_summaries"]}
                break
            except OSError:
                assert proc.poll() is None and time.monotonic() < deadline, log.read_text()
                time.sleep(0.3)
        with sync_playwright() as p:
            browser = p.chromium.launch(executable_path=CHROMIUM, headless=True, args=FLAGS)
            try:
                page = browser.new_page(viewport={"width": DESKTOP, "height": 900})
                for name, sid in sorted(ids.items()):
                    page.goto(f"{base}/dashboard/studies/{sid}")
                    page.wait_for_selector(f"{sel} .main-svg", timeout=20_000)
                    page.wait_for_timeout(500)
                    fits[name] = page.evaluate("""(sel) => {
                      const d = document.querySelector(sel), box = d.getBoundingClientRect();
                      const svg = d.querySelector('.main-svg').getBoundingClientRect();
                      const parts = Array.from(d.querySelectorAll('.legend, .gtitle, .xtitle, .ytitle, .scene'))
                        .map(e => e.getBoundingClientRect()).filter(r => r.width > 0);
                      const within = r => r.left >= box.left - 1 && r.right <= box.right + 1
                        && r.top >= box.top - 1 && r.bottom <= box.bottom + 1;
                      return {card: [box.width, box.height], svg: [svg.width, svg.height],
                              inside: within(svg) && parts.every(within), parts: parts.length};
                    }""", sel)
                    card = page.evaluate_handle(f"document.querySelector(\"{sel}\").parentElement").as_element()
                    card.screenshot(path=str(tmp_path / f"dashboard-{name}.png"))
                page.goto(f"{base}/dashboard/studies/{ids['m4']}/note")
                page.wait_for_function("document.body.innerText.includes('xaiopt recommendation')", timeout=20_000)
                note = page.inner_text("body")
            finally:
                browser.close()
    finally:
        proc.terminate()
        proc.wait(timeout=30)
    for name, f in fits.items():
        assert f["inside"] and f["parts"] >= 2, (name, f)
        assert f["svg"][0] <= f["card"][0] + 1 and f["svg"][1] <= f["card"][1] + 1, (name, f)
    assert f"graph `{PARETO_GRAPH_ID}` on the study's History page" in note or \
        f"graph {PARETO_GRAPH_ID} on the study's History page" in note
