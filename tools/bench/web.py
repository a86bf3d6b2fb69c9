"""The web tier against its own baseline: `POST /api/orders/`, `GET /api/products/` and the
bare authenticated view (`tools.bench.bare`) on the same gunicorn, one after the other, each
closed loop for the same time, with wrk when it is installed (Debian's `wrk`; `make bench`
installs it), else with the bench's own load generator. Requests/s of each, and their
ratios: what the API's views add to what gunicorn, the middleware, DRF and token
authentication cost anyway."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
import uuid
from pathlib import Path
from typing import Any

from tools.bench.bare import BARE_PATH

TARGETS = (
    ("POST /api/orders/", "POST", "/api/orders/"),
    ("GET /api/products/", "GET", "/api/products/"),
    ("GET bare view", "GET", BARE_PATH),
)

_WRK_SCRIPT = """
local tokens = {%(tokens)s}
local skus = {%(skus)s}
local method, path = "%(method)s", "%(path)s"
local i = 0
request = function()
  i = i + 1
  local headers = {["Authorization"] = "Token " .. tokens[i %% #tokens + 1]}
  local body = nil
  if method == "POST" then
    headers["Content-Type"] = "application/json"
    body = '{"items":[{"sku":"' .. skus[i %% #skus + 1] .. '","quantity":1}]}'
  end
  return wrk.format(method, path, headers, body)
end
"""
_REQUESTS_PER_S = re.compile(r"Requests/sec:\s+([0-9.]+)")
_TOTAL = re.compile(r"(\d+) requests in ([0-9.]+)(m?s)")
_NON_2XX = re.compile(r"Non-2xx or 3xx responses:\s+(\d+)")
_SOCKET_ERRORS = re.compile(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)")


def tool() -> str:
    return "wrk" if shutil.which("wrk") else "loadgen"


def _lua_list(values: list[str]) -> str:
    return ", ".join(json.dumps(v) for v in values)


def run_wrk(
    *,
    port: int,
    method: str,
    path: str,
    tokens: list[str],
    skus: list[str],
    seconds: float,
    connections: int,
    work_dir: Path,
) -> dict[str, Any]:
    script = work_dir / f"wrk-{uuid.uuid4().hex[:6]}.lua"
    script.write_text(
        _WRK_SCRIPT
        % {
            "tokens": _lua_list(tokens),
            "skus": _lua_list(skus),
            "method": method,
            "path": path,
        }
    )
    argv = [
        "wrk",
        "-t2",
        f"-c{connections}",
        f"-d{max(1, round(seconds))}s",
        "-s",
        str(script),
        f"http://127.0.0.1:{port}{path}",
    ]
    out = subprocess.run(argv, capture_output=True, text=True, check=True, timeout=seconds + 60)
    text = out.stdout
    rate = float(_REQUESTS_PER_S.search(text).group(1))  # type: ignore[union-attr]
    total = _TOTAL.search(text)
    non_2xx = _NON_2XX.search(text)
    socket = _SOCKET_ERRORS.search(text)
    errors = (int(non_2xx.group(1)) if non_2xx else 0) + (
        sum(int(n) for n in socket.groups()) if socket else 0
    )
    requests = int(total.group(1)) if total else 0
    return {
        "requests": requests,
        "ok_per_s": rate * (1 - errors / requests) if requests else 0.0,
        "errors": errors,
        "output": text,
    }


def run_loadgen(
    *,
    port: int,
    method: str,
    path: str,
    tokens_file: Path,
    skus: list[str],
    seconds: float,
    connections: int,
    work_dir: Path,
    repo_root: Path,
) -> dict[str, Any]:
    out = work_dir / f"load-web-{uuid.uuid4().hex[:6]}.json"
    argv = [
        sys.executable,
        "-m",
        "tools.bench.loadgen",
        "--url",
        f"http://127.0.0.1:{port}{path}",
        "--connections",
        str(connections),
        "--duration",
        str(seconds),
        "--tokens-file",
        str(tokens_file),
        "--method",
        method,
        "--skus",
        ",".join(skus),
        "--out",
        str(out),
    ]
    subprocess.run(argv, cwd=repo_root, check=True, timeout=seconds + 300)
    result = json.loads(out.read_text())
    return {
        "requests": result["requests"],
        "ok_per_s": result["ok_per_s"],
        "errors": result["errors"],
        "first_error": result["first_error"],
    }
