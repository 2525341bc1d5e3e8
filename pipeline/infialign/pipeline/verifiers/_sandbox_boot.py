"""The sandbox's child side: confine this process, then run the candidate program.

Run by :mod:`.sandbox` as ``python -I _sandbox_boot.py config.json`` (standard library only, nothing from
the project is imported, so the candidate cannot reach project code through ``sys.modules``). Order:

1. network: a new network namespace (``unshare(CLONE_NEWNET)``) when this process may (root with
   CAP_SYS_ADMIN), else a new user + network namespace (unprivileged user namespaces), else the socket
   module is disabled in-process just before the candidate runs (best effort: code that loads a C
   extension of its own could get around it). Which one held is reported back.
2. limits: RLIMIT_CPU, RLIMIT_AS, RLIMIT_NPROC, RLIMIT_FSIZE, no core files.
3. root only: drop to ``nobody`` (setgroups/setgid/setuid). RLIMIT_NPROC is enforced from here on
   (the kernel never enforces it on uid 0). When the interpreter lives where ``nobody`` cannot read it
   (a Python under ``/root``), the modules in ``preload`` are imported first, while still root, so the
   candidate's usual imports still resolve; the parent decides that and the report says so.
4. run: ``exec`` mode runs the program as ``__main__``; ``call`` mode loads it and calls one function
   with the case's arguments, comparing the return value here (values need not be picklable).

The verdict goes back as one JSON line on the pipe ``result_fd``; stdout and stderr are files the parent
reads, so a flood of output is capped by RLIMIT_FSIZE instead of filling the parent's memory.
"""

import builtins
import ctypes
import json
import math
import os
import resource
import sys

_CLONE_NEWNET = 0x40000000
_CLONE_NEWUSER = 0x10000000


def _isolate_network(libc):
    if os.geteuid() == 0 and libc.unshare(_CLONE_NEWNET) == 0:
        return "netns"
    if libc.unshare(_CLONE_NEWUSER | _CLONE_NEWNET) == 0:
        return "userns+netns"
    return "sockets-disabled"


def _disable_sockets():
    import _socket
    import socket

    def refuse(*_a, **_k):
        raise PermissionError("network access is disabled in the sandbox")

    for mod in (socket, _socket):
        for name in ("socket", "socketpair", "create_connection", "create_server", "getaddrinfo", "fromfd"):
            if hasattr(mod, name):
                setattr(mod, name, refuse)


def _limit(cfg):
    cpu = int(math.ceil(cfg["cpu_seconds"]))
    resource.setrlimit(resource.RLIMIT_CPU, (cpu, cpu + 1))
    resource.setrlimit(resource.RLIMIT_AS, (cfg["memory_bytes"], cfg["memory_bytes"]))
    resource.setrlimit(resource.RLIMIT_FSIZE, (cfg["file_bytes"], cfg["file_bytes"]))
    resource.setrlimit(resource.RLIMIT_NPROC, (cfg["max_processes"], cfg["max_processes"]))
    resource.setrlimit(resource.RLIMIT_CORE, (0, 0))


def _drop_root(uid, gid):
    if os.geteuid() != 0 or uid is None:
        return "uid %d" % os.geteuid()
    os.setgroups([])
    os.setgid(gid)
    os.setuid(uid)
    return "nobody" if uid == 65534 else "uid %d" % uid


def _norm(v):
    if isinstance(v, tuple):
        v = list(v)
    if isinstance(v, list):
        return [_norm(x) for x in v]
    if isinstance(v, dict):
        return {k: _norm(x) for k, x in v.items()}
    return v


def _same(got, expected):
    got, expected = _norm(got), _norm(expected)
    if got == expected:
        return True
    if isinstance(got, float) or isinstance(expected, float):
        try:
            return math.isclose(float(got), float(expected), rel_tol=1e-6, abs_tol=1e-9)
        except (TypeError, ValueError):
            return False
    # APPS stores a call's expected value wrapped in a one-element list
    return isinstance(expected, list) and len(expected) == 1 and got == expected[0]


def _run(cfg, source):
    g = {"__name__": "__main__" if cfg["mode"] == "exec" else "solution", "__builtins__": builtins, "__file__": "solution.py"}
    sys.argv = ["solution.py"]
    try:
        exec(compile(source, "solution.py", "exec"), g)
        if cfg["mode"] == "exec":
            return {"outcome": "ok"}
        name = cfg["entry_point"]
        target = g.get("Solution")
        fn = getattr(target(), name) if isinstance(target, type) and hasattr(target, name) else g.get(name)
        if not callable(fn):
            return {"outcome": "exception", "error": "NameError: the program defines no function %r" % name}
        got = fn(*cfg["args"])
        ok = _same(got, cfg["expected"])
        return {"outcome": "ok", "match": ok, "got": repr(got)[:200]}
    except SystemExit as e:
        if e.code in (None, 0):
            return {"outcome": "ok"} if cfg["mode"] == "exec" else {"outcome": "exception", "error": "SystemExit during the call"}
        return {"outcome": "exception", "error": "SystemExit: %s" % (e.code,)}
    except BaseException as e:  # noqa: BLE001 - every failure of the candidate is reported, none escapes
        return {"outcome": "exception", "error": "%s: %s" % (type(e).__name__, str(e)[:300])}


def main():
    with open(sys.argv[1]) as f:
        cfg = json.load(f)
    with open(cfg["program"]) as f:
        source = f.read()
    report = os.fdopen(cfg["result_fd"], "w")
    libc = ctypes.CDLL(None, use_errno=True)
    network = _isolate_network(libc) if cfg["isolate_network"] else "shared"
    _limit(cfg)
    for name in cfg.get("preload", ()):
        try:
            __import__(name)
        except ImportError:
            pass
    user = _drop_root(cfg["uid"], cfg["gid"])
    if cfg.get("preload") and cfg["uid"] is not None:
        user += " (stdlib preloaded)"
    if network == "sockets-disabled":
        _disable_sockets()
    report.write(json.dumps({"isolation": {"network": network, "user": user}}) + "\n")
    report.flush()
    result = _run(cfg, source)
    try:
        sys.stdout.flush()
        sys.stderr.flush()
    except Exception:  # noqa: BLE001 - the candidate may have closed them
        pass
    report.write(json.dumps({"result": result}) + "\n")
    report.flush()
    os._exit(0)  # skip atexit handlers and thread joins the candidate may have registered


if __name__ == "__main__":
    main()
