"""``pgrad playground``: the page in a real browser, the HTTP API's refusals, and no process left
behind when the server is stopped (SIGTERM or SIGKILL).

Each test starts the real command (``python -m pgrad playground``) on a free port. Waits poll a
condition up to a generous deadline, which only bounds a hang: the suite runs on loaded machines.
``PGRAD_PLAYGROUND_SHOTS=DIR`` also saves the screenshots docs/playground.md shows.
"""

import asyncio
import http.client
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


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Playground:
    """A ``pgrad playground`` subprocess and a tiny JSON client for its API."""

    def __init__(self, root: Path, max_runs: int = 3):
        self.port = free_port()
        self.root, self.url = root, f"http://127.0.0.1:{self.port}"
        self.process = subprocess.Popen(
            [sys.executable, "-m", "pgrad", "playground", "--port", str(self.port),
             "--root", str(root), "--max-runs", str(max_runs)],
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

    def request(self, method: str, path: str, body=None, **headers: str) -> tuple[int, dict]:
        data = None if body is None else json.dumps(body).encode()
        headers = {"Content-Type": "application/json", **headers}
        request = urllib.request.Request(self.url + path, data, headers, method=method)
        try:
            with urllib.request.urlopen(request, timeout=30) as response:
                return response.status, json.loads(response.read() or b"{}")
        except urllib.error.HTTPError as e:
            return e.code, json.loads(e.read() or b"{}")

    def get(self, path: str, **headers: str) -> tuple[int, dict]:
        return self.request("GET", path, **headers)

    def post(self, path: str, body=None, **headers: str) -> tuple[int, dict]:
        return self.request("POST", path, body, **headers)

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


def run_ids(server: Playground) -> list[str]:
    return [run["id"] for run in server.runs()]


def test_the_api_enforces_the_advertised_ranges(playground):
    """Knob values outside the sliders' ranges (``choices.KNOBS``) and seeds outside 0..2^31-1
    are refused with a 422 naming the field and its range; values at the edges are taken."""
    from pgrad.playground import choices
    from pgrad.playground.form import FormError, RunRequest, check

    def refused(body: dict) -> str | None:
        try:
            check(RunRequest(**body))
        except FormError as e:
            return e.field
        return None

    ppo = {"env": "CartPole-v1", "algo": "ppo"}
    for key, knob in choices.KNOBS.items():
        if knob.kind == "bool":
            continue
        step = 1 if knob.kind == "int" else (knob.high - knob.low) * 0.01
        for inside in (knob.low, knob.high):
            assert refused({**ppo, key: inside}) is None, (key, inside)
        for outside in (knob.low - step, knob.high + step):
            assert refused({**ppo, key: outside}) == key, (key, outside)
    rps = {"env": choices.RPS, "algo": "reinforce"}
    before = run_ids(playground)
    for body in (ppo, rps):
        assert refused({**body, "seed": 2**31 - 1}) is None
        assert refused({**body, "seed": 2**31}) == "seed"
        assert refused({**body, "seed": 2**200}) == "seed"
    assert refused({**rps, "learning_rate": 0.1}) is None
    assert refused({**rps, "learning_rate": 1e300}) == "learning_rate"

    for field, value, expected in [
        ("n_steps", 10**9, "n_steps must be in [1, 2048] in the playground, got 1e+09"),
        (
            "learning_rate",
            1e6,
            "learning_rate must be in [1e-05, 0.1] in the playground, got 1e+06",
        ),
        ("clip_range", 100, "clip_range must be in [0.05, 0.5] in the playground, got 100"),
        ("entropy_coef", 1e9, "entropy_coef must be in [0, 0.1] in the playground, got 1e+09"),
        ("seed", 2**200, f"seed must be in [0, 2147483647], got {2**200}"),
    ]:
        status, answer = playground.post("/api/runs", {**ppo, field: value})
        assert (status, answer) == (422, {"detail": expected, "field": field})
    status, answer = playground.post("/api/runs", {**rps, "learning_rate": 1e300})
    assert (status, answer["field"]) == (422, "learning_rate")
    assert run_ids(playground) == before


def test_the_api_answers_only_its_own_host_and_origin(playground):
    """A request for another Host (DNS rebinding) and a cross-site POST get 403; the loopback
    names with the server's port, and the server's own origin, are let in."""
    port = playground.port
    for host in (f"127.0.0.1:{port}", f"localhost:{port}", f"[::1]:{port}"):
        assert playground.get("/api/runs", Host=host)[0] == 200, host
    for host in ("evil.example", f"evil.example:{port}", "127.0.0.1", f"127.0.0.1:{port + 1}"):
        status, answer = playground.request("GET", "/", Host=host)
        assert status == 403 and "Host" in answer["detail"], host
    stop = "/api/runs/no-such-run/stop"
    for origin in ("http://evil.example", "null", f"http://127.0.0.1:{port + 1}"):
        status, answer = playground.post(stop, Origin=origin)
        assert status == 403 and "cross-site" in answer["detail"], origin
    assert playground.post(stop, Origin=f"http://127.0.0.1:{port}")[0] == 404
    assert playground.post(stop, Origin=f"http://localhost:{port}")[0] == 404
    assert playground.post(stop)[0] == 404
    assert playground.get("/api/runs", Origin="http://evil.example")[0] == 200  # reads pass


def test_the_api_refuses_a_large_body_before_reading_it(playground):
    """A body over 64 KiB gets 413: a declared 30 MB one at once, without the server waiting for
    it; a chunked one once it passes the limit."""
    before = run_ids(playground)
    connection = http.client.HTTPConnection("127.0.0.1", playground.port, timeout=30)
    connection.putrequest("POST", "/api/runs")
    connection.putheader("Content-Type", "application/json")
    connection.putheader("Content-Length", str(30 * 2**20))
    connection.endheaders(b"{" + b" " * 1024)  # the rest never comes
    response = connection.getresponse()
    assert response.status == 413 and "65,536 bytes" in json.loads(response.read())["detail"]
    connection.close()

    connection = http.client.HTTPConnection("127.0.0.1", playground.port, timeout=30)
    chunks = [b'{"env": "CartPole-v1", "algo": "reinforce", "pad": "', *[b"x" * 8192] * 12, b'"}']
    connection.request("POST", "/api/runs", body=iter(chunks), encode_chunked=True,
                       headers={"Content-Type": "application/json"})  # fmt: skip
    response = connection.getresponse()
    assert response.status == 413
    connection.close()
    assert run_ids(playground) == before


def finished_run(server: Playground) -> str:
    """The id of a short CartPole run, once it has finished with a checkpoint."""
    status, run = server.post("/api/runs", {**CARTPOLE, "steps": 2000})
    assert status == 201, run
    state = {"id": run["id"], "state": "finished"}
    wait_for(lambda: [r for r in server.runs() if r.items() >= state.items()], "the run to end")
    wait_for(lambda: list((server.root / run["id"]).glob("checkpoints/*")), "a checkpoint")
    return run["id"]


def test_measurements_count_against_max_runs(tmp_path):
    """With --max-runs 1, a second measurement while one is under way gets the cap's 429."""
    server = Playground(tmp_path / "root", max_runs=1)
    try:
        ids = [finished_run(server), finished_run(server)]
        status, answer = server.post(f"/api/runs/{ids[0]}/measure")
        assert status == 200, answer
        status, answer = server.post(f"/api/runs/{ids[1]}/measure")
        assert status == 429 and "--max-runs" in answer["detail"], answer
    finally:
        server.close()


@pytest.mark.parametrize(
    "case", ["empty host", "blank host", "bad host", "bad address", "port in use", "root is a file"]
)
def test_bad_command_lines_are_one_line_errors_that_write_nothing(tmp_path, case):
    """An empty host, a host or port that cannot be bound, or a --root that is a file: one line
    naming it, exit 2, no banner and no runs directory."""
    port, root, hold = free_port(), tmp_path / "runs" / "playground", None
    host = {"empty host": "", "blank host": "  ", "bad host": "bad host!",
            "bad address": "256.1.1.1"}.get(case, "127.0.0.1")  # fmt: skip
    named = host.strip() or "--host"
    if case == "port in use":
        hold = socket.socket()
        hold.bind(("127.0.0.1", port))
        hold.listen()
        named = f"127.0.0.1:{port}"
    if case == "root is a file":
        root = tmp_path / "file"
        root.write_text("not a directory")
        named = str(root)
    try:
        done = subprocess.run(
            [sys.executable, "-m", "pgrad", "playground", "--host", host, "--port", str(port),
             "--root", str(root)],
            capture_output=True, text=True, timeout=DEADLINE_S,
        )  # fmt: skip
    finally:
        if hold is not None:
            hold.close()
    assert done.returncode == 2, (done.stdout, done.stderr)
    assert done.stdout == ""
    line = done.stderr.strip()
    assert line.startswith("error: ") and "\n" not in line and named in line, line
    assert root.is_file() if case == "root is a file" else not root.exists()
    assert not (tmp_path / "runs").exists()


def _status(app, method: str, host: str, origin: str | None = None) -> int:
    """The status ``app`` (an ASGI app) answers a bodiless request with."""
    headers = [(b"host", host.encode())] + ([(b"origin", origin.encode())] if origin else [])
    scope = {"type": "http", "method": method, "path": "/", "headers": headers,
             "query_string": b"", "http_version": "1.1", "scheme": "http"}  # fmt: skip
    sent = []

    async def receive():
        return {"type": "http.request", "body": b"", "more_body": False}

    async def send(message):
        sent.append(message)

    asyncio.run(app(scope, receive, send))
    return next(m["status"] for m in sent if m["type"] == "http.response.start")


def test_a_wildcard_bind_takes_any_host_but_still_refuses_cross_site_posts():
    """--host 0.0.0.0 (or ::) opens the server to whatever name the network reaches it by; a
    POST must still come from the origin it was sent to."""
    from starlette.responses import PlainTextResponse

    from pgrad.playground.guard import Guard, host_names

    assert host_names("0.0.0.0", 8765) is None and host_names("::", 8765) is None
    assert host_names("127.0.0.1", 8765) == {"127.0.0.1:8765", "localhost:8765", "[::1]:8765"}
    guard = Guard(PlainTextResponse("ok"), host_names("0.0.0.0", 8765))
    assert _status(guard, "GET", "192.168.1.5:8765") == 200
    assert _status(guard, "POST", "192.168.1.5:8765", "http://192.168.1.5:8765") == 200
    assert _status(guard, "POST", "192.168.1.5:8765", "http://evil.example") == 403
    loopback = Guard(PlainTextResponse("ok"), host_names("127.0.0.1", 8765))
    assert _status(loopback, "GET", "192.168.1.5:8765") == 403
