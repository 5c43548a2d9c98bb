"""``pgrad playground``: the page in a real browser, the HTTP API's refusals, and no process left
behind when the server is stopped (SIGTERM or SIGKILL).

Each test starts the real command (``python -m pgrad playground``) on a free port. Waits poll a
condition up to a generous deadline, which only bounds a hang: the suite runs on loaded machines.
``PGRAD_PLAYGROUND_SHOTS=DIR`` also saves the screenshots docs/playground.md shows.
"""

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest

pytest.importorskip("fastapi")
pytest.importorskip("uvicorn")

DEADLINE_S = 120.0
CARTPOLE = {"env": "CartPole-v1", "algo": "reinforce", "steps": 500_000}


def wait_for(condition, what: str, deadline: float = DEADLINE_S):
    """Poll ``condition`` until it returns something truthy; fail after ``deadline`` seconds."""
    end = time.monotonic() + deadline
    while time.monotonic() < end:
        value = condition()
        if value:
            return value
        time.sleep(0.2)
    pytest.fail(f"timed out waiting for {what}")


def alive(pid: int) -> bool:
    """The process exists and is not a zombie (Linux /proc)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except (FileNotFoundError, ProcessLookupError):
        return False
    return stat.rsplit(")", 1)[1].split()[0] != "Z"


def children(pid: int) -> set[int]:
    """Every descendant of ``pid`` (Linux /proc)."""
    found, frontier = set(), [pid]
    while frontier:
        parent = frontier.pop()
        for path in Path(f"/proc/{parent}/task").glob("*/children"):
            try:
                kids = {int(k) for k in path.read_text().split()}
            except OSError:
                continue
            frontier.extend(kids - found)
            found |= kids
    return found


class Playground:
    """A ``pgrad playground`` subprocess and a tiny JSON client for its API."""

    def __init__(self, root: Path):
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            self.port = s.getsockname()[1]
        self.root, self.url = root, f"http://127.0.0.1:{self.port}"
        self.process = subprocess.Popen(
            [sys.executable, "-m", "pgrad", "playground", "--port", str(self.port),
             "--root", str(root), "--max-runs", "3"],
            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
        )  # fmt: skip
        wait_for(self._up, "the server to answer")

    def _up(self) -> bool:
        if self.process.poll() is not None:
            pytest.fail(f"the server exited: {self.process.stdout.read()}")
        try:
            return self.get("/api/runs")[0] == 200
        except OSError:
            return False

    def request(self, method: str, path: str, body=None) -> tuple[int, dict]:
        data = None if body is None else json.dumps(body).encode()
        request = urllib.request.Request(self.url + path, data, method=method,
                                         headers={"Content-Type": "application/json"})  # fmt: skip
        try:
            with urllib.request.urlopen(request, timeout=30) as response:
                return response.status, json.loads(response.read() or b"{}")
        except urllib.error.HTTPError as e:
            return e.code, json.loads(e.read() or b"{}")

    def get(self, path: str) -> tuple[int, dict]:
        return self.request("GET", path)

    def post(self, path: str, body=None) -> tuple[int, dict]:
        return self.request("POST", path, body)

    def runs(self) -> list[dict]:
        return self.get("/api/runs")[1]["runs"]

    def close(self) -> None:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(DEADLINE_S)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()


@pytest.fixture(scope="module")
def playground(tmp_path_factory):
    server = Playground(tmp_path_factory.mktemp("playground"))
    yield server
    server.close()


def test_the_api_refuses_what_is_not_on_the_menu(playground):
    """Envs outside the list, module:Env ids, paths and unknown keys get a 4xx and start
    nothing; bad knob values get pgrad's own config error."""
    refused = [
        {"env": "MountainCar-v0", "algo": "reinforce"},
        {"env": "pgrad.playground.gridworld:GridWorld-v0", "algo": "reinforce"},
        {"env": "tests.crash_env:Crash-v0", "algo": "reinforce"},
        {"env": "../../etc/passwd", "algo": "reinforce"},
        {"env": "CartPole-v1", "algo": "a3c"},
        {"env": "CartPole-v1", "algo": "reinforce", "run_dir": "/tmp/elsewhere"},
        {"env": "CartPole-v1", "algo": "reinforce", "config": "evil.yaml"},
        {"env": "CartPole-v1", "algo": "reinforce", "hidden_sizes": [4096]},
        {"env": "CartPole-v1", "algo": "reinforce", "clip_range": 0.2},
        {"env": "CartPole-v1", "algo": "sac"},
    ]
    for body in refused:
        status, answer = playground.post("/api/runs", body)
        assert 400 <= status < 500, (body, status, answer)
        assert answer["detail"], body
    status, answer = playground.post("/api/runs", {**CARTPOLE, "learning_rate": -1})
    assert (status, answer["detail"]) == (422, "learning_rate must be > 0, got -1.0")
    status, answer = playground.post("/api/runs", {"env": "CartPole-v1", "algo": "ppo",
                                                   "gamma": 2})  # fmt: skip
    assert (status, answer["detail"]) == (422, "gamma must be in [0, 1], got 2.0")
    assert playground.get("/api/runs/..%2F..%2Fetc/download")[0] == 404
    assert playground.get("/api/runs/..%2F..%2Fetc%2Fpasswd/events")[0] == 404
    assert playground.runs() == []
    assert not [p for p in playground.root.iterdir() if not p.name.startswith(".")]
    assert not children(playground.process.pid) - resource_trackers(playground.process.pid)


def resource_trackers(pid: int) -> set[int]:
    """multiprocessing's resource tracker, a helper the server may start (it is not a run)."""
    return {c for c in children(pid) if b"resource_tracker" in Path(f"/proc/{c}/cmdline")
            .read_bytes()}  # fmt: skip


def test_page_trains_stops_refuses_and_compares(playground, tmp_path):
    """In headless Chromium: REINFORCE on CartPole draws 20+ return points, a changing frame
    and action probabilities summing to 1; stop ends its worker; lr = -1 shows pgrad's error
    and starts nothing; two runs share the compare chart."""
    sync_api = pytest.importorskip("playwright.sync_api")
    chromium = os.environ.get("PGRAD_CHROMIUM") or shutil.which("chromium")
    if chromium is None:
        pytest.skip("no Chromium binary (install Debian's chromium or set PGRAD_CHROMIUM)")
    shots = os.environ.get("PGRAD_PLAYGROUND_SHOTS")
    flags = ["--no-sandbox", "--disable-gpu", "--disable-background-networking",
             "--disable-component-update", "--disable-sync", "--no-first-run"]  # fmt: skip
    with sync_api.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=chromium, args=flags)
        page = browser.new_page(viewport={"width": 1440, "height": 1000})
        page.set_default_timeout(DEADLINE_S * 1000)
        page.goto(playground.url)
        page.select_option("#env", "CartPole-v1")
        page.select_option("#algo", "reinforce")
        page.fill("#steps", "2000000" if shots else "500000")  # shots: still training then
        page.click("#start")
        points = "n => Number(document.querySelector('#return-chart').dataset.points) >= n"
        page.wait_for_function(points, arg=20)
        first = page.get_attribute("#frame", "src")
        page.wait_for_function("src => document.querySelector('#frame').src !== src", arg=first)
        page.wait_for_function("() => document.querySelector('#policy').dataset.probs")
        probs = json.loads(page.get_attribute("#policy", "data-probs"))
        assert len(probs) == 2 and sum(probs) == pytest.approx(1.0, abs=1e-5)
        if shots:  # with the estimator lab's chart, measured at the first checkpoint
            wait_for(lambda: list(playground.root.glob("*/checkpoints/*.pt")), "a checkpoint")
            page.click("#measure")
            chart = "() => Number(document.querySelector('#estimator-chart').dataset.points) > 0"
            page.wait_for_function(chart, timeout=600_000)
            page.wait_for_function(points, arg=60)
            page.screenshot(path=f"{shots}/playground-cartpole.png")
        pid = int(page.get_attribute("#runs li[data-state='running']", "data-pid"))
        assert alive(pid)
        page.click("#stop")
        wait_for(lambda: not alive(pid), "the stopped worker to exit")
        page.wait_for_selector("#runs li[data-state='stopped']")

        before = playground.runs()
        page.fill("#k-learning_rate", "-1")
        page.click("#start")
        page.wait_for_selector("#form-error:not([hidden])")
        assert "learning_rate must be > 0" in page.inner_text("#form-error")
        assert page.locator(".knob.bad[data-key='learning_rate']").count() == 1
        assert playground.runs() == before
        assert not [p for p in children(playground.process.pid) if alive(p)
                    and p not in resource_trackers(playground.process.pid)]  # fmt: skip

        page.click("#runs li .compare")  # untick the first run: compare the next two
        for algo in ("reinforce", "reinforce_baseline"):
            page.select_option("#algo", algo)
            page.fill("#steps", "500000")
            page.click("#start")
        page.wait_for_function("() => [...document.querySelectorAll('#runs li')].length === 3")
        page.wait_for_function(
            "() => document.querySelector('#compare-chart').dataset.series === '2'"
        )
        if shots:
            page.wait_for_function(points, arg=40)
            page.locator("#compare-chart").scroll_into_view_if_needed()
            page.screenshot(path=f"{shots}/playground-compare.png", full_page=True)
        browser.close()


def start_run(server: Playground) -> int:
    status, run = server.post("/api/runs", CARTPOLE)
    assert status == 201, run
    return wait_for(lambda: alive(run["pid"]) and run["pid"], "the worker to start")


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGKILL], ids=["SIGTERM", "SIGKILL"])
def test_no_process_survives_the_server(tmp_path, sig):
    """Stopping the server, politely or not, ends every process it started."""
    server = Playground(tmp_path / "root")
    try:
        worker = start_run(server)
        wait_for(lambda: (tmp_path / "root" / "001-reinforce-CartPole-v1" / "metrics.csv").exists(),
                 "the run to log")  # fmt: skip
        started = children(server.process.pid)
        assert worker in started
        server.process.send_signal(sig)
        server.process.wait(DEADLINE_S)
        wait_for(lambda: not any(alive(p) for p in started), "every child to exit")
    finally:
        server.close()
