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
#: visitors taking turns, so every chat loads and extends a history. ``varied``: the same 64
#: visitors, each message the next of ``varied_questions()`` (the golden sets' questions behind a
#: dozen openers: more texts than the offline model's message caches hold): no chat's text was read
#: lately, as in ``returning``, where every visitor asks the same thing.
MIXES = ("new", "returning", "varied")
RETURNING_SESSIONS = 64
EVALS = Path(__file__).resolve().parent.parent / "evals"
#: None of them a greeting the offline model strips before it reads (which would make two texts one).
OPENERS = ("", "Quick question: ", "So, ", "Tell me, ", "I'd like to know: ", "One more thing: ",
           "Out of curiosity, ", "Could you tell me: ", "By the way, ", "I was wondering: ", "Now, ", "And also, ")

_SCRIPT = r"""
local mix, sessions = "%(mix)s", %(sessions)d
local prepared, n = {}, 0
local headers = {["Content-Type"] = "application/json"}
local questions = {%(questions)s}

function init(args)
  if mix == "varied" then
    return
  elseif mix == "new" then
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
  if mix == "varied" then
    local body = string.format('{"message": %%s, "session_id": "bench-visitor-%%04d"}',
                               questions[(n %% #questions) + 1], (n %% sessions) + 1)
    return wrk.format("POST", "%(path)s", headers, body)
  end
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


def varied_questions() -> list[str]:
    """Every question of the golden sets behind every opener, one opener's after another's."""
    questions = sorted({json.loads(line)["question"] for name in ("example.jsonl", "heldout.jsonl")
                        for line in (EVALS / name).read_text(encoding="utf-8").splitlines() if line.strip()})
    return [opener + (question[0].lower() + question[1:] if opener and not question[:2].isupper() else question)
            for opener in OPENERS for question in questions]


def script(mix: str, path: str = "/chat") -> str:
    if mix not in MIXES:
        raise ValueError(f"mix must be one of {MIXES}")
    # Each question as a Lua long string holding its JSON text, so nothing needs escaping twice.
    questions = ", ".join(f"[==[{json.dumps(q)}]==]" for q in varied_questions()) if mix == "varied" else ""
    return _SCRIPT % {"mix": mix, "sessions": RETURNING_SESSIONS, "path": path, "questions": questions}


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
