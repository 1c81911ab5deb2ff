"""wrk (Debian's ``wrk``) as the load generator: a C event loop, so the client is not the bottleneck.

``run_wrk`` posts chat bodies from a Lua script and returns wrk's own counts
plus the CPU time the wrk process used (from ``os.wait4``), so a report can
show how much of the two cores the client took.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import tempfile
from pathlib import Path

#: Body mixes. ``new``: no session id, so every chat starts a session. ``returning``: 64
#: visitors taking turns, so every chat loads and extends a history.
MIXES = ("new", "returning")
RETURNING_SESSIONS = 64

_SCRIPT = r"""
local mix, sessions = "%(mix)s", %(sessions)d
local prepared, n = {}, 0
local headers = {["Content-Type"] = "application/json"}

function init(args)
  if mix == "new" then
    prepared[1] = wrk.format("POST", "%(path)s", headers, '{"message": "What do you do?"}')
  else
    for i = 1, sessions do
      local body = string.format('{"message": "What do you do?", "session_id": "bench-visitor-%%04d"}', i)
      prepared[i] = wrk.format("POST", "%(path)s", headers, body)
    end
  end
end

function request()
  n = n + 1
  return prepared[(n %% #prepared) + 1]
end

function done(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    'WRK-JSON {"requests": %%d, "duration_us": %%d, "connect": %%d, "read": %%d, "write": %%d, ' ..
    '"status": %%d, "timeout": %%d, "p50_us": %%d, "p99_us": %%d, "mean_us": %%f}\n',
    summary.requests, summary.duration, e.connect, e.read, e.write, e.status, e.timeout,
    latency:percentile(50), latency:percentile(99), latency.mean))
end
"""


def wrk_binary() -> str:
    found = shutil.which("wrk")
    if found is None:
        raise RuntimeError("wrk is not installed: `apt-get install wrk` (make bench does it)")
    return found


def script(mix: str, path: str = "/chat") -> str:
    if mix not in MIXES:
        raise ValueError(f"mix must be one of {MIXES}")
    return _SCRIPT % {"mix": mix, "sessions": RETURNING_SESSIONS, "path": path}


def run_wrk(url: str, *, mix: str, seconds: float, connections: int, threads: int = 1,
            path: str = "/chat", timeout_s: int = 10) -> dict[str, float]:
    """One wrk run; requests, errors, req/s, p50/p99 ms and the client's CPU seconds."""
    with tempfile.NamedTemporaryFile("w", suffix=".lua", delete=False) as fh:
        fh.write(script(mix, path))
        lua = fh.name
    try:
        command = [wrk_binary(), "-t", str(threads), "-c", str(connections), "-d", f"{seconds:g}s",
                   "--timeout", f"{timeout_s}s", "-s", lua, url]
        with subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True) as process:
            output = process.stdout.read()
            # wait4, not wait: it also gives the child's CPU time.
            _, status, usage = os.wait4(process.pid, 0)
            process.returncode = exit_code = os.waitstatus_to_exitcode(status)
    finally:
        Path(lua).unlink()
    if exit_code != 0:
        raise RuntimeError(f"wrk failed ({exit_code}): {output}")
    line = next((l for l in output.splitlines() if l.startswith("WRK-JSON ")), None)
    if line is None:
        raise RuntimeError(f"wrk printed no summary: {output}")
    raw = json.loads(line[len("WRK-JSON "):])
    errors = raw["connect"] + raw["read"] + raw["write"] + raw["status"] + raw["timeout"]
    return {
        "requests": raw["requests"],
        "failures": errors,
        "rps": raw["requests"] / (raw["duration_us"] / 1e6),
        "p50_ms": raw["p50_us"] / 1000,
        "p99_ms": raw["p99_us"] / 1000,
        "client_cpu_s": usage.ru_utime + usage.ru_stime,
        "wall_s": raw["duration_us"] / 1e6,
    }
