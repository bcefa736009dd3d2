"""A sandbox for untrusted Python (model output): the program runs in one process, several layers deep,
and whether its tests pass is decided in another.

`run_python(code, stdin=..., checks=[...], limits=SandboxLimits(...))` runs `code` in a fresh
interpreter (the *program*), then each trusted `check` snippet in a second interpreter (the
*judge*), and returns a `SandboxResult`: exit status, captured (capped) stdout/stderr, whether it
timed out, and one `CheckOutcome` per check.

Where the verdict is made. The judge runs the checks; it never runs the program's code and the
program never sees a check. A name a check uses that the check does not define (`add` in
`assert add(1, 2) == 3`) is looked up in the program over a pipe: plain values (numbers, strings,
bytes, lists, tuples, dicts, sets, None) are copied to the judge; anything else (a function, a
class, an instance) stays in the program and the judge holds a handle, so calling it, reading its
attributes, iterating it or indexing it is a request to the program, whose answer comes back as a
value. The comparison, the assert and the pass/fail are the judge's, on plain data: whatever the
program does in its own process (walking frames, forging pipe messages, rebinding builtins, exiting
early, an `__eq__` that always says yes) it can only give answers, and a wrong answer fails. The
judge's report travels on a pipe the program does not hold, signed with a nonce it never had.

What a check sees: the real builtins (a program's `len = ...` does not shadow them in the checks);
a standard-library module the program imported (`math`) is the judge's own import of it; arguments
cross by value (a list the program mutates in place is copied back, one level deep); an exception
the program raises reaches the check as the same built-in exception type (its own classes: as
`ProgramError`); a handle's truth value is an error (`assert f(x)` needs a real True). Files the
program writes are not visible to the checks.

Layers around the program, outermost first; each one that the machine cannot provide is skipped and
named in `SandboxResult.layers` / `sandbox_layers()`:

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
4. audit hook (in the program, added just before its code runs): denies opening or listing files
   outside the working directory (reads of the standard library allowed), sockets, subprocesses,
   exec, fork, spawn, os.system, kill, ctypes, gc object walks, tracing, sub-interpreters, building
   code objects, links, and importing the modules that bypass these. It reads its arguments by exact
   type only (a `str` subclass or a path-like object is refused, never asked for its value) and
   calls no function the program can rebind, so the program gets no callback from inside it. A
   Python audit hook is still not a security boundary on its own (crafted bytecode through marshal,
   a thread racing a path check): it is the inner layer.

OS isolation means layer 2 or 3 (a separate uid, or a mount + network namespace). Without either,
only the audit hook stands between the program and the user's files and network, and `run_python`
refuses to run unless `SandboxLimits(allow_in_process_sandbox_only=True)`; the code rules take the
same name as a parameter. The verdict does not depend on any layer.

Not covered: memory is limited per process (RLIMIT_AS), not per run (no cgroup); a check that
passes a function of its own to the program is an error (functions do not cross).

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
    "os_isolated",
    "run_python",
    "sandbox_layers",
]


class SandboxError(RuntimeError):
    """The sandbox itself could not run the program (not the program's fault): setup failed, or the
    machine cannot isolate it and in-process-only was not allowed."""


@dataclass(frozen=True)
class SandboxLimits:
    """Limits of one run. The defaults suit small programs from stdin/stdout or assert tests.

    `isolate`, `drop_privileges` and `audit_hook` switch layers off; they exist so that tests can
    check each remaining layer alone. Leave them on. `allow_in_process_sandbox_only` accepts a
    machine (or switches) that leave only the audit hook between the program and your files and
    network: see the module docstring.
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
    allow_in_process_sandbox_only: bool = False
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




# -- values between the program and the judge -------------------------------------------------------------

_CODEC = r'''
def _codec():
    """encode, decode: plain values as JSON-able data, and back; anything else is a handle (see the module
    docstring of retrain.rewards.sandbox). Decoding is strict: exact types, tags and shapes, or ValueError."""
    MAX_DEPTH = 100
    fromhex = float.fromhex

    def encode(value, handle, depth=0):
        if depth > MAX_DEPTH:
            raise ValueError("a value nested more than %d deep" % MAX_DEPTH)
        if value is None or value is True or value is False:
            return value
        deeper = depth + 1
        if isinstance(value, bool):
            return bool(value)
        if isinstance(value, int):
            return {"i": "%x" % int(value)}
        if isinstance(value, float):
            return {"f": float.hex(float(value))}
        if isinstance(value, complex):
            return {"c": [float.hex(value.real), float.hex(value.imag)]}
        if isinstance(value, str):
            return str.__str__(value)
        if isinstance(value, bytearray):
            return {"ba": bytearray.hex(value)}
        if isinstance(value, bytes):
            return {"b": bytes.hex(value)}
        if isinstance(value, list):
            return [encode(item, handle, deeper) for item in list(value)]
        if isinstance(value, tuple):
            return {"t": [encode(item, handle, deeper) for item in tuple(value)]}
        if isinstance(value, dict):
            return {"d": [[encode(k, handle, deeper), encode(v, handle, deeper)] for k, v in dict(value).items()]}
        if isinstance(value, frozenset):
            return {"fs": [encode(item, handle, deeper) for item in value]}
        if isinstance(value, set):
            return {"s": [encode(item, handle, deeper) for item in value]}
        return handle(value)

    def decode(data, resolve, depth=0):
        if depth > MAX_DEPTH:
            raise ValueError("a value nested more than %d deep" % MAX_DEPTH)
        kind = type(data)
        if data is None or kind is bool or kind is str:
            return data
        deeper = depth + 1
        if kind is list:
            return [decode(item, resolve, deeper) for item in data]
        if kind is dict:
            if "h" in data:
                return resolve(data)
            if len(data) == 1:
                ((tag, body),) = data.items()
                if type(body) is str:
                    if tag == "i":
                        return int(body, 16)
                    if tag == "f":
                        return fromhex(body)
                    if tag == "b":
                        return bytes.fromhex(body)
                    if tag == "ba":
                        return bytearray.fromhex(body)
                elif type(body) is list:
                    if tag == "c" and len(body) == 2 and type(body[0]) is str and type(body[1]) is str:
                        return complex(fromhex(body[0]), fromhex(body[1]))
                    if tag in ("t", "s", "fs"):
                        items = [decode(item, resolve, deeper) for item in body]
                        return tuple(items) if tag == "t" else set(items) if tag == "s" else frozenset(items)
                    if tag == "d":
                        result = {}
                        for pair in body:
                            if type(pair) is not list or len(pair) != 2:
                                raise ValueError("a malformed dict")
                            result[decode(pair[0], resolve, deeper)] = decode(pair[1], resolve, deeper)
                        return result
        raise ValueError("a malformed value")

    return encode, decode
'''


_READ_JOB = r'''

def _read_job():
    """The job the parent wrote to the descriptor named by argv[1] (read whole, then closed)."""
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
'''


# -- the program's side: trusted setup, then the untrusted code, then answering the judge ----------------

_PROGRAM = _CODEC + r'''
import os, sys
''' + _READ_JOB + r'''


def _make_hook(write_roots, read_roots):
    """The audit hook: the sandbox policy, event by event (see the module docstring of the sandbox).

    Everything it uses is bound here, before the program runs: it looks up no global, builtin or module
    attribute at call time (the program may rebind any of them), reads its arguments by exact type only,
    and calls no method of an object the program made. So the program gets no callback from inside it.
    """
    import posix
    from stat import S_ISLNK
    type_, len_, reversed_, PermissionError_, OSError_ = type, len, reversed, PermissionError, OSError
    str_, bytes_, int_, tuple_ = str, bytes, int, tuple
    startswith, split, rfind, decode = str.startswith, str.split, str.rfind, bytes.decode
    lstat, readlink, getcwd = posix.lstat, posix.readlink, posix.getcwd
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

    def resolve(path):
        """posixpath.realpath(path) for an absolute str, from the C functions bound above."""
        pending = [part for part in split(path, "/") if part][::-1]
        current, hops = "", 0
        while pending:
            part = pending.pop()
            if part == ".":
                continue
            if part == "..":
                current = current[:rfind(current, "/")] if current else ""
                continue
            candidate = current + "/" + part
            try:
                is_link = S_ISLNK(lstat(candidate).st_mode)
            except OSError_:
                is_link = False
            if not is_link:
                current = candidate
                continue
            hops += 1
            if hops > 40:
                raise PermissionError_("sandbox: too many symbolic links in a path")
            target = readlink(candidate)
            if startswith(target, "/"):
                current = ""
            pending.extend(reversed_([part for part in split(target, "/") if part]))
        return current or "/"

    def inside(path, roots):
        for root in roots:
            if path == root or startswith(path, root + "/"):
                return True
        return False

    def check_path(event, value, is_write):
        kind = type_(value)
        if value is None or kind is int_:
            return  # the working directory, or a descriptor the program already holds
        if kind is bytes_:
            value = decode(value, "utf-8", "surrogateescape")
        elif kind is not str_:  # a subclass or a path-like object could name another file when asked again
            raise PermissionError_("sandbox: %s of a path that is not a str or bytes denied (pass a str)" % event)
        path = resolve(value if startswith(value, "/") else getcwd() + "/" + value)
        allowed = inside(path, write_roots) if is_write else inside(path, read_roots) or path in read_files
        if not allowed:
            raise PermissionError_("sandbox: %s %r denied (outside the working directory)" % (event, value))

    def hook(event, args):
        if type_(args) is not tuple_ or type_(event) is not str_:
            raise PermissionError_("sandbox: malformed audit event")
        if event == "open":
            if len_(args) != 3:
                raise PermissionError_("sandbox: malformed open event")
            path, mode, flags = args
            if flags is None:
                flags = 0
            if type_(flags) is not int_ or not (mode is None or type_(mode) is str_):
                raise PermissionError_("sandbox: open with a mode or flags of an odd type denied")
            is_write = bool(flags & writes) or (mode is not None and any_of(mode, "wax+"))
            check_path(event, path, is_write)
        elif event == "import":
            name = args[0] if len_(args) else None
            if type_(name) is not str_:
                raise PermissionError_("sandbox: import of a name that is not a str denied")
            if split(name, ".", 1)[0] in denied_imports:
                raise PermissionError_("sandbox: import of %s denied" % name)
        elif event in path_events:
            positions, is_write = path_events[event]
            for i in positions:
                if i < len_(args):
                    check_path(event, args[i], is_write)
        elif startswith(event, denied_prefixes):
            raise PermissionError_("sandbox: %s denied" % event)

    def any_of(text, letters):
        for letter in letters:
            if letter in text:
                return True
        return False

    return hook


def _serve(namespace, call_fd, send):
    """Answer the judge's requests until it closes the pipe: look up a name, call, read an attribute, ...

    Runs in the program's process after its code: nothing here decides a verdict, and the program may
    tamper with all of it; an answer is only ever a value the judge compares."""
    encode, decode = _codec()
    type_, str_, list_, dict_, set_, bytearray_, module_type = type, str, list, dict, set, bytearray, type(os)
    handles, keys = {}, {}

    def handle(value):
        key = keys.get(id(value))
        if key is None:
            key = keys[id(value)] = len(handles) + 1
            handles[key] = value
        try:
            name = type_(value).__name__
            name = name if type_(name) is str_ else "object"
        except BaseException:
            name = "object"
        return {"h": key, "n": name}

    def resolve(data):
        key = data.get("h")
        if type_(key) is not int or key not in handles:
            raise ValueError("an unknown handle")
        return handles[key]

    def perform(request):
        op = request["op"]
        if op == "get":
            name = request["name"]
            if type_(name) is not str_ or name.startswith("__") or name not in namespace:
                raise NameError("name %r is not defined" % (name,))
            value = namespace[name]
            if type_(value) is module_type:
                return {"m": value.__name__}
            return {"v": encode(value, handle)}
        target = decode(request["t"], resolve)
        if op == "call":
            args = decode(request["a"], resolve)
            kwargs = decode(request["k"], resolve)
            result = target(*args, **kwargs)
            mutable = (list_, dict_, set_, bytearray_)
            after = [encode(arg, handle) if type_(arg) in mutable else None for arg in args]
            after_kw = {k: encode(v, handle) for k, v in kwargs.items() if type_(v) in mutable}
            return {"v": encode(result, handle), "m": after, "km": after_kw}
        if op == "getattr":
            return {"v": encode(getattr(target, request["name"]), handle)}
        if op == "setattr":
            setattr(target, request["name"], decode(request["value"], resolve))
            return {"v": None}
        if op == "iter":
            return {"v": encode(list(target), handle)}
        if op == "len":
            return {"v": encode(len(target), handle)}
        if op == "getitem":
            return {"v": encode(target[decode(request["key"], resolve)], handle)}
        if op == "contains":
            return {"v": bool(decode(request["item"], resolve) in target)}
        if op == "str":
            return {"v": encode(str(target), handle)}
        raise ValueError("an unknown request %r" % (op,))

    import json
    loads = json.loads
    buffer = b""
    while True:
        while b"\n" not in buffer:
            chunk = os.read(call_fd, 1 << 16)
            if not chunk:
                return
            buffer += chunk
        line, _, buffer = buffer.partition(b"\n")
        try:
            reply = perform(loads(line))
        except BaseException as exc:
            reply = {"e": [_name_of(exc), _text_of(exc)]}
        send(reply)


def _name_of(exc):
    try:
        name = type(exc).__name__
        return name if type(name) is str else "Exception"
    except BaseException:
        return "Exception"


def _text_of(exc):
    try:
        text = str(exc)
        return text[:2000] if type(text) is str else ""
    except BaseException:
        return ""


def _program():
    job = _read_job()
    setup_fd, reply_fd, call_fd = job["setup_fd"], job["reply_fd"], job["call_fd"]
    import json
    dumps = json.dumps

    def report(record):
        os.write(setup_fd, (dumps(record) + "\n").encode())

    def setup_failed(what, exc):
        report({"setup_error": "%s: %s: %s" % (what, type(exc).__name__, exc)})
        os._exit(70)

    import builtins, resource
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
        hook = _make_hook(write_roots, read_roots)
    report({"ready": layers})
    os.close(setup_fd)
    # -- run the code, then answer the judge --
    for name in ("ctypes", "_ctypes", "_posixsubprocess", "subprocess"):
        sys.modules.pop(name, None)
    builtins.exit = builtins.quit = sys.exit  # -S leaves them out; programs call them
    sys.argv[:] = ["solution.py"]
    # Everything used after the untrusted code starts is bound here: it may rebind builtins and modules.
    exec_, compile_, type_, str_, int_ = exec, compile, type, str, int
    BaseException_, SystemExit_ = BaseException, SystemExit
    stdout, stderr, print_, exit_, write = sys.stdout, sys.stderr, print, os._exit, os.write
    code = job["code"]
    namespace = {"__name__": job["module_name"], "__builtins__": builtins}
    del job

    def send(record):
        data = (dumps(record) + "\n").encode()
        while data:
            data = data[write(reply_fd, data):]

    if audit:
        sys.addaudithook(hook)
        del hook
    status = 0
    try:
        exec_(compile_(code, "<solution>", "exec"), namespace)
        completed, error = True, ""
    except SystemExit_ as exc:
        status = 0 if exc.code is None else exc.code if type_(exc.code) is int_ else 1
        completed, error = status == 0, "" if status == 0 else "SystemExit: %s" % _text_of(exc)
    except BaseException_ as exc:
        text = _text_of(exc)
        completed, error, status = False, _name_of(exc) + (": " + text if text else ""), 1
    if error:
        try:
            print_("Traceback (most recent call last) not shown in the sandbox\n" + error, file=stderr)
        except BaseException_:
            pass
    try:
        send({"completed": completed, "error": error, "status": status})
        if call_fd is not None and completed:
            _serve(namespace, call_fd, send)
    except BaseException_:
        pass
    for stream in (stdout, stderr):
        try:
            type_(stream).flush(stream)
        except BaseException_:
            pass
    exit_(status if type_(status) is int_ and 0 <= status < 256 else 1)


_program()
'''


# -- the judge: trusted, runs the checks; the program's objects are handles -----------------------------

_JUDGE = _CODEC + r'''
import os, sys
''' + _READ_JOB + r'''


class ProgramError(Exception):
    """The program raised an exception of a class of its own (its name and message are in the text)."""


class ProgramEnded(Exception):
    """The program's process ended (exited, crashed or was killed) before it answered."""


MAX_REPLY = 64 << 20


def _judge():
    import builtins, importlib, json, resource
    job = _read_job()
    nonce, call_fd, reply_fd, result_fd = job["nonce"], job["call_fd"], job["reply_fd"], job["result_fd"]
    memory = max(job["memory_mb"], 256) << 20
    resource.setrlimit(resource.RLIMIT_AS, (memory, memory))
    resource.setrlimit(resource.RLIMIT_CORE, (0, 0))
    encode, decode = _codec()
    dumps, loads = json.dumps, json.loads

    def report(record):
        record["nonce"] = nonce
        data = (dumps(record) + "\n").encode()
        while data:
            data = data[os.write(result_fd, data):]

    buffer = bytearray()

    def receive():
        while True:
            end = buffer.find(b"\n")
            if end >= 0:
                line = bytes(buffer[:end])
                del buffer[:end + 1]
                break
            if len(buffer) > MAX_REPLY:
                raise ProgramError("the program's answer is larger than %d MiB" % (MAX_REPLY >> 20))
            try:
                chunk = os.read(reply_fd, 1 << 16)
            except OSError:
                chunk = b""
            if not chunk:
                raise ProgramEnded("the program ended before it answered")
            buffer.extend(chunk)
        try:
            message = loads(line)
        except (ValueError, RecursionError):
            raise ProgramError("the program answered with malformed data") from None
        if type(message) is not dict:
            raise ProgramError("the program answered with malformed data")
        return message

    def request(message):
        data = (dumps(message) + "\n").encode()
        try:
            while data:
                data = data[os.write(call_fd, data):]
        except OSError:
            raise ProgramEnded("the program ended before it answered") from None
        return receive()

    remotes = {}

    def remote(data):
        key, name = data.get("h"), data.get("n")
        if type(key) is not int or type(name) is not str or len(data) != 2:
            raise ProgramError("the program answered with a malformed handle")
        if key not in remotes:
            remotes[key] = Remote(key, name[:100])
        return remotes[key]

    def handle_of(value):
        if type(value) is Remote:
            return {"h": object.__getattribute__(value, "_key"), "n": ""}
        raise TypeError("a check passed a %s to the program; only plain values (numbers, strings, bytes, lists, "
                        "tuples, dicts, sets, None) and the program's own objects cross to it"
                        % type(value).__name__)

    def exception(reply):
        error = reply.get("e")
        if type(error) is not list or len(error) != 2 or type(error[0]) is not str or type(error[1]) is not str:
            raise ProgramError("the program answered with a malformed error")
        name, text = error[0][:100], error[1]
        cls = getattr(builtins, name, None)
        if type(cls) is type and issubclass(cls, Exception) and cls.__module__ == "builtins":
            try:
                return cls(text)
            except Exception:
                pass
        return ProgramError("%s: %s" % (name, text) if text else name)

    def value_of(reply):
        if "e" in reply:
            raise exception(reply)
        if "v" not in reply:
            raise ProgramError("the program answered with malformed data")
        try:
            return decode(reply["v"], remote)
        except (ValueError, TypeError, RecursionError, OverflowError) as exc:
            raise ProgramError("the program answered with malformed data (%s)" % exc) from None

    def ask(op, target, **fields):
        return value_of(request({"op": op, "t": encode(target, handle_of), **fields}))

    def call(target, args, kwargs):
        reply = request({"op": "call", "t": encode(target, handle_of), "a": encode(list(args), handle_of),
                         "k": encode(dict(kwargs), handle_of)})
        result = value_of(reply)
        after, after_kw = reply.get("m"), reply.get("km")
        if type(after) is list and len(after) == len(args):  # arguments the program changed in place
            for original, changed in zip(args, after):
                if changed is not None:
                    _update(original, decode(changed, remote))
        if type(after_kw) is dict:
            for name, changed in after_kw.items():
                if name in kwargs:
                    _update(kwargs[name], decode(changed, remote))
        return result

    def typed(value, kind, what):
        if type(value) is not kind:
            raise TypeError("the program's %s returned a %s, not a %s" % (what, type(value).__name__, kind.__name__))
        return value

    class Remote:
        """An object that stays in the program: each use is a request, each answer a value."""

        __slots__ = ("_key", "_name")

        def __init__(self, key, name):
            object.__setattr__(self, "_key", key)
            object.__setattr__(self, "_name", name)

        def __call__(self, *args, **kwargs):
            return call(self, args, kwargs)

        def __getattr__(self, name):
            if name.startswith("__") and name.endswith("__"):
                raise AttributeError(name)
            return ask("getattr", self, name=name)

        def __setattr__(self, name, value):
            ask("setattr", self, name=name, value=encode(value, handle_of))

        def __iter__(self):
            return iter(typed(ask("iter", self), list, "iteration"))

        def __len__(self):
            return typed(ask("len", self), int, "__len__")

        def __getitem__(self, key):
            return ask("getitem", self, key=encode(key, handle_of))

        def __contains__(self, item):
            return typed(ask("contains", self, item=encode(item, handle_of)), bool, "__contains__")

        def __bool__(self):
            raise TypeError("the truth of the program's %s object is not decided by the program: return a bool "
                            "or a plain value" % object.__getattribute__(self, "_name"))

        def __str__(self):
            return typed(ask("str", self), str, "__str__")

        def __repr__(self):
            return "<the program's %s object>" % object.__getattribute__(self, "_name")

    cached = {}

    class Names(dict):
        """The checks' builtins: the real ones, then the program's names, looked up when used."""

        def __missing__(self, name):
            if type(name) is not str:
                raise KeyError(name)
            if name in cached:
                return cached[name]
            reply = request({"op": "get", "name": name})
            if "m" in reply:
                module = reply["m"]
                if type(module) is str and module.partition(".")[0] in sys.stdlib_module_names:
                    try:
                        cached[name] = importlib.import_module(module)
                        return cached[name]
                    except ImportError:
                        pass
                raise NameError("name %r is a module the checks cannot import" % name)
            if "e" in reply:
                raise NameError("name %r is not defined" % name)
            value = value_of(reply)
            if type(value) is Remote:
                cached[name] = value
            return value

    def describe(exc):
        try:
            text = str(exc)
            return "%s: %s" % (type(exc).__name__, text) if text else type(exc).__name__
        except BaseException:
            return "exception"

    try:
        hello = receive()
    except (ProgramEnded, ProgramError):
        return  # the program never returned to its harness: the parent says why
    completed, error = hello.get("completed"), hello.get("error")
    completed = completed if type(completed) is bool else False
    error = error[:2000] if type(error) is str else ""
    report({"kind": "code", "completed": completed, "error": error})
    if not completed:
        return
    namespace = {"__name__": "__checks__", "__builtins__": Names(builtins.__dict__)}
    for index, check in enumerate(job["checks"]):
        try:
            exec(compile(check, "<test %d>" % index, "exec"), namespace)
            report({"kind": "check", "index": index, "ok": True, "error": ""})
        except BaseException as exc:
            report({"kind": "check", "index": index, "ok": False, "error": describe(exc)})
    os.close(call_fd)


def _update(original, changed):
    """A list, dict, set or bytearray argument the program changed, changed here too (one level deep)."""
    kind = type(original)
    if kind is not type(changed):
        return
    if kind is list or kind is bytearray:
        original[:] = changed
    elif kind is dict or kind is set:
        original.clear()
        original.update(changed)


_judge()
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

_layers_cache: dict[tuple[bool, bool, bool], tuple[str, ...]] = {}
_layers_lock = threading.Lock()


def sandbox_layers(limits: SandboxLimits | None = None) -> tuple[str, ...]:
    """The layers a run with `limits` (default: the defaults) gets on this machine, e.g. ('process',
    'namespaces', 'no_new_privs', 'uid ...', 'audit hook'); measured once per combination of switches."""
    _require_posix()
    limits = limits or SandboxLimits()
    key = (limits.isolate, limits.drop_privileges, limits.audit_hook)
    with _layers_lock:
        if key not in _layers_cache:
            probe = SandboxLimits(isolate=key[0], drop_privileges=key[1], audit_hook=key[2],
                                  allow_in_process_sandbox_only=True, uid_base=limits.uid_base)
            _layers_cache[key] = _run(probe, "pass", None, (), "__main__").layers
        return _layers_cache[key]


def os_isolated(layers: Sequence[str]) -> bool:
    """Whether the kernel keeps the program from the user's files: its own uid, or a mount namespace."""
    return "namespaces" in layers or any(layer.startswith("uid ") for layer in layers)


IN_PROCESS_ONLY = (
    "this machine gives the code sandbox no OS isolation (layers: {layers}): neither a separate uid (run as "
    "root) nor namespaces (root with CAP_SYS_ADMIN), so only a Python audit hook would stand between "
    "model-written code and your files and network, and such a hook can be bypassed. Run as root in a container, "
    "or accept the risk with allow_in_process_sandbox_only: true (the verdicts stay sound either way: they are "
    "made outside the program's process)"
)


def check_isolation(limits: SandboxLimits | None = None) -> tuple[str, ...]:
    """The layers `limits` get here; SandboxError if they include no OS isolation and that was not allowed."""
    limits = limits or SandboxLimits()
    layers = sandbox_layers(limits)
    if not os_isolated(layers) and not limits.allow_in_process_sandbox_only:
        raise SandboxError(IN_PROCESS_ONLY.format(layers=", ".join(layers)))
    return layers


def run_python(
    code: str,
    *,
    stdin: str | None = None,
    checks: Sequence[str] = (),
    limits: SandboxLimits | None = None,
    module_name: str = "__main__",
) -> SandboxResult:
    """Run untrusted `code` in the sandbox; then each trusted `checks` snippet, in the judge, against it.

    `stdin` is the program's standard input (none: /dev/null). `module_name` is the `__name__` the
    code sees. Returns the `SandboxResult`; raises `SandboxError` only when the sandbox itself
    fails or cannot isolate the program (not for anything the program does). Thread-safe: run many
    at once from a thread pool.
    """
    _require_posix()
    limits = limits or SandboxLimits()
    check_isolation(limits)
    return _run(limits, code, stdin, tuple(checks), module_name)


def _job_file(job: dict) -> tempfile._TemporaryFileWrapper:
    handle = tempfile.TemporaryFile()
    handle.write(json.dumps(job).encode())
    handle.flush()
    handle.seek(0)
    return handle  # type: ignore[return-value]


def _run(limits: SandboxLimits, code: str, stdin: str | None, checks: tuple[str, ...],
         module_name: str) -> SandboxResult:
    drop = limits.drop_privileges and os.geteuid() == 0
    slot = _acquire_slot() if drop else None
    uid = _uid_range_start(limits) + slot if slot is not None else None
    workdir = tempfile.mkdtemp(prefix="retrain-sandbox-")
    nonce = secrets.token_hex(16)
    # setup: the program's layers, before its code runs; reply: its answers; call: the judge's requests;
    # result: the judge's verdicts (the program never holds this one).
    setup_r, setup_w = os.pipe()
    reply_r, reply_w = os.pipe()
    call_r, call_w = os.pipe() if checks else (-1, -1)
    result_r, result_w = os.pipe() if checks else (-1, -1)
    mine = {setup_r, reply_r, call_w, result_r}  # the ends this process reads or writes until the end
    theirs = {setup_w, reply_w, call_r, result_w}  # closed here once the child holding them has started
    files: list = []
    program = judge = None
    try:
        if uid is not None:
            os.chown(workdir, uid, uid)
        nproc: int | None = limits.max_processes
        if not drop:  # RLIMIT_NPROC counts all of this user's processes: leave room for them
            nproc = _user_tasks(os.getuid()) + limits.max_processes if sys.platform.startswith("linux") else None
        cpu = limits.cpu_seconds if limits.cpu_seconds is not None else limits.timeout_seconds + 1
        program_job = _job_file({
            "setup_fd": setup_w, "reply_fd": reply_w, "call_fd": call_r if checks else None, "code": code,
            "module_name": module_name, "workdir": workdir, "uid": uid, "gid": uid,
            "isolate": limits.isolate, "disk_mb": limits.disk_mb, "cpu_seconds": max(1, int(cpu + 0.999)),
            "memory_mb": limits.memory_mb, "max_file_mb": limits.max_file_mb,
            "max_open_files": limits.max_open_files, "nproc": nproc, "audit": limits.audit_hook,
        })
        files.append(program_job)
        stdin_file = None
        if stdin is not None:
            stdin_file = tempfile.TemporaryFile()
            files.append(stdin_file)
            stdin_file.write(stdin.encode())
            stdin_file.flush()
            stdin_file.seek(0)
        env = {"PATH": "/usr/bin:/bin", "LANG": "C.UTF-8", "LC_ALL": "C.UTF-8", "HOME": workdir, "TMPDIR": workdir}
        started = time.monotonic()
        program_fds = [program_job.fileno(), setup_w, reply_w] + ([call_r] if checks else [])
        program = subprocess.Popen(
            [sys.executable, "-I", "-S", "-B", "-X", "utf8", "-c", _PROGRAM, str(program_job.fileno())],
            stdin=stdin_file if stdin_file is not None else subprocess.DEVNULL,
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, cwd=workdir, env=env,
            pass_fds=program_fds, start_new_session=True,
        )
        if checks:
            judge_job = _job_file({
                "nonce": nonce, "checks": list(checks), "call_fd": call_w, "reply_fd": reply_r,
                "result_fd": result_w, "memory_mb": limits.memory_mb,
            })
            files.append(judge_job)
            judge = subprocess.Popen(
                [sys.executable, "-I", "-S", "-B", "-X", "utf8", "-c", _JUDGE, str(judge_job.fileno())],
                stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, cwd=workdir,
                env={"PATH": "/usr/bin:/bin", "LANG": "C.UTF-8", "LC_ALL": "C.UTF-8"},
                pass_fds=(judge_job.fileno(), call_w, reply_r, result_w), start_new_session=True,
            )
            mine -= {call_w, reply_r}  # the judge's now
            theirs |= {call_w, reply_r}
        for fd in theirs:
            if fd >= 0:
                os.close(fd)
        theirs.clear()
        for handle in files:
            handle.close()
        streams, timed_out, over = _collect(program, judge, {"setup": setup_r, "result" if checks else "status":
                                                             result_r if checks else reply_r},
                                            started + limits.timeout_seconds, limits.max_output_bytes)
        _stop(program, judge, uid)
        returncode = program.wait()
        duration = time.monotonic() - started
    finally:
        if (program is not None and program.returncode is None) or (judge is not None and judge.returncode is None):
            _stop(program, judge, uid)
        for fd in mine | theirs:
            if fd >= 0:
                try:
                    os.close(fd)
                except OSError:
                    pass
        for handle in files:
            handle.close()
        shutil.rmtree(workdir, ignore_errors=True)
        if slot is not None:
            _release_slot(slot)
    return _result(streams, nonce, len(checks), returncode, timed_out, over, duration)


def _stop(program: subprocess.Popen | None, judge: subprocess.Popen | None, uid: int | None) -> None:
    """Kill the program (its process group, and every process of its uid) and the judge; reap both."""
    if program is not None:
        _kill_group(program)
        if uid is not None:
            _kill_uid(uid)
        program.wait()
    if judge is not None:
        _kill_group(judge)
        judge.wait()
        if judge.stderr is not None:
            judge.stderr.close()


def _lines(data: bytes) -> list[dict]:
    records = []
    for line in data.split(b"\n"):
        try:
            record = json.loads(line)
        except ValueError:
            continue
        if isinstance(record, dict):
            records.append(record)
    return records


def _result(streams: dict[str, bytearray], nonce: str, n_checks: int, returncode: int, timed_out: bool,
            over: bool, duration: float) -> SandboxResult:
    setup = _lines(bytes(streams["setup"]))
    stderr = streams["stderr"].decode("utf-8", "replace")
    failed = [r["setup_error"] for r in setup if isinstance(r.get("setup_error"), str)]
    if failed:
        raise SandboxError(f"sandbox setup failed: {failed[0]}")
    ready = [r["ready"] for r in setup if isinstance(r.get("ready"), list)]
    if not ready:
        if timed_out:
            raise SandboxError("the sandbox did not start within the timeout; is the machine overloaded?")
        raise SandboxError(f"the sandbox harness died before the code ran (exit {returncode}): {stderr[-2000:]}")
    judge_error = streams.get("judge", bytearray()).decode("utf-8", "replace")
    if "Traceback" in judge_error:
        raise SandboxError(f"the sandbox's judge failed: {judge_error[-2000:]}")
    if n_checks:  # the judge's records, signed
        records = [r for r in _lines(bytes(streams["result"]))
                   if isinstance(r.get("nonce"), str) and secrets.compare_digest(r["nonce"], nonce)]
    else:  # the program's own word on how its code ended: only a message, nothing is decided by it
        records = [{"kind": "code", **r} for r in _lines(bytes(streams["status"]))[:1]]
    code_records = [(r.get("completed") is True, str(r.get("error") or "")) for r in records if r.get("kind") == "code"]
    if not code_records:
        ended = "timed out" if timed_out else "output limit exceeded" if over else f"exit status {returncode}"
        code_error = f"the program ended before returning to the harness ({ended})"
        why = "not run: the program ended before the tests"
    else:
        code_error = code_records[0][1]
        why = ("not run: the program ended first" if code_records[0][0] else
               f"not run: the code raised {code_error}" if code_error else "not run: the code did not complete")
    checks = [CheckOutcome(False, why) for _ in range(n_checks)]
    for record in records:
        index = record.get("index")
        if record.get("kind") == "check" and type(index) is int and 0 <= index < n_checks:
            checks[index] = CheckOutcome(record.get("ok") is True, str(record.get("error") or ""))
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
        layers=tuple(str(layer) for layer in ready[0]),
    )


def _collect(program: subprocess.Popen, judge: subprocess.Popen | None, pipes: dict[str, int], deadline: float,
             max_output: int) -> tuple[dict[str, bytearray], bool, bool]:
    """Read the program's stdout and stderr and `pipes` until they close (and the judge, if any, has
    exited), the deadline passes or the output overflows."""
    assert program.stdout is not None and program.stderr is not None
    streams = {"stdout": bytearray(), "stderr": bytearray(), **{name: bytearray() for name in pipes}}
    selector = selectors.DefaultSelector()
    selector.register(program.stdout.fileno(), selectors.EVENT_READ, "stdout")
    selector.register(program.stderr.fileno(), selectors.EVENT_READ, "stderr")
    for name, fd in pipes.items():
        selector.register(fd, selectors.EVENT_READ, name)
    if judge is not None and judge.stderr is not None:
        streams["judge"] = bytearray()
        selector.register(judge.stderr.fileno(), selectors.EVENT_READ, "judge")
    timed_out = over = False
    open_count = len(selector.get_map())
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
                if key.data not in ("stdout", "stderr"):
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
        program.stdout.close()
        program.stderr.close()
    return streams, timed_out, over


def _kill_group(process: subprocess.Popen) -> None:
    try:
        os.killpg(process.pid, 9)
    except (ProcessLookupError, PermissionError):
        pass
