"""Run untrusted candidate code once, in a confined subprocess, and say what happened.

Confinement (the child side is :mod:`._sandbox_boot`): RLIMIT_CPU, RLIMIT_AS (memory), RLIMIT_NPROC
(fork bombs), RLIMIT_FSIZE (stdout/stderr go to files, so a flood of output is capped too), a wall
timeout, a fresh temporary directory as cwd and ``HOME``, an environment with nothing of the stage's
(no credentials), ``start_new_session=True`` and a SIGKILL to the whole process group at the end, root
dropped to ``nobody``, and no network: a network namespace when permitted, else sockets disabled
in-process. :class:`RunResult` says which confinement held.

What it is not: a security boundary against code written to escape (that needs gVisor/nsjail-class
isolation in the pod). It stops the accidents of generated code: infinite loops, memory hogs, fork
bombs, huge outputs, stray network calls, writes outside its directory.
"""

from __future__ import annotations

import json
import math
import os
import pwd
import signal
import stat
import subprocess
import sys
import sysconfig
import tempfile
import time
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any, Literal

__all__ = ["Limits", "RunResult", "run"]

_BOOT = Path(__file__).with_name("_sandbox_boot.py")
_MB = 1024 * 1024
_TAIL = 300


@dataclass(frozen=True)
class Limits:
    """Per-run limits; the defaults are seeds §1.6 [RECON] (2 GB, 6 s per test)."""

    memory_mb: int = 2048
    max_processes: int = 16
    max_file_mb: int = 64
    isolate_network: bool = True
    drop_root: bool = True


@dataclass(frozen=True)
class RunResult:
    """``outcome``: ``ok`` (ran to the end; ``match`` is the call comparison in call mode), ``exception``
    (the candidate raised; ``error``), ``timeout`` (wall clock), ``cpu_limit``, ``output_limit``,
    ``crashed`` (died without a report: a signal, a memory kill)."""

    outcome: Literal["ok", "exception", "timeout", "cpu_limit", "output_limit", "crashed"]
    stdout: str = ""
    stderr_tail: str = ""
    error: str = ""
    match: bool | None = None
    got: str = ""
    exit_code: int | None = None
    network: str = "unknown"
    user: str = "unknown"
    seconds: float = 0.0


def _nobody() -> tuple[int, int] | None:
    try:
        pw = pwd.getpwnam("nobody")
    except KeyError:
        return None
    return pw.pw_uid, pw.pw_gid


# Imported before the drop to nobody when nobody cannot read the interpreter's own files: what generated
# solutions (HumanEval, APPS, LiveCodeBench) import. Exit condition: an interpreter in a world-readable
# prefix (every image we build), where this list is not used.
_PRELOAD = (
    "array", "bisect", "cmath", "collections", "copy", "dataclasses", "datetime", "decimal", "enum", "fractions",
    "functools", "hashlib", "heapq", "io", "itertools", "json", "math", "numbers", "operator", "queue", "random",
    "re", "socket", "encodings.idna", "statistics", "string", "sys", "textwrap", "threading", "time", "typing", "unicodedata",
)


@cache
def _stdlib_readable_by_others() -> bool:
    """Can a user with no relation to the files' owner import from the standard library?"""
    path = Path(sysconfig.get_paths()["stdlib"]).resolve()
    for p in (path, *path.parents):
        mode = p.stat().st_mode
        if not mode & stat.S_IXOTH or (p == path and not mode & stat.S_IROTH):
            return False
    return True


def _read_report(fd: int) -> dict[str, Any]:
    """Everything the boot wrote on the pipe; non-blocking, since an escaped grandchild may hold it open."""
    os.set_blocking(fd, False)
    chunks: list[bytes] = []
    while True:
        try:
            b = os.read(fd, 65536)
        except BlockingIOError:
            break
        if not b:
            break
        chunks.append(b)
    report: dict[str, Any] = {}
    for line in b"".join(chunks).decode(errors="replace").splitlines():
        try:
            report.update(json.loads(line))
        except ValueError:
            continue
    return report


def _kill_group(proc: subprocess.Popen[bytes]) -> None:
    """SIGKILL the whole process group (its id is the leader's pid, thanks to ``start_new_session``), and
    wait a little until it is empty, so a fork bomb's last children are gone when the verdict is out."""
    deadline = time.monotonic() + 2.0
    while True:
        try:
            os.killpg(proc.pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            break
        if proc.poll() is not None and time.monotonic() > deadline:
            break
        time.sleep(0.01)
    proc.wait()


def run(
    program: str,
    *,
    timeout_s: float,
    limits: Limits,
    stdin: str = "",
    call: tuple[str, list[Any], Any] | None = None,
) -> RunResult:
    """Run ``program`` once: as ``__main__`` with ``stdin`` (exec mode), or, with ``call=(name, args,
    expected)``, load it and compare ``name(*args)`` with ``expected`` (call mode)."""
    drop = _nobody() if (limits.drop_root and os.geteuid() == 0) else None
    with tempfile.TemporaryDirectory(prefix="infialign-sandbox-") as tmp:
        work = Path(tmp)
        (work / "solution.py").write_text(program)
        (work / "stdin.txt").write_text(stdin)
        r, w = os.pipe()
        cfg = {
            "program": str(work / "solution.py"),
            "mode": "call" if call else "exec",
            "entry_point": call[0] if call else "",
            "args": call[1] if call else [],
            "expected": call[2] if call else None,
            "result_fd": w,
            "isolate_network": limits.isolate_network,
            "cpu_seconds": max(1, math.ceil(timeout_s)),
            "memory_bytes": limits.memory_mb * _MB,
            "file_bytes": limits.max_file_mb * _MB,
            "max_processes": limits.max_processes,
            "uid": drop[0] if drop else None,
            "gid": drop[1] if drop else None,
            "preload": list(_PRELOAD) if drop and not _stdlib_readable_by_others() else [],
        }
        (work / "config.json").write_text(json.dumps(cfg))
        if drop:
            for p in (work, *work.iterdir()):
                os.chown(p, *drop)  # the candidate, as nobody, may write only in its own directory
        env = {"PATH": os.defpath, "HOME": tmp, "TMPDIR": tmp, "LANG": "C.UTF-8", "OMP_NUM_THREADS": "1", "PYTHONHASHSEED": "0"}
        started = time.monotonic()
        timed_out = False
        try:
            with open(work / "stdin.txt", "rb") as fin, open(work / "stdout.txt", "wb") as fout, open(work / "stderr.txt", "wb") as ferr:
                proc = subprocess.Popen(
                    [sys.executable, "-I", str(_BOOT), str(work / "config.json")],
                    stdin=fin,
                    stdout=fout,
                    stderr=ferr,
                    cwd=tmp,
                    env=env,
                    pass_fds=(w,),
                    start_new_session=True,
                )
                os.close(w)
                w = -1
                try:
                    proc.wait(timeout=timeout_s + 0.5)  # + interpreter start-up, which is not the candidate's time
                except subprocess.TimeoutExpired:
                    timed_out = True
                finally:
                    _kill_group(proc)
            report = _read_report(r)
        finally:
            os.close(r)
            if w >= 0:
                os.close(w)
        seconds = time.monotonic() - started
        stdout = (work / "stdout.txt").read_bytes().decode(errors="replace")
        stderr = (work / "stderr.txt").read_bytes().decode(errors="replace")
    iso = report.get("isolation", {})
    base = {
        "stdout": stdout,
        "stderr_tail": stderr[-_TAIL:],
        "exit_code": proc.returncode,
        "network": iso.get("network", "unknown"),
        "user": iso.get("user", "unknown"),
        "seconds": seconds,
    }
    res = report.get("result")
    if timed_out:
        return RunResult("timeout", **base)
    if proc.returncode in (-signal.SIGXCPU, -signal.SIGKILL) and res is None and seconds >= timeout_s * 0.5:
        return RunResult("cpu_limit", **base)
    if proc.returncode == -signal.SIGXFSZ:
        return RunResult("output_limit", **base)
    if res is None:
        return RunResult("crashed", error=_last_line(stderr) or f"exit code {proc.returncode}", **base)
    if res.get("outcome") == "exception":
        return RunResult("exception", error=str(res.get("error", "")), **base)
    return RunResult("ok", match=res.get("match"), got=str(res.get("got", "")), **base)


def _last_line(text: str) -> str:
    lines = [ln for ln in text.strip().splitlines() if ln.strip()]
    return lines[-1][:_TAIL] if lines else ""
