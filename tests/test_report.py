"""The HTML report: self-contained, with the plot, the evaluation table, config and video."""

import base64
import io
import os
import shutil
from html.parser import HTMLParser

import pytest
from PIL import Image

import pgrad
from pgrad.report import report


class Elements(HTMLParser):
    def __init__(self):
        super().__init__()
        self.images: dict[str, str] = {}
        self.tables: dict[str, list[list[str]]] = {}
        self._table: str | None = None
        self._cell: list[str] | None = None

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        if tag == "img":
            self.images[attrs["id"]] = attrs["src"]
        elif tag == "table":
            self._table = attrs["id"]
            self.tables[self._table] = []
        elif tag == "tr" and self._table:
            self.tables[self._table].append([])
        elif tag in ("td", "th"):
            self._cell = []

    def handle_data(self, data):
        if self._cell is not None:
            self._cell.append(data)

    def handle_endtag(self, tag):
        if tag in ("td", "th") and self._cell is not None:
            self.tables[self._table][-1].append("".join(self._cell))
            self._cell = None
        elif tag == "table":
            self._table = None


def _image(src: str) -> Image.Image:
    header, data = src.split(",", 1)
    assert header.startswith("data:image/") and header.endswith(";base64")
    return Image.open(io.BytesIO(base64.b64decode(data)))


@pytest.fixture(scope="module")
def page(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("report")
    runs = [
        pgrad.train("ppo", "CartPole-v1", steps=3000, seed=s, run_dir=tmp / f"ppo-{s}",
                    eval_episodes=2, log_every=500)
        for s in (0, 1)
    ]  # fmt: skip
    out = report([r.path for r in runs], tmp / "report.html", video=True)
    return out, runs


def test_report_is_self_contained_with_plot_table_config_and_video(page):
    out, runs = page
    text = out.read_text()
    assert "http://" not in text and "https://" not in text  # nothing to fetch
    elements = Elements()
    elements.feed(text)
    curve = _image(elements.images["curve-0"])
    assert curve.format == "PNG" and curve.size[0] > 400
    video = _image(elements.images["video-0"])
    assert video.format == "GIF" and video.n_frames > 5
    evaluation = elements.tables["evaluation-0"]
    assert evaluation[0][:3] == ["run", "seed", "final eval return"]
    by_run = {row[0]: row for row in evaluation[1:]}
    for run in runs:
        assert float(by_run[run.path.name][2].replace(",", "")) == pytest.approx(
            run.summary["mean_return"], abs=0.05
        )
    assert evaluation[-1][0] == "all runs (mean ± std)"
    config = {row[0]: row[1:] for row in elements.tables["config-0"][1:]}
    assert config["seed"] == ["0", "1"]  # the differing key, per run
    assert config["algo"][0] == "ppo"


def test_report_renders_in_headless_chromium(page, tmp_path):
    """Opens the page in a real browser (the system's Chromium, driven by Playwright) and checks
    that the plot decoded and the table has its rows, then screenshots it. `.ci/run` installs
    Debian's chromium; the test skips only where no Chromium binary exists."""
    sync_api = pytest.importorskip("playwright.sync_api")
    chromium = os.environ.get("PGRAD_CHROMIUM") or shutil.which("chromium")
    if chromium is None:
        pytest.skip("no Chromium binary (install Debian's chromium or set PGRAD_CHROMIUM)")
    out, _ = page
    # Offline machine: no background connections, no sandbox (CI runs as root).
    flags = ["--no-sandbox", "--disable-gpu", "--disable-background-networking",
             "--disable-component-update", "--disable-sync", "--no-first-run"]  # fmt: skip
    with sync_api.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=chromium, args=flags)
        view = browser.new_page()
        view.goto(out.resolve().as_uri())
        assert view.locator("#curve-0").evaluate("img => img.naturalWidth") > 400
        assert view.locator("#video-0").evaluate("img => img.complete && img.naturalWidth") > 0
        assert view.locator("#evaluation-0 tr").count() == 4
        assert view.locator("#config-0").is_visible()
        view.screenshot(path=str(tmp_path / "report.png"), full_page=True)
        browser.close()
    shot = Image.open(tmp_path / "report.png")
    assert shot.size[1] > 600
    if os.environ.get("PGRAD_SCREENSHOT"):  # to look at it
        shot.save(os.environ["PGRAD_SCREENSHOT"])


def test_the_best_run_ranks_a_return_of_zero_above_a_negative_one():
    """Pong-like returns: 0.0 is the best of (0.0, -21.0); a run with no final evaluation
    (mean_return None) ranks last."""
    from pgrad.report import best_run

    runs = ["a", "b", "c"]
    assert best_run(runs, [{"mean_return": -21.0}, {"mean_return": 0.0}, {}]) == "b"
    assert best_run(runs, [{"mean_return": None}, {"mean_return": -21.0}, {}]) == "b"


def test_runs_are_averaged_only_over_the_steps_they_all_cover():
    """Rows at 100-300 and at 150-350: the mean curve spans 150-300, where both have data (a
    run held flat before its first row would pull the start toward its later value)."""
    import numpy as np

    from pgrad.plot import common_grid

    a = (np.array([100.0, 200.0, 300.0]), np.array([0.0, 10.0, 20.0]))
    b = (np.array([150.0, 250.0, 350.0]), np.array([5.0, 15.0, 25.0]))
    grid, ys = common_grid([a, b], points=4)
    np.testing.assert_allclose(grid, [150.0, 200.0, 250.0, 300.0])
    np.testing.assert_allclose(ys, [[5.0, 10.0, 15.0, 20.0], [5.0, 10.0, 15.0, 20.0]])
