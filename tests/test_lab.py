"""JupyterLab: starts headless on 127.0.0.1, offers the project's `thinkalike-ml` kernel, which starts and imports the library."""
import json
import os
import secrets
import sys
import time
import uuid
from pathlib import Path

import pytest
import requests

from helpers import free_port, start_server, stop_server, wait_http

pytestmark = pytest.mark.slow  # starts a JupyterLab server

BIN = Path(sys.executable).parent
KERNEL = "thinkalike-ml"
REGISTER = (f'{BIN}/python -m ipykernel install --sys-prefix --name {KERNEL} '
            f'--display-name "Python (thinkalike-ml)"  (or `make setup`)')


@pytest.fixture(scope="module")
def lab(tmp_path_factory):
    """A JupyterLab server on a free 127.0.0.1 port with a random token; yields (base url, auth headers)."""
    tmp = tmp_path_factory.mktemp("lab")
    (tmp / "root").mkdir()
    port, token = free_port(), secrets.token_hex(16)
    env = {**os.environ, "JUPYTER_RUNTIME_DIR": str(tmp / "runtime"), "JUPYTER_CONFIG_DIR": str(tmp / "config"),
           "JUPYTERLAB_WORKSPACES_DIR": str(tmp / "workspaces"), "JUPYTER_PLATFORM_DIRS": "1"}
    proc = start_server([str(BIN / "jupyter"), "lab", "--no-browser", "--ip=127.0.0.1", f"--port={port}",
                         "--ServerApp.port_retries=0", f"--IdentityProvider.token={token}", "--allow-root",
                         "--ServerApp.open_browser=False", f"--notebook-dir={tmp / 'root'}"],
                        tmp / "lab.log", env=env, cwd=tmp / "root")
    base = f"http://127.0.0.1:{port}"
    try:
        try: wait_http(f"{base}/api/status?token={token}", timeout=90, proc=proc)
        except (TimeoutError, RuntimeError) as e:
            pytest.fail(f"JupyterLab did not start: {e}\n{(tmp / 'lab.log').read_text()[-3000:]}")
        yield base, {"Authorization": f"token {token}"}
    finally:
        stop_server(proc, timeout=15)


def execute(base: str, headers: dict, kernel_id: str, code: str, timeout: float = 60) -> tuple[str, str]:
    """Run `code` on a kernel over its websocket channel; return (reply status, stdout)."""
    import websocket
    ws = websocket.create_connection(f"ws{base[4:]}/api/kernels/{kernel_id}/channels",
                                     header=[f"{k}: {v}" for k, v in headers.items()], timeout=timeout)
    try:
        msg_id = uuid.uuid4().hex
        ws.send(json.dumps({
            "header": {"msg_id": msg_id, "username": "test", "session": uuid.uuid4().hex,
                       "msg_type": "execute_request", "version": "5.3"},
            "parent_header": {}, "metadata": {}, "channel": "shell", "buffers": [],
            "content": {"code": code, "silent": False, "store_history": False, "user_expressions": {},
                        "allow_stdin": False, "stop_on_error": True}}))
        # the reply (shell) may overtake the output (iopub): wait for both the reply and the kernel going idle
        stdout, status, idle, deadline = [], None, False, time.monotonic() + timeout
        while time.monotonic() < deadline and not (status and idle):
            msg = json.loads(ws.recv())
            if msg.get("parent_header", {}).get("msg_id") != msg_id: continue
            kind = msg["header"]["msg_type"]
            if kind == "stream" and msg["content"]["name"] == "stdout": stdout.append(msg["content"]["text"])
            if kind == "error": stdout.append("\n".join(msg["content"]["traceback"]))
            if kind == "execute_reply": status = msg["content"]["status"]
            if kind == "status" and msg["content"]["execution_state"] == "idle": idle = True
        if not (status and idle): raise TimeoutError(f"no complete execute_reply within {timeout} s")
        return status, "".join(stdout)
    finally:
        ws.close()


def test_lab_answers_and_offers_the_project_kernel(lab):
    """/api/status answers and /api/kernelspecs lists `thinkalike-ml`."""
    base, headers = lab
    assert requests.get(f"{base}/api/status", headers=headers, timeout=10).status_code == 200
    specs = requests.get(f"{base}/api/kernelspecs", headers=headers, timeout=10).json()["kernelspecs"]
    assert KERNEL in specs, f"kernel {KERNEL!r} not registered (found {sorted(specs)}): run {REGISTER}"
    assert specs[KERNEL]["spec"]["language"] == "python"


def test_the_project_kernel_starts_and_imports_the_library(lab):
    """POST /api/kernels starts `thinkalike-ml`; it goes idle, imports thinkalike_ml from this checkout, and is deleted."""
    base, headers = lab
    r = requests.post(f"{base}/api/kernels", json={"name": KERNEL}, headers=headers, timeout=30)
    assert r.status_code == 201, f"could not start kernel {KERNEL!r}: HTTP {r.status_code} {r.text[:500]}; run {REGISTER}"
    kid = r.json()["id"]
    try:
        # the server reports "starting" until a client connects; the websocket connection nudges the kernel
        status, out = execute(base, headers, kid, "import sys, thinkalike_ml\nprint(thinkalike_ml.__file__)\nprint(sys.prefix)",
                              timeout=120)
        assert status == "ok", f"`import thinkalike_ml` failed in the kernel (run `make setup`):\n{out}"
        root = Path(__file__).resolve().parents[1]
        assert str(root / "thinkalike_ml") in out, f"the kernel imported another thinkalike_ml: {out}"
        assert sys.prefix in out, f"the kernel runs another python than {sys.prefix}: {out}"
        state, deadline = None, time.monotonic() + 30
        while time.monotonic() < deadline:
            state = requests.get(f"{base}/api/kernels/{kid}", headers=headers, timeout=10).json()["execution_state"]
            if state == "idle": break
            assert state not in ("dead", "restarting"), f"kernel {KERNEL!r} is {state}"
            time.sleep(0.3)
        assert state == "idle", f"kernel {KERNEL!r} did not become idle (last state {state!r})"
    finally:
        d = requests.delete(f"{base}/api/kernels/{kid}", headers=headers, timeout=30)
        assert d.status_code == 204, f"deleting the kernel: HTTP {d.status_code}"
    assert kid not in [k["id"] for k in requests.get(f"{base}/api/kernels", headers=headers, timeout=10).json()]
