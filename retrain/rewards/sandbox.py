"""A sandbox for untrusted Python (model output): one subprocess per run, several layers deep.

`run_python(code, stdin=..., checks=[...], limits=SandboxLimits(...))` runs `code` in a fresh
interpreter, then each trusted `check` snippet in the same namespace, and returns a
`SandboxResult`: exit status, captured (capped) stdout/stderr, whether it timed out, and one
`CheckOutcome` per check. Layers, outermost first; each one that the machine cannot provide is
skipped and named in `SandboxResult.layers` / `sandbox_layers()`:

1. process (any POSIX): a new session; a minimal environment (no parent secrets); a temporary
   working directory; resource limits (CPU seconds, address space, file size, open files,
   processes, no core files); a wall-clock timeout that SIGKILLs the whole process group; output
   read through pipes, capped (the program is killed past `max_output_bytes`).
2. privileges (when run as root): the program runs as its own unprivileged uid/gid (one per
   concurrent run), with no supplementary groups and `no_new_privs`. RLIMIT_NPROC then counts only
   that run's processes (root ignores it), files outside are protected by their permissions, and
   after the run every process of that uid is killed (`kill -9 -1` as the uid), whatever
   session or process group it moved to. Not root: RLIMIT_NPROC is the user's current count +
   `max_processes` (it counts all of the user's processes), and only the process group is killed.
3. namespaces (root with CAP_SYS_ADMIN, Linux): a new network namespace (no interface is up: no
   network, not even loopback), a new PID namespace (all its processes die with the program) and a
   new mount namespace whose root is a size-bounded tmpfs holding only `/work` (the working
   directory), `/tmp` and a read-only bind mount of the Python standard library: no other file of
   the machine is visible. Not root: a user + network namespace when the kernel allows one.
4. audit hook (in the child, armed after the trusted setup and before the untrusted code):
   denies opening or listing files outside the working directory (reads of the standard library
   allowed), sockets, subprocesses, exec, fork, spawn, os.system, kill, ctypes, gc object walks,
   tracing, sub-interpreters, building code objects, links, and importing the modules that bypass
   these. A Python audit hook is not a security boundary on its own (crafted bytecode through
   marshal, a thread racing a path check); here it is the inner layer, and the only one on a
   machine that gives neither root nor namespaces.

Check outcomes travel on a pipe, one line each, signed with a random nonce that exists in the
child only inside the audit hook's closure (the hook is reachable only through the interpreter;
the gc walks that could find it are denied). The hook signs a line only for an audit event raised
by the harness's own frame, once per stage and in order, so the program cannot forge one: a check
passes only if the harness ran it to completion after the code. `sys.exit(0)` or `os._exit(0)`
before the checks, printing "passed", writing to the pipe or raising the audit event fails them.
Before each check the builtins are restored, so rebinding `len` or `sorted` does not help either.

Not covered: a thread the program leaves running can rebind builtins while the checks run, and an
object whose `__eq__` always returns True passes `assert f(x) == y` (reward hacking inside the
rules, not an escape); memory is limited per process (RLIMIT_AS), not per run (no cgroup).

POSIX only; the namespace layer is Linux only. Everything here uses the standard library.
"""

from __future__ import annotations

import json
import os
import secrets
import selectors
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass, field

__all__ = [
    "CheckOutcome",
    "SandboxError",
    "SandboxLimits",
    "SandboxResult",
    "run_python",
    "sandbox_layers",
]


class SandboxError(RuntimeError):
    """The sandbox itself could not run the program (not the program's fault): setup failed."""


@dataclass(frozen=True)
class SandboxLimits:
    """Limits of one run. The defaults suit small programs from stdin/stdout or assert tests.

    `isolate`, `drop_privileges` and `audit_hook` switch layers off; they exist so that tests can
    check each remaining layer alone. Leave them on.
    """

    timeout_seconds: float = 5.0  # wall clock, from start to kill
    cpu_seconds: float | None = None  # RLIMIT_CPU; default: the wall-clock timeout + 1
    memory_mb: int = 512  # RLIMIT_AS of each process
    max_processes: int = 16  # RLIMIT_NPROC (processes and threads of the sandbox's uid)
    max_file_mb: int = 16  # RLIMIT_FSIZE: largest file the program can write
    disk_mb: int = 64  # size of the tmpfs root (namespace layer)
    max_open_files: int = 64  # RLIMIT_NOFILE
    max_output_bytes: int = 1 << 20  # stdout + stderr; past this the program is killed
    isolate: bool = True
    drop_privileges: bool = True
    audit_hook: bool = True
    uid_base: int | None = None  # first uid of this process's range; default: chosen from the uid map

    def __post_init__(self) -> None:
        if self.timeout_seconds <= 0:
            raise ValueError(f"timeout_seconds must be > 0, got {self.timeout_seconds}")
        for name in ("memory_mb", "max_processes", "max_file_mb", "disk_mb", "max_open_files", "max_output_bytes"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")


@dataclass
class CheckOutcome:
    """One trusted check run after the code: passed, or the exception it raised (or why it never ran)."""

    passed: bool
    error: str = ""


@dataclass
class SandboxResult:
    """What one run did. `stdout`/`stderr` hold at most `max_output_bytes` in all (decoded, lossy)."""

    returncode: int  # negative: killed by that signal
    stdout: str
    stderr: str
    timed_out: bool
    output_limit_exceeded: bool
    duration_seconds: float
    code_completed: bool  # the code ran to its end (or sys.exit(0)) under the harness
    code_error: str  # the exception that ended the code, "" if none
    checks: list[CheckOutcome] = field(default_factory=list)
    layers: tuple[str, ...] = ()

    @property
    def ok(self) -> bool:
        """Exited 0 on its own, in time, within the output limit."""
        return self.returncode == 0 and not self.timed_out and not self.output_limit_exceeded


def _require_posix() -> None:
    if os.name != "posix":
        raise SandboxError(
            f"the code sandbox needs a POSIX system (Linux for all its layers); this is {sys.platform}"
        )


# -- the harness: trusted code that runs first in the child ------------------------------------------

_HARNESS = r'''
import os, sys


def _read_job():
    fd = int(sys.argv[1])
    chunks = []
    while True:
        chunk = os.read(fd, 1 << 16)
        if not chunk:
            break
        chunks.append(chunk)
    os.close(fd)
    import json
    return json.loads(b"".join(chunks))


def _make_hook(nonce, result_fd, harness_frame):
    """The audit hook: the only writer of signed result lines, and (once armed) the sandbox policy.

    The nonce exists only in this closure; the hook is reachable only through the interpreter's
    hook list (gc.get_referrers and friends are denied). A result line is written only when the
    event comes from the harness frame itself, once per stage, in order.
    """
    nonce = nonce.encode()
    write, hexlify, getframe = os.write, bytes.hex, sys._getframe
    stage = [0]  # 0: ready, 1: code, 2 + i: check i
    policy = []

    def hook(event, args):
        if event == "retrain.sandbox":
            kind, index, ok, message = args
            # Setup errors come before the untrusted code (stage 0); everything else from the harness frame.
            if getframe(1) is not harness_frame and not (kind == "setup_error" and stage[0] == 0):
                raise PermissionError("sandbox: only the harness reports results")
            if kind == "arm":
                policy.append(message)
                return
            expected = {"setup_error": stage[0], "ready": 0, "code": 1, "check": 2 + index}[kind]
            if stage[0] != expected:
                return
            stage[0] += 1
            try:
                data = message.encode("utf-8", "replace")[:2000]
            except BaseException:
                data = b"?"
            line = b" ".join((nonce, kind.encode(), b"%d" % index, b"1" if ok else b"0",
                              hexlify(data).encode() or b"-"))
            try:
                write(result_fd, line + b"\n")
            except BaseException:
                pass
        elif policy:
            policy[0](event, args)

    return hook


def _make_policy(write_roots, read_roots):
    """What the untrusted code may do, event by event (see the module docstring of the sandbox)."""
    realpath, join, getcwd, fsdecode = os.path.realpath, os.path.join, os.getcwd, os.fsdecode
    read_files = frozenset(("/dev/null", "/dev/urandom", "/dev/random", "/dev/zero"))
    denied_prefixes = (
        "socket.", "subprocess.", "ctypes.", "os.exec", "os.spawn", "os.posix_spawn", "os.fork", "os.forkpty",
        "os.system", "os.kill", "os.killpg", "os.startfile", "os.link", "os.symlink", "os.setns", "os.unshare",
        "pty.", "sys.settrace", "sys.setprofile", "sys.addaudithook", "sys.remote_exec", "gc.get_referrers",
        "gc.get_referents", "gc.get_objects", "cpython.", "code.__new__", "_winapi.", "winreg.", "msvcrt.",
        "webbrowser.",
    )
    denied_imports = frozenset((
        "ctypes", "_ctypes", "_posixsubprocess", "subprocess", "multiprocessing", "_multiprocessing",
        "_xxsubinterpreters", "_xxinterpchannels", "_interpreters", "_interpchannels", "_interpqueues", "pty",
        "_testcapi", "_testinternalcapi", "_ctypes_test", "_testmultiphase", "_testsinglephase", "_testbuffer",
        "_testclinic", "_testimportmultiple",
    ))
    writes = os.O_WRONLY | os.O_RDWR | os.O_CREAT | os.O_TRUNC | os.O_APPEND
    reads_, writes_ = (0,), (0, 1)
    path_events = {  # event -> (positions of its path arguments, whether it writes)
        "os.listdir": (reads_, False), "os.scandir": (reads_, False), "glob.glob": (reads_, False),
        "glob.glob/2": (reads_, False), "os.chdir": (reads_, False), "os.getxattr": (reads_, False),
        "os.listxattr": (reads_, False), "os.mkdir": (reads_, True), "os.rmdir": (reads_, True),
        "os.remove": (reads_, True), "os.rename": (writes_, True), "os.chmod": (reads_, True),
        "os.chown": (reads_, True), "os.truncate": (reads_, True), "os.utime": (reads_, True),
        "os.chflags": (reads_, True), "os.lchflags": (reads_, True), "os.lchmod": (reads_, True),
        "os.lchown": (reads_, True), "os.setxattr": (reads_, True), "os.removexattr": (reads_, True),
        "shutil.copyfile": (writes_, True), "shutil.copymode": (writes_, True),
        "shutil.copystat": (writes_, True), "shutil.copytree": (writes_, True), "shutil.chown": (reads_, True),
        "shutil.rmtree": (reads_, True), "shutil.move": (writes_, True), "shutil.make_archive": ((0, 2), True),
        "shutil.unpack_archive": (writes_, True), "tempfile.mkstemp": (reads_, True),
        "tempfile.mkdtemp": (reads_, True),
    }
    path_events = tuple(path_events.items())
    path_event_names = frozenset(name for name, _ in path_events)

    def inside(path, roots):
        for root in roots:
            if path == root or path.startswith(root + "/"):
                return True
        return False

    def check_path(event, value, is_write):
        if value is None or type(value) is int:
            return  # the working directory, or a descriptor the program already holds
        if type(value) is bytes:
            value = fsdecode(value)
        elif type(value) is not str:  # a path-like object could name another file when asked again
            if type(value).__module__ != "pathlib":
                raise PermissionError("sandbox: %s of a %s denied (use str)" % (event, type(value).__name__))
            value = fsdecode(os.fspath(value))
        path = realpath(value if value.startswith("/") else join(getcwd(), value))
        allowed = inside(path, write_roots) if is_write else inside(path, read_roots) or path in read_files
        if not allowed:
            raise PermissionError("sandbox: %s %r denied (outside the working directory)" % (event, value))

    def policy(event, args):
        if event == "open":
            path, mode, flags = args
            is_write = bool((flags or 0) & writes) or (type(mode) is str and any(c in mode for c in "wax+"))
            check_path(event, path, is_write)
        elif event == "import":
            if args[0].partition(".")[0] in denied_imports:
                raise PermissionError("sandbox: import of %s denied" % args[0])
        elif event in path_event_names:
            for name, (positions, is_write) in path_events:
                if name == event:
                    for i in positions:
                        if i < len(args):
                            check_path(event, args[i], is_write)
        elif event.startswith(denied_prefixes):
            raise PermissionError("sandbox: %s denied" % event)

    return policy


def _harness():
    job = _read_job()
    report = sys.audit
    sys.addaudithook(_make_hook(job.pop("nonce"), job["result_fd"], sys._getframe()))
    import builtins, resource

    def setup_failed(what, exc):
        report("retrain.sandbox", "setup_error", 0, False, "%s: %s: %s" % (what, type(exc).__name__, exc))
        os._exit(70)

    layers = ["process"]
    root = os.geteuid() == 0
    uid, gid = job["uid"], job["gid"]
    drop = root and uid is not None
    workdir = job["workdir"]
    stdlib = [p for p in sys.path if os.path.isdir(p)]
    chrooted = False
    # -- namespaces: network, pid, mount (root) or user + network (not root) --
    if job["isolate"] and sys.platform.startswith("linux"):
        try:
            import ctypes
            libc = ctypes.CDLL(None, use_errno=True)
            NEWNS, NEWUSER, NEWPID, NEWNET = 0x00020000, 0x10000000, 0x20000000, 0x40000000
            if root and libc.unshare(NEWNS | NEWPID | NEWNET) == 0:
                layers.append("namespaces")
                pid = os.fork()
                if pid:  # outside the new pid namespace: only waits, and passes the status on
                    while True:
                        try:
                            _, status = os.waitpid(pid, 0)
                            break
                        except InterruptedError:
                            continue
                    os._exit(os.WEXITSTATUS(status) if os.WIFEXITED(status) else 128 + os.WTERMSIG(status))

                def mount(source, target, fstype, flags, data):
                    if libc.mount(source, target.encode(), fstype, flags, data) != 0:
                        errno = ctypes.get_errno()
                        raise OSError(errno, "mount %s: %s" % (target, os.strerror(errno)))

                RDONLY, NOSUID, NODEV, REMOUNT, BIND, REC, PRIVATE = 1, 2, 4, 32, 4096, 16384, 1 << 18
                mount(None, "/", None, REC | PRIVATE, None)
                new_root = workdir
                mount(b"tmpfs", new_root, b"tmpfs", NOSUID | NODEV, b"size=%dm,mode=0755" % job["disk_mb"])
                for path in stdlib:
                    if any(path.startswith(p.rstrip("/") + "/") for p in stdlib if p != path):
                        continue  # inside another one
                    target = new_root + path
                    os.makedirs(target, mode=0o755, exist_ok=True)
                    mount(path.encode(), target, None, BIND | REC, None)
                    mount(None, target, None, BIND | REMOUNT | RDONLY | NOSUID | NODEV, None)
                os.mkdir(new_root + "/tmp")
                os.chmod(new_root + "/tmp", 0o1777)
                os.mkdir(new_root + "/work", 0o700)
                if drop:
                    os.chown(new_root + "/work", uid, gid)
                try:
                    import zlib  # noqa: F401  its shared library is not in the new root
                except ImportError:
                    pass
                os.chroot(new_root)
                workdir = "/work"
                chrooted = True
            elif not root and libc.unshare(NEWUSER | NEWNET) == 0:
                layers.append("user+network namespaces")
        except Exception as exc:
            if "namespaces" in layers:
                setup_failed("namespace setup", exc)
    if sys.platform.startswith("linux"):
        try:
            import ctypes
            if ctypes.CDLL(None).prctl(38, 1, 0, 0, 0) == 0:  # PR_SET_NO_NEW_PRIVS: no setuid binary raises privileges
                layers.append("no_new_privs")
        except Exception:
            pass
        sys.modules.pop("ctypes", None)
        sys.modules.pop("_ctypes", None)
    try:
        os.chdir(workdir)
        # -- resource limits; hard = soft, so that the program cannot raise them --
        cpu = job["cpu_seconds"]
        resource.setrlimit(resource.RLIMIT_CPU, (cpu, cpu + 1))
        for kind, value in ((resource.RLIMIT_CORE, 0), (resource.RLIMIT_FSIZE, job["max_file_mb"] << 20),
                            (resource.RLIMIT_NOFILE, job["max_open_files"]), (resource.RLIMIT_NPROC, job["nproc"])):
            if value is not None:
                resource.setrlimit(kind, (value, value))
        # -- privileges --
        if drop:
            if not chrooted:  # the standard library may sit where the uid cannot go (/root): keep a way in
                ways_in = [(p, "/proc/self/fd/%d" % os.open(p, os.O_RDONLY | os.O_DIRECTORY)) for p in stdlib]
                ways_in.sort(key=lambda pair: -len(pair[0]))

                def way_in(path):
                    for real, link in ways_in:
                        if path == real or path.startswith(real + "/"):
                            return link + path[len(real):]
                    return path

                sys.path[:] = [way_in(p) for p in sys.path]
                for module in list(sys.modules.values()):  # packages imported so far look in their __path__
                    if type(getattr(module, "__path__", None)) is list:
                        module.__path__[:] = [way_in(p) for p in module.__path__]
                sys.path_importer_cache.clear()
            os.setgroups([])
            os.setgid(gid)
            os.setuid(uid)
            try:
                os.setuid(0)
            except PermissionError:
                pass
            else:
                raise RuntimeError("the uid went back to 0 after dropping privileges")
            layers.append("uid %d" % uid)
        resource.setrlimit(resource.RLIMIT_AS, (job["memory_mb"] << 20, job["memory_mb"] << 20))
    except Exception as exc:
        setup_failed("limits and privileges", exc)
    realpath = os.path.realpath
    write_roots = (realpath(workdir), "/tmp") if chrooted else (realpath(workdir),)
    read_roots = write_roots + tuple(realpath(p) for p in stdlib)
    audit = job["audit"]
    if audit:
        layers.append("audit hook")
    # -- run the code, then each check --
    for name in ("ctypes", "_ctypes", "_posixsubprocess", "subprocess"):
        sys.modules.pop(name, None)
    builtins.exit = builtins.quit = sys.exit  # -S leaves them out; programs call them
    sys.argv[:] = ["solution.py"]
    # Everything used after the untrusted code starts is bound here: it may rebind builtins and modules.
    exec_, compile_, enumerate_, type_, str_, int_ = exec, compile, enumerate, type, str, int
    BaseException_, SystemExit_ = BaseException, SystemExit
    stdout, stderr, print_, exit_ = sys.stdout, sys.stderr, print, os._exit
    clear, update = dict.clear, dict.update
    builtins_dict = builtins.__dict__
    saved_builtins = tuple(builtins_dict.items())
    code, checks = job["code"], tuple(job["checks"])
    namespace = {"__name__": job["module_name"], "__builtins__": builtins}
    del job

    def describe(exc):
        try:
            text = str_(exc)
            return "%s: %s" % (type_(exc).__name__, text) if text else type_(exc).__name__
        except BaseException_:
            return "exception"

    report("retrain.sandbox", "ready", 0, True, ",".join(layers))
    if audit:
        report("retrain.sandbox", "arm", 0, True, _make_policy(write_roots, read_roots))
    status = 0
    try:
        exec_(compile_(code, "<solution>", "exec"), namespace)
        completed, error = True, ""
    except SystemExit_ as exc:
        status = 0 if exc.code is None else exc.code if type_(exc.code) is int_ else 1
        completed, error = status == 0, "" if status == 0 else describe(exc)
    except BaseException_ as exc:
        completed, error, status = False, describe(exc), 1
    report("retrain.sandbox", "code", 0, completed, error)
    if error:
        try:
            print_("Traceback (most recent call last) not shown in the sandbox\n" + error, file=stderr)
        except BaseException_:
            pass
    for index, check in enumerate_(checks if completed else ()):
        try:
            clear(builtins_dict)  # the checks see the real builtins, whatever the code rebound
            update(builtins_dict, saved_builtins)
            namespace["__builtins__"] = builtins
            exec_(compile_(check, "<test %d>" % index, "exec"), namespace)
            report("retrain.sandbox", "check", index, True, "")
        except BaseException_ as exc:
            report("retrain.sandbox", "check", index, False, describe(exc))
    for stream in (stdout, stderr):
        try:
            type_(stream).flush(stream)
        except BaseException_:
            pass
    exit_(status if 0 <= status < 256 else 1)


_harness()
'''


# -- uids, one per concurrent run -----------------------------------------------------------------------

_SLOTS = 256  # concurrent runs per parent process
_slot_lock = threading.Condition()
_free_slots = list(range(_SLOTS))


def _uid_range_start(limits: SandboxLimits) -> int:
    """First uid of this process's range of `_SLOTS` uids, unused by real accounts."""
    if limits.uid_base is not None:
        return limits.uid_base
    extents: list[tuple[int, int]] = []
    try:
        with open("/proc/self/uid_map") as f:
            for line in f:
                inside, _, length = (int(x) for x in line.split())
                extents.append((inside, length))
    except OSError:
        extents = [(0, 1 << 32)]
    start, length = max(extents, key=lambda e: e[1]) if extents else (0, 65536)
    if length >= 1 << 31:
        # 1e9 + pid * 256 + slot stays below 2**31 for pids up to 4M: unique per live parent process.
        return 1_000_000_000 + (os.getpid() % 4_000_000) * _SLOTS
    # A user-namespaced container (often 65536 uids): the upper half, away from real accounts.
    lanes = max(1, (length // 2 - 2 * _SLOTS) // _SLOTS)
    return start + length // 2 + (os.getpid() % lanes) * _SLOTS


def _acquire_slot() -> int:
    with _slot_lock:
        while not _free_slots:
            _slot_lock.wait()
        return _free_slots.pop()


def _release_slot(slot: int) -> None:
    with _slot_lock:
        _free_slots.append(slot)
        _slot_lock.notify()


def _kill_uid(uid: int) -> None:
    """SIGKILL every process of `uid` until none is left (or 2 s pass: zombies wait for their reaper).

    kill(-1) as that uid signals all its processes in one pass under the kernel's task lock, so a
    fork bomb cannot outrun it; it fails with ESRCH once there is none left."""
    kill = shutil.which("kill", path="/usr/bin:/bin")
    snippet = "import os\ntry:\n    os.kill(-1, 9)\nexcept ProcessLookupError:\n    raise SystemExit(1)"
    command = [kill, "-9", "-1"] if kill else [sys.executable, "-I", "-S", "-c", snippet]
    deadline = time.monotonic() + 2.0
    while True:
        done = subprocess.run(command, user=uid, group=uid, extra_groups=[], stdin=subprocess.DEVNULL,
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, cwd="/", env={}, check=False)
        if done.returncode != 0 or time.monotonic() > deadline:
            return
        time.sleep(0.01)


def _user_tasks(uid: int) -> int:
    """Processes and threads of `uid` now (what RLIMIT_NPROC counts), from /proc."""
    count = 0
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/status") as f:
                fields = dict(line.split(":", 1) for line in f if ":" in line)
        except OSError:
            continue
        if int(fields.get("Uid", "-1").split()[0]) == uid:
            count += int(fields.get("Threads", "1"))
    return count


# -- running ----------------------------------------------------------------------------------------------

_layers_cache: tuple[str, ...] | None = None


def sandbox_layers() -> tuple[str, ...]:
    """The layers a default run gets on this machine, e.g. ('process', 'namespaces', 'uid ...', 'audit hook')."""
    global _layers_cache
    if _layers_cache is None:
        _layers_cache = run_python("pass").layers
    return _layers_cache


def _parse_results(data: bytes, nonce: bytes) -> list[tuple[str, int, bool, str]]:
    records = []
    for line in data.split(b"\n"):
        parts = line.split(b" ")
        if len(parts) != 5 or not secrets.compare_digest(parts[0], nonce):
            continue  # not from the harness: the program wrote to the pipe
        try:
            message = "" if parts[4] == b"-" else bytes.fromhex(parts[4].decode()).decode("utf-8", "replace")
            records.append((parts[1].decode(), int(parts[2]), parts[3] == b"1", message))
        except ValueError:
            continue
    return records


def run_python(
    code: str,
    *,
    stdin: str | None = None,
    checks: Sequence[str] = (),
    limits: SandboxLimits | None = None,
    module_name: str = "__main__",
) -> SandboxResult:
    """Run untrusted `code`, then each trusted `checks` snippet in its namespace, in the sandbox.

    `stdin` is the program's standard input (none: /dev/null). `module_name` is the `__name__` the
    code sees. Returns the `SandboxResult`; raises `SandboxError` only when the sandbox itself
    fails (not for anything the program does). Thread-safe: run many at once from a thread pool.
    """
    _require_posix()
    limits = limits or SandboxLimits()
    drop = limits.drop_privileges and os.geteuid() == 0
    slot = _acquire_slot() if drop else None
    uid = _uid_range_start(limits) + slot if slot is not None else None
    workdir = tempfile.mkdtemp(prefix="retrain-sandbox-")
    nonce = secrets.token_hex(16)
    result_r, result_w = os.pipe()
    payload = tempfile.TemporaryFile()
    stdin_file = None
    process = None
    try:
        if uid is not None:
            os.chown(workdir, uid, uid)
        nproc: int | None = limits.max_processes
        if not drop:  # RLIMIT_NPROC counts all of this user's processes: leave room for them
            nproc = _user_tasks(os.getuid()) + limits.max_processes if sys.platform.startswith("linux") else None
        cpu = limits.cpu_seconds if limits.cpu_seconds is not None else limits.timeout_seconds + 1
        payload.write(json.dumps({
            "nonce": nonce, "result_fd": result_w, "code": code, "checks": list(checks),
            "module_name": module_name, "workdir": workdir, "uid": uid, "gid": uid,
            "isolate": limits.isolate, "disk_mb": limits.disk_mb, "cpu_seconds": max(1, int(cpu + 0.999)),
            "memory_mb": limits.memory_mb, "max_file_mb": limits.max_file_mb,
            "max_open_files": limits.max_open_files, "nproc": nproc, "audit": limits.audit_hook,
        }).encode())
        payload.flush()
        payload.seek(0)
        if stdin is not None:
            stdin_file = tempfile.TemporaryFile()
            stdin_file.write(stdin.encode())
            stdin_file.flush()
            stdin_file.seek(0)
        env = {"PATH": "/usr/bin:/bin", "LANG": "C.UTF-8", "LC_ALL": "C.UTF-8", "HOME": workdir, "TMPDIR": workdir}
        started = time.monotonic()
        process = subprocess.Popen(
            [sys.executable, "-I", "-S", "-B", "-X", "utf8", "-c", _HARNESS, str(payload.fileno())],
            stdin=stdin_file if stdin_file is not None else subprocess.DEVNULL,
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, cwd=workdir, env=env,
            pass_fds=(payload.fileno(), result_w), start_new_session=True,
        )
        os.close(result_w)
        result_w = -1
        payload.close()
        if stdin_file is not None:
            stdin_file.close()
        streams, timed_out, over = _collect(process, result_r, started + limits.timeout_seconds,
                                            limits.max_output_bytes)
        _kill_group(process)
        if uid is not None:
            _kill_uid(uid)
        returncode = process.wait()
        duration = time.monotonic() - started
    finally:
        if process is not None and process.returncode is None:
            _kill_group(process)
            if uid is not None:
                _kill_uid(uid)
            process.wait()
        for fd in (result_r, result_w):
            if fd >= 0:
                os.close(fd)
        payload.close()
        if stdin_file is not None:
            stdin_file.close()
        shutil.rmtree(workdir, ignore_errors=True)
        if slot is not None:
            _release_slot(slot)
    return _result(streams, nonce, len(checks), returncode, timed_out, over, duration)


def _result(streams: dict[str, bytearray], nonce: str, n_checks: int, returncode: int, timed_out: bool,
            over: bool, duration: float) -> SandboxResult:
    records = _parse_results(bytes(streams["result"]), nonce.encode())
    stderr = streams["stderr"].decode("utf-8", "replace")
    setup = [message for kind, _, _, message in records if kind == "setup_error"]
    if setup:
        raise SandboxError(f"sandbox setup failed: {setup[0]}")
    ready = [message for kind, _, _, message in records if kind == "ready"]
    if not ready:
        if timed_out:
            raise SandboxError("the sandbox did not start within the timeout; is the machine overloaded?")
        raise SandboxError(f"the sandbox harness died before the code ran (exit {returncode}): {stderr[-2000:]}")
    code_records = [(ok, message) for kind, _, ok, message in records if kind == "code"]
    if not code_records:
        ended = "timed out" if timed_out else "output limit exceeded" if over else f"exit status {returncode}"
        code_error = f"the program ended before returning to the harness ({ended})"
        why = "not run: the program ended before the tests"
    else:
        code_error = code_records[0][1]
        why = ("not run: the program ended first" if code_records[0][0] else
               f"not run: the code raised {code_error}" if code_error else "not run: the code did not complete")
    checks = [CheckOutcome(False, why) for _ in range(n_checks)]
    for kind, index, ok, message in records:
        if kind == "check" and 0 <= index < n_checks:
            checks[index] = CheckOutcome(ok, message)
    if timed_out or over:
        reason = "timed out" if timed_out else "output limit exceeded"
        for outcome in checks:
            if not outcome.passed and outcome.error.startswith("not run"):
                outcome.error = f"not run: {reason}"
    return SandboxResult(
        returncode=returncode,
        stdout=streams["stdout"].decode("utf-8", "replace"),
        stderr=stderr,
        timed_out=timed_out,
        output_limit_exceeded=over,
        duration_seconds=duration,
        code_completed=bool(code_records and code_records[0][0]),
        code_error=code_error,
        checks=checks,
        layers=tuple(ready[0].split(",")),
    )


def _collect(process: subprocess.Popen, result_fd: int, deadline: float,
             max_output: int) -> tuple[dict[str, bytearray], bool, bool]:
    """Read stdout, stderr and the result pipe until they close, the deadline passes or output overflows."""
    assert process.stdout is not None and process.stderr is not None
    streams = {"stdout": bytearray(), "stderr": bytearray(), "result": bytearray()}
    selector = selectors.DefaultSelector()
    selector.register(process.stdout.fileno(), selectors.EVENT_READ, "stdout")
    selector.register(process.stderr.fileno(), selectors.EVENT_READ, "stderr")
    selector.register(result_fd, selectors.EVENT_READ, "result")
    timed_out = over = False
    open_count = 3
    try:
        while open_count:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                timed_out = True
                break
            for key, _ in selector.select(remaining):
                chunk = os.read(key.fd, 1 << 16)
                if not chunk:
                    selector.unregister(key.fd)
                    open_count -= 1
                    continue
                buffer = streams[key.data]
                if key.data == "result":
                    if len(buffer) < (4 << 20):
                        buffer += chunk
                    continue
                room = max_output - len(streams["stdout"]) - len(streams["stderr"])
                buffer += chunk[:max(room, 0)]
                if len(chunk) > room:
                    over = True
            if over:
                break
    finally:
        selector.close()
        process.stdout.close()
        process.stderr.close()
    return streams, timed_out, over


def _kill_group(process: subprocess.Popen) -> None:
    try:
        os.killpg(process.pid, 9)
    except (ProcessLookupError, PermissionError):
        pass
