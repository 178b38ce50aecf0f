"""Shared test helpers: free ports, waiting for HTTP, starting and stopping servers, the headless browser."""
from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import time
from pathlib import Path

import requests

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
                 "--disable-sync", "--no-first-run", "--disable-quic"]


@contextlib.contextmanager
def temporary_registry(folder: Path):
    """A SQLite tracking store and model registry in `folder`, set as MLFLOW_TRACKING_URI (with a test pseudonym key) until exit; yields its URI."""
    uri = f"sqlite:///{Path(folder) / 'mlflow.db'}"
    old = {k: os.environ.get(k) for k in ("MLFLOW_TRACKING_URI", "THINKALIKE_PSEUDONYM_KEY")}
    os.environ.update(MLFLOW_TRACKING_URI=uri, THINKALIKE_PSEUDONYM_KEY="test-pseudonym-key")
    try: yield uri
    finally:
        for k, v in old.items():
            if v is None: os.environ.pop(k, None)
            else: os.environ[k] = v


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_http(url: str, timeout: float = 30, proc: subprocess.Popen | None = None, ok=(200,)) -> requests.Response:
    """Poll `url` until it answers with a status in `ok`; fail after `timeout` s or if `proc` exits first."""
    deadline, last = time.monotonic() + timeout, None
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            raise RuntimeError(f"the server exited with code {proc.returncode} before {url} answered")
        try:
            r = requests.get(url, timeout=2)
            if r.status_code in ok: return r
            last = f"HTTP {r.status_code}"
        except requests.RequestException as e:
            last = repr(e)
        time.sleep(0.2)
    raise TimeoutError(f"{url} did not answer within {timeout} s (last: {last})")


def start_server(cmd: list[str], log: Path, **kw) -> subprocess.Popen:
    """Start a server process in its own process group, its output going to `log`."""
    f = open(log, "wb")
    proc = subprocess.Popen(cmd, stdout=f, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                            start_new_session=True, **kw)
    proc.log_file = f
    return proc


def stop_server(proc: subprocess.Popen, timeout: float = 10) -> None:
    """Stop a server started by `start_server`: SIGTERM its group, wait, SIGKILL on timeout."""
    if proc.poll() is None:
        try: os.killpg(proc.pid, signal.SIGTERM)
        except ProcessLookupError: pass
        try: proc.wait(timeout)
        except subprocess.TimeoutExpired:
            try: os.killpg(proc.pid, signal.SIGKILL)
            except ProcessLookupError: pass
            proc.wait(timeout)
    log = getattr(proc, "log_file", None)
    if log: log.close()


def require_chromium() -> Path:
    """The system Chromium that the browser tests drive; fails (not skips) with what to do when missing."""
    if not CHROMIUM.exists():
        import pytest
        pytest.fail(f"{CHROMIUM} is missing: run `make setup-test` (it installs Debian's chromium) and retry")
    return CHROMIUM


@contextlib.contextmanager
def served(folder: Path):
    """Serve `folder` over HTTP on a free 127.0.0.1 port for the duration of the block; yields the base URL."""
    import functools, http.server, threading
    server = http.server.ThreadingHTTPServer(("127.0.0.1", free_port()),
                                             functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(folder)))
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try: yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


@contextlib.contextmanager
def offline_page(base: str, width: int = 1280, height: int = 800):
    """A headless Chromium page that may only fetch from `base`; yields (page, list of refused outside URLs)."""
    from playwright.sync_api import sync_playwright
    chromium, outside = require_chromium(), []
    def route(r):
        if not r.request.url.startswith(base + "/"):
            outside.append(r.request.url)
            return r.abort()
        return r.continue_()
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=str(chromium), args=CHROMIUM_ARGS, headless=True)
        try:
            page = browser.new_page(viewport={"width": width, "height": height})
            page.route("**/*", route)
            yield page, outside
        finally:
            browser.close()


# the small profile both engines' tests run on: several partitions of a few hundred rows
ENGINE_SMALL = dict(n_users=300, n_items=30, interactions_per_user=8.0, suggestions_per_user=8.0, dataset_store="", dask_partition_rows=700)


@contextlib.contextmanager
def local_dask_cluster():
    """A local Dask cluster on 127.0.0.1 (2 single-threaded worker processes, no dashboards) until exit; yields its scheduler address."""
    from distributed import LocalCluster
    with LocalCluster(n_workers=2, threads_per_worker=1, processes=True, host="127.0.0.1", dashboard_address=None,
                      worker_dashboard_address=None, silence_logs=40) as cluster:
        yield cluster.scheduler_address
