"""The code sandbox against real attacks, in real subprocesses: each layer is tested alone where it can be.

Layers (see retrain/rewards/sandbox.py): process limits, an own uid (as root), namespaces + a tmpfs
root (as root with CAP_SYS_ADMIN), and the audit hook. `isolate=False` / `audit_hook=False` switch
the namespace and hook layers off, to show what the other layers stop on their own.
"""

from __future__ import annotations

import os
import re
import socket
import threading
import time
from pathlib import Path

import pytest

from retrain.rewards import sandbox
from retrain.rewards.sandbox import SandboxError, SandboxLimits, run_python, sandbox_layers

ROOT = os.geteuid() == 0
LAYERS = sandbox_layers() if os.name == "posix" else ()
HAS_NAMESPACES = "namespaces" in LAYERS
HAS_UID = any(layer.startswith("uid ") for layer in LAYERS)

needs_root = pytest.mark.skipif(not HAS_UID, reason="dropping to a sandbox uid needs root")
needs_namespaces = pytest.mark.skipif(not HAS_NAMESPACES, reason="namespaces need root with CAP_SYS_ADMIN")

FAST = SandboxLimits(timeout_seconds=3)
NO_HOOK = SandboxLimits(timeout_seconds=3, audit_hook=False)
NO_NAMESPACES = SandboxLimits(timeout_seconds=3, isolate=False)
UID_ONLY = SandboxLimits(timeout_seconds=3, isolate=False, audit_hook=False)
# What a machine without root gets: the audit hook alone (refused unless allowed: see test_sandbox_attacks.py).
HOOK_ONLY = SandboxLimits(timeout_seconds=3, isolate=False, drop_privileges=False, allow_in_process_sandbox_only=True)


def sandbox_uid(result) -> int | None:
    for layer in result.layers:
        if layer.startswith("uid "):
            return int(layer.split()[1])
    return None


def processes_left(uid: int | None) -> list[int]:
    """Processes of `uid` still alive after up to 2 s (ones already past SIGKILL need a moment to go)."""
    deadline = time.monotonic() + 2
    while (found := processes_of(uid)) and time.monotonic() < deadline:
        time.sleep(0.05)
    return found


def processes_of(uid: int | None) -> list[int]:
    """Live processes of `uid` (zombies waiting for the machine's init to reap them are dead already)."""
    assert uid is not None
    found = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                status = Path(f"/proc/{entry}/status").read_text()
            except OSError:
                continue
            match = re.search(r"^Uid:\s+(\d+)", status, re.MULTILINE)
            state = re.search(r"^State:\s+(\w)", status, re.MULTILINE)
            if match and int(match.group(1)) == uid and not (state and state.group(1) in "ZX"):
                found.append(int(entry))
    return found


@pytest.fixture
def secret_file(tmp_path: Path) -> Path:
    path = tmp_path / "secret.txt"
    path.write_text("TOP-SECRET-VALUE")
    return path


# -- the basics ---------------------------------------------------------------------------------------


def test_runs_code_with_stdin_and_reports_checks():
    result = run_python("name = input()\nprint('hello', name)\ndef double(x):\n    return 2 * x",
                        stdin="world\n", checks=["assert double(2) == 4", "assert double(2) == 5"])
    assert result.ok and result.stdout == "hello world\n"
    assert [c.passed for c in result.checks] == [True, False]
    assert result.checks[1].error == "AssertionError"


def test_layers_on_this_machine_are_reported():
    assert LAYERS[0] == "process" and "audit hook" in LAYERS
    if ROOT:
        assert HAS_UID, LAYERS


def test_standard_library_imports_work_inside_every_layer_combination():
    code = ("import collections, dataclasses, decimal, fractions, heapq, itertools, json, math, random, re, "
            "statistics, typing\nP = collections.namedtuple('P', 'x y')\nprint(P(1, 2), decimal.Decimal('1.5') * 2)")
    for limits in (FAST, NO_HOOK, NO_NAMESPACES, UID_ONLY, HOOK_ONLY):
        result = run_python(code, limits=limits)
        assert result.ok, (limits, result.stderr)
        assert result.stdout == "P(x=1, y=2) 3.0\n"


def test_environment_has_no_parent_secrets(monkeypatch):
    monkeypatch.setenv("RETRAIN_TEST_API_KEY", "sk-should-not-leak")
    result = run_python("import os\nprint(dict(os.environ))")
    assert result.ok
    assert "sk-should-not-leak" not in result.stdout and "RETRAIN_TEST_API_KEY" not in result.stdout


# -- files --------------------------------------------------------------------------------------------


@pytest.mark.parametrize("limits", [FAST, NO_HOOK, NO_NAMESPACES, HOOK_ONLY],
                         ids=["all", "no-hook", "no-namespaces", "hook-only"])
def test_cannot_read_a_secret_outside_the_working_directory(secret_file, limits):
    result = run_python(f"print(open({str(secret_file)!r}).read())", limits=limits)
    assert "TOP-SECRET-VALUE" not in result.stdout
    assert not result.ok
    if limits.isolate and HAS_NAMESPACES:  # the file is not in the sandbox's root at all (/tmp is its own)
        assert "FileNotFoundError" in result.stderr
    else:  # the hook
        assert "sandbox: open" in result.stderr and "denied" in result.stderr


@needs_root
def test_uid_layer_alone_protects_a_private_file(secret_file):
    secret_file.chmod(0o600)
    result = run_python(f"print(open({str(secret_file)!r}).read())", limits=UID_ONLY)
    assert "TOP-SECRET-VALUE" not in result.stdout and "PermissionError" in result.stderr


def test_cannot_read_system_files():
    for limits in (FAST, NO_HOOK, NO_NAMESPACES, HOOK_ONLY):
        result = run_python("print(open('/etc/passwd').read())", limits=limits)
        assert "root:" not in result.stdout, limits


def test_cannot_list_or_walk_out_of_the_working_directory(secret_file):
    for limits in (FAST, NO_HOOK, NO_NAMESPACES, HOOK_ONLY):
        result = run_python(f"import os\nprint(os.listdir({str(secret_file.parent)!r}))", limits=limits)
        assert "secret.txt" not in result.stdout and not result.ok
    assert "os.listdir" in result.stderr and "denied" in result.stderr  # the hook, without namespaces
    # a symlink to the outside cannot even be made
    result = run_python(f"import os\nos.symlink({str(secret_file)!r}, 'link')\nprint(open('link').read())")
    assert "TOP-SECRET-VALUE" not in result.stdout and "os.symlink denied" in result.stderr


@pytest.mark.parametrize("limits", [FAST, NO_HOOK, NO_NAMESPACES, HOOK_ONLY],
                         ids=["all", "no-hook", "no-namespaces", "hook-only"])
def test_cannot_write_outside_the_working_directory(tmp_path, limits):
    target = tmp_path / "pwned.txt"
    tmp_path.chmod(0o777)  # not the file permissions: the sandbox's own layers must stop it
    result = run_python(f"open({str(target)!r}, 'w').write('owned')", limits=limits)
    assert not target.exists()
    assert not result.ok


@needs_namespaces
def test_tmp_is_private_to_the_run():
    marker = f"/tmp/retrain-sandbox-test-{os.getpid()}-{time.monotonic_ns()}"
    result = run_python(f"open({marker!r}, 'w').write('x')\nprint(open({marker!r}).read())", limits=NO_HOOK)
    assert result.ok and result.stdout == "x\n"
    assert not os.path.exists(marker)


def test_files_in_the_working_directory_work_and_are_removed():
    result = run_python("import os, pathlib\npathlib.Path('a.txt').write_text('hi')\n"
                        "os.mkdir('d')\nprint(open('a.txt').read(), sorted(os.listdir('.')), os.getcwd())")
    assert result.ok, result.stderr
    cwd = result.stdout.split()[-1]
    assert result.stdout.startswith("hi ['a.txt', 'd']")
    assert not (cwd.startswith("/tmp/retrain-sandbox-") and os.path.exists(cwd))


def test_file_size_is_limited():
    limits = SandboxLimits(timeout_seconds=3, max_file_mb=1)
    result = run_python("open('big', 'wb').write(b'x' * (4 << 20))", limits=limits)
    assert not result.ok  # SIGXFSZ or EFBIG


# -- network ------------------------------------------------------------------------------------------


@pytest.fixture
def listening_server():
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen()
    server.settimeout(0.2)
    accepted: list = []
    stop = threading.Event()

    def serve():
        while not stop.is_set():
            try:
                connection, _ = server.accept()
                accepted.append(connection)
            except OSError:
                continue

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    yield server.getsockname()[1], accepted
    stop.set()
    thread.join()
    server.close()


@pytest.mark.parametrize("limits", [FAST, NO_HOOK, HOOK_ONLY], ids=["all", "no-hook", "hook-only"])
def test_cannot_connect_to_a_local_server(listening_server, limits):
    if not limits.audit_hook and not HAS_NAMESPACES:
        pytest.skip("without the hook, only a network namespace stops this")
    port, accepted = listening_server
    code = f"import socket\ns = socket.socket()\ns.settimeout(1)\ns.connect(('127.0.0.1', {port}))\nprint('connected')"
    result = run_python(code, limits=limits)
    assert "connected" not in result.stdout and not result.ok
    time.sleep(0.3)
    assert accepted == []
    if limits.audit_hook:
        assert "socket" in result.stderr and "denied" in result.stderr
    else:
        assert "Network is unreachable" in result.stderr


def test_cannot_resolve_names():
    result = run_python("import socket\nprint(socket.getaddrinfo('example.com', 80))")
    assert not result.ok and "denied" in result.stderr


# -- processes ----------------------------------------------------------------------------------------


@pytest.mark.parametrize("code", [
    "import subprocess\nsubprocess.run(['id'])",
    "import os\nos.system('id')",
    "import os\nos.execv('/bin/sh', ['sh', '-c', 'id'])",
    "import os\nos.posix_spawn('/bin/sh', ['sh', '-c', 'id'], {})",
    "import os\nos.fork()",
    "import ctypes\nctypes.CDLL(None).system(b'id')",
    "import _posixsubprocess",
], ids=["subprocess", "system", "execv", "posix_spawn", "fork", "ctypes", "_posixsubprocess"])
def test_hook_denies_process_escapes(code):
    result = run_python(code)
    assert not result.ok and "denied" in result.stderr, result.stderr
    assert "uid=" not in result.stdout


@needs_namespaces
def test_without_the_hook_there_is_nothing_to_execute():
    result = run_python("import subprocess, sys\nfor cmd in (['/bin/sh', '-c', 'id'], [sys.executable, '-c', '1']):\n"
                        "    try:\n        subprocess.run(cmd)\n        print('ran', cmd)\n"
                        "    except OSError as e:\n        print(type(e).__name__)", limits=NO_HOOK)
    assert "ran" not in result.stdout and result.stdout.count("FileNotFoundError") == 2, result


@needs_root
def test_no_new_privileges_and_no_root():
    result = run_python("import os\nprint(os.getuid(), os.getgid(), os.getgroups())\n"
                        "print([l for l in open('/proc/self/status') if l.startswith('NoNewPrivs')])\n"
                        "try:\n    os.setuid(0)\nexcept PermissionError:\n    print('setuid denied')",
                        limits=UID_ONLY)
    uid = sandbox_uid(result)
    assert result.ok and uid is not None and uid != 0
    assert result.stdout.splitlines()[0] == f"{uid} {uid} []"
    assert "NoNewPrivs:\\t1" in result.stdout and "setuid denied" in result.stdout


def test_fork_bomb_is_denied_by_the_hook():
    result = run_python("import os\nwhile True:\n    os.fork()")
    assert not result.ok and "os.fork denied" in result.stderr


FORK_BOMB = """
import os, time
made = 0
try:
    while True:
        if os.fork() == 0:
            time.sleep(60)
            os._exit(0)
        made += 1
except OSError as exc:
    print(made, exc.errno)
"""


@needs_root
@pytest.mark.parametrize("limits", [NO_HOOK, UID_ONLY], ids=["namespaces", "uid-only"])
def test_fork_bomb_hits_the_process_limit_and_leaves_nothing_behind(limits):
    result = run_python(FORK_BOMB, limits=SandboxLimits(timeout_seconds=5, isolate=limits.isolate,
                                                        audit_hook=False, max_processes=8))
    made, errno = (int(x) for x in result.stdout.split())
    assert made < 8 and errno == 11  # EAGAIN from RLIMIT_NPROC
    assert processes_left(sandbox_uid(result)) == []


@needs_root
@pytest.mark.parametrize("limits", [NO_HOOK, UID_ONLY], ids=["namespaces", "uid-only"])
def test_a_double_forked_daemon_in_its_own_session_is_killed(limits):
    # The child leaves the process group (setsid), closes the pipes and sleeps: it survives the
    # program's exit and the process-group kill; the uid kill (and the pid namespace) get it.
    code = ("import os, time\nif os.fork() == 0:\n    os.setsid()\n    if os.fork() == 0:\n"
            "        for fd in (0, 1, 2):\n            os.close(fd)\n        time.sleep(60)\n    os._exit(0)\n"
            "time.sleep(0.3)\nprint('parent done')")
    result = run_python(code, limits=limits)
    assert result.stdout == "parent done\n"
    assert processes_left(sandbox_uid(result)) == []


@needs_root
def test_sleep_forever_with_children_is_killed_at_the_timeout():
    code = ("import os, time\nfor _ in range(3):\n    if os.fork() == 0:\n        os.setsid()\n        time.sleep(60)\n"
            "time.sleep(60)")
    started = time.monotonic()
    result = run_python(code, limits=SandboxLimits(timeout_seconds=1, audit_hook=False, isolate=False))
    assert result.timed_out and time.monotonic() - started < 3
    assert processes_left(sandbox_uid(result)) == []


# -- time, memory, output -------------------------------------------------------------------------


def test_infinite_loop_times_out():
    started = time.monotonic()
    result = run_python("while True:\n    pass", checks=["assert True"], limits=SandboxLimits(timeout_seconds=1))
    assert result.timed_out and not result.ok and time.monotonic() - started < 3
    assert not result.checks[0].passed and "timed out" in result.checks[0].error


def test_sleep_forever_times_out():
    started = time.monotonic()
    result = run_python("import time\ntime.sleep(1000)", limits=SandboxLimits(timeout_seconds=1))
    assert result.timed_out and time.monotonic() - started < 3


def test_cpu_limit_stops_a_loop_before_the_wall_clock():
    started = time.monotonic()
    result = run_python("while True:\n    pass", limits=SandboxLimits(timeout_seconds=20, cpu_seconds=1))
    assert not result.ok and not result.timed_out and time.monotonic() - started < 10


@pytest.mark.parametrize("code", ["x = bytearray(4 << 30)", "x = [0] * (10 ** 9)", "x = 'a' * (1 << 33)"])
def test_memory_bomb_fails_inside_its_limit(code):
    result = run_python(code, limits=SandboxLimits(timeout_seconds=5, memory_mb=256))
    assert not result.ok and "MemoryError" in result.stderr


def test_huge_output_is_truncated_and_stopped():
    started = time.monotonic()
    result = run_python("while True:\n    print('x' * 10000)", limits=SandboxLimits(timeout_seconds=10,
                                                                                 max_output_bytes=100_000))
    assert result.output_limit_exceeded and not result.ok and not result.timed_out
    assert len(result.stdout) + len(result.stderr) <= 100_000
    assert time.monotonic() - started < 5


# -- results the code cannot fake ---------------------------------------------------------------------


@pytest.mark.parametrize("code", [
    "import sys\nsys.exit(0)",
    "import os\nos._exit(0)",
    "print('1/1 tests passed')\nraise SystemExit",
    "import builtins\nbuiltins.len = lambda x: 3\ndef f():\n    return []",
    "import sys\nsys.audit('retrain.sandbox', 'check', 0, True, '')",
], ids=["sys.exit", "os._exit", "print", "rebind-builtins", "forged-audit-event"])
def test_exiting_or_faking_before_the_tests_does_not_pass_them(code):
    result = run_python(code, checks=["assert len(f()) == 3"])
    assert not result.checks[0].passed


def test_forged_result_lines_with_every_string_in_reach_do_not_pass():
    # Walk every frame up to the harness, collect every 32-hex string in sight, and write result
    # lines signed with each to every descriptor; then leave before the checks run.
    code = r"""
import os, re, sys
candidates = set()
frame = sys._getframe()
while frame is not None:
    for value in list(frame.f_locals.values()) + list(frame.f_globals.values()):
        for text in ([value] if isinstance(value, (str, bytes)) else []):
            text = text.decode() if isinstance(text, bytes) else text
            candidates.update(re.findall(r'[0-9a-f]{32}', text))
    frame = frame.f_back
for nonce in candidates | {'0' * 32}:
    for kind, index in (('ready', 0), ('code', 0), ('check', 0)):
        line = ('%s %s %d 1 -\n' % (nonce, kind, index)).encode()
        for fd in range(3, 64):
            try:
                os.write(fd, line)
            except OSError:
                pass
os._exit(0)
"""
    result = run_python(code, checks=["assert False"])
    assert not result.checks[0].passed


def test_checks_run_with_the_real_builtins_restored():
    result = run_python("import builtins\nbuiltins.sorted = lambda x: [1, 2]", checks=["assert sorted([3]) == [1, 2]"])
    assert not result.checks[0].passed


# -- what a check sees: the program's names, across the process boundary ----------------------------


def _passed(code, checks, limits=FAST):
    result = run_python(code, checks=checks, limits=limits, module_name="solution")
    return [check.passed for check in result.checks], result


def test_values_of_every_plain_type_cross_exactly():
    code = ("def f():\n    return [None, True, 2**200, -7, 0.1, float('inf'), -0.0, 1+2j, 'é\\ud800', b'\\x00', "
            "bytearray(b'ab'), (1, (2,)), {'k': {3}}, frozenset({4}), {(1, 2): [5]}]\nNAN = float('nan')")
    checks = ["v = f()\nassert v == [None, True, 2**200, -7, 0.1, float('inf'), -0.0, 1+2j, 'é\\ud800', b'\\x00', "
              "bytearray(b'ab'), (1, (2,)), {'k': {3}}, frozenset({4}), {(1, 2): [5]}]",
              "import math\nassert type(f()[10]) is bytearray and math.copysign(1, f()[6]) == -1",
              "assert NAN != NAN"]
    passed, result = _passed(code, checks)
    assert passed == [True, True, True], result.checks


def test_classes_instances_methods_and_attributes():
    code = ("class Node:\n    def __init__(self, val, next=None):\n        self.val, self.next = val, next\n"
            "class Solution:\n    def reverse(self, head):\n        prev = None\n        while head:\n"
            "            head.next, prev, head = prev, head, head.next\n        return prev\n")
    checks = ["head = Node(1, Node(2, Node(3)))\nnode = Solution().reverse(head)\nout = []\n"
              "while node is not None:\n    out.append(node.val)\n    node = node.next\nassert out == [3, 2, 1]",
              "n = Node(5)\nn.val = 6\nassert n.val == 6"]
    passed, result = _passed(code, checks)
    assert passed == [True, True], result.checks


def test_in_place_changes_to_arguments_are_copied_back():
    code = "def sort_in_place(xs):\n    xs.sort()\ndef add_key(d, key):\n    d[key] = 1\n"
    checks = ["xs = [3, 1, 2]\nsort_in_place(xs)\nassert xs == [1, 2, 3]",
              "d = {}\nadd_key(d, key='a')\nadd_key(d=d, key='b')\nassert d == {'a': 1, 'b': 1}"]
    passed, result = _passed(code, checks)
    assert passed == [True, True], result.checks


def test_exceptions_keep_their_builtin_type():
    code = "class Custom(Exception):\n    pass\ndef f(x):\n    if x < 0:\n        raise ValueError('negative')\n" \
           "    raise Custom('mine')\n"
    checks = ["try:\n    f(-1)\nexcept ValueError as exc:\n    assert str(exc) == 'negative'\nelse:\n    assert False",
              "f(1)"]
    passed, result = _passed(code, checks)
    assert passed == [True, False]
    assert result.checks[1].error == "ProgramError: Custom: mine"


def test_generators_iteration_len_indexing_and_membership():
    code = ("def gen(n):\n    yield from range(n)\nclass Box:\n    def __init__(self):\n        self.items = [1, 2]\n"
            "    def __len__(self):\n        return 2\n    def __getitem__(self, i):\n        return self.items[i]\n"
            "    def __contains__(self, x):\n        return x in self.items\n    def __iter__(self):\n"
            "        return iter(self.items)\n    def __str__(self):\n        return 'Box(1, 2)'\n")
    checks = ["assert list(gen(3)) == [0, 1, 2] and sum(gen(4)) == 6",
              "b = Box()\nassert len(b) == 2 and b[1] == 2 and 1 in b and 3 not in b and list(b) == [1, 2]",
              "assert str(Box()) == 'Box(1, 2)'"]
    passed, result = _passed(code, checks)
    assert passed == [True, True, True], result.checks


def test_names_are_looked_up_when_used():
    code = "count = 0\ndef bump():\n    global count\n    count += 1\n"
    checks = ["bump()\nbump()\nassert count == 2", "assert count == 2"]
    assert _passed(code, checks)[0] == [True, True]


def test_humaneval_style_check_function_and_helpers():
    code = "def add(a, b):\n    return a + b\n"
    checks = ["def check(candidate):\n    assert candidate(1, 2) == 3\n    assert all(candidate(i, i) == 2 * i "
              "for i in range(20))\ncheck(add)", "assert add(1, 2) == 3, f'got {add(1, 2)}'"]
    assert _passed(code, checks)[0] == [True, True]


def test_modules_the_program_imported_are_the_judges_own():
    code = "import math\nimport collections as c\ndef f():\n    return math.pi\n"
    checks = ["assert math.isclose(f(), 3.14159, rel_tol=1e-5)", "assert c.Counter('aab')['a'] == 2"]
    assert _passed(code, checks)[0] == [True, True]


def test_a_check_passing_a_function_of_its_own_gets_a_clear_error():
    code = "def apply(fn, x):\n    return fn(x)\n"
    passed, result = _passed(code, ["assert apply(lambda v: v + 1, 1) == 2"])
    assert passed == [False]
    assert "a check passed a function to the program" in result.checks[0].error


def test_a_name_the_program_lacks_is_a_name_error():
    passed, result = _passed("x = 1", ["assert missing(1) == 2"])
    assert passed == [False] and result.checks[0].error == "NameError: name 'missing' is not defined"


def test_the_program_output_during_checks_is_captured():
    code = "def f(x):\n    print('called with', x)\n    return x\n"
    passed, result = _passed(code, ["assert f(4) == 4"])
    assert passed == [True] and result.stdout == "called with 4\n"


# -- errors of the sandbox itself -------------------------------------------------------------------


@needs_root
def test_a_failing_setup_raises_sandbox_error():
    with pytest.raises(SandboxError, match="sandbox setup failed"):
        run_python("pass", limits=SandboxLimits(isolate=False, max_open_files=1))


def test_non_posix_is_a_clear_error(monkeypatch):
    monkeypatch.setattr(sandbox.os, "name", "nt")
    with pytest.raises(SandboxError, match="POSIX"):
        run_python("pass")


def test_limits_are_validated():
    with pytest.raises(ValueError, match="timeout_seconds"):
        SandboxLimits(timeout_seconds=0)
    with pytest.raises(ValueError, match="memory_mb"):
        SandboxLimits(memory_mb=0)
