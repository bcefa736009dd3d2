"""Attacks on the code reward's verdict, in real subprocesses: a wrong program must never pass its tests.

Each program below defines `add` wrongly (it returns 0) and then tries to make `assert add(1, 2) == 3`
and `assert add(2, 2) == 4` pass anyway, the way a model rewarded for passing tests would look for:
reaching the harness's state from a callback it makes, forging the result channel, leaving early,
lying about equality. Every attack runs under every layer configuration: all layers; the OS layers
without the audit hook; and the audit hook alone (the configuration a machine without root gets,
which `run_python` refuses unless allowed). The verdict is made in the judge process
(retrain/rewards/sandbox.py), so no configuration may let one through.

Before this design (checks run in the program's interpreter, results signed with a nonce held by the
audit hook), `test_a_str_subclass_passed_to_import_cannot_reach_the_hook` forged both results on
every layer configuration.
"""

from __future__ import annotations

import os

import pytest

from retrain.rewards.sandbox import SandboxError, SandboxLimits, os_isolated, run_python, sandbox_layers

pytestmark = pytest.mark.skipif(os.name != "posix", reason="the sandbox is POSIX only")

ALL = SandboxLimits(timeout_seconds=5)
OS_ONLY = SandboxLimits(timeout_seconds=5, audit_hook=False)
HOOK_ONLY = SandboxLimits(timeout_seconds=5, isolate=False, drop_privileges=False, allow_in_process_sandbox_only=True)
CONFIGS = pytest.mark.parametrize("limits", [ALL, OS_ONLY, HOOK_ONLY], ids=["all-layers", "os-only", "hook-only"])

CHECKS = ["assert add(1, 2) == 3", "assert add(2, 2) == 4"]
WRONG = "\ndef add(a, b):\n    return 0\n"

# Writes result lines in every format the sandbox has used, signed with every 32-hex string in reach
# (frames, gc), to every descriptor; the forms a harness's verdict could take.
FORGE = r'''
import os, re, sys

def _forge(extra_frames=()):
    seen = set()
    frame = sys._getframe()
    frames = list(extra_frames)
    while frame is not None:
        frames.append(frame)
        frame = frame.f_back
    values = []
    for f in frames:
        try:
            values += list(f.f_locals.values()) + list(f.f_globals.values())
            if f.f_code.co_freevars:
                values += [c for c in f.f_locals.values()]
        except Exception:
            pass
    try:
        import gc
        values += gc.get_objects()
    except Exception:
        pass
    for value in values:
        try:
            if isinstance(value, (str, bytes)):
                text = value.decode() if isinstance(value, bytes) else value
                seen.update(re.findall(r'[0-9a-f]{32}', text))
        except Exception:
            pass
    lines = []
    for nonce in seen | {'0' * 32}:
        for kind, index in (('ready', 0), ('code', 0), ('check', 0), ('check', 1)):
            lines.append(('%s %s %d 1 -\n' % (nonce, kind, index)).encode())
        lines.append(('{"nonce": "%s", "kind": "code", "completed": true, "error": ""}\n' % nonce).encode())
        for index in (0, 1):
            lines.append(('{"nonce": "%s", "kind": "check", "index": %d, "ok": true, "error": ""}\n'
                          % (nonce, index)).encode())
    lines.append(b'{"completed": true, "error": "", "status": 0}\n')
    lines.append(b'{"v": true}\n{"v": {"i": "3"}}\n{"v": {"i": "4"}}\n')
    for fd in range(3, 256):
        for line in lines:
            try:
                os.write(fd, line)
            except OSError:
                break
'''


def assert_not_passed(result):
    assert [check.passed for check in result.checks] == [False, False], result


# -- callbacks from the harness's own code ----------------------------------------------------------


@CONFIGS
def test_a_str_subclass_passed_to_import_cannot_reach_the_hook(limits):
    # importlib itself calls the subclass's methods (that is the program calling itself); the hook must not.
    code = FORGE + r'''
callers = set()
class Evil(str):
    def partition(self, *args):
        callers.add(sys._getframe(1).f_code.co_name)
        _forge([sys._getframe(1)])
        return str.partition(str(self), *args)
    def rpartition(self, *args):
        callers.add(sys._getframe(1).f_code.co_name)
        _forge([sys._getframe(1)])
        return str.rpartition(str(self), *args)
    split = startswith = partition
try:
    __import__(Evil("colorsys"))
except Exception as exc:
    print("refused:", exc)
print("callers:", sorted(callers))
''' + WRONG
    result = run_python(code, checks=CHECKS, limits=limits)
    assert_not_passed(result)
    assert "callers:" in result.stdout and "hook" not in result.stdout.split("callers:")[1]
    if limits.audit_hook:
        assert "refused: sandbox: import of a name that is not a str denied" in result.stdout


@CONFIGS
def test_a_fake_path_object_is_never_asked_for_its_path(limits):
    code = FORGE + r'''
class Meta(type):
    @property
    def __module__(cls):
        _forge([sys._getframe(1)])
        return "pathlib"
class FakePath(metaclass=Meta):
    def __fspath__(self):
        _forge([sys._getframe(1)])
        os._exit(0)
try:
    open(FakePath())
except Exception as exc:
    print("refused:", type(exc).__name__)
''' + WRONG
    result = run_python(code, checks=CHECKS, limits=limits)
    assert_not_passed(result)


@CONFIGS
def test_audit_events_raised_with_hostile_arguments(limits):
    code = FORGE + r'''
class Hostile:
    def _go(self, *args):
        _forge([sys._getframe(1)])
        os._exit(0)
    __bool__ = __and__ = __rand__ = __eq__ = __hash__ = __contains__ = __index__ = __int__ = _go
    __str__ = __fspath__ = __len__ = __iter__ = _go
for event in ("open", "import", "os.listdir", "os.rename", "shutil.copyfile"):
    for args in ((Hostile(), Hostile(), Hostile()), ("x", "w", Hostile()), ("x", Hostile(), 0), (Hostile(),)):
        try:
            sys.audit(event, *args)
        except Exception:
            pass
''' + WRONG
    result = run_python(code, checks=CHECKS, limits=limits)
    assert_not_passed(result)


@CONFIGS
def test_a_rebound_module_function_gives_no_callback_from_the_hook(limits):
    # The policy resolves paths; with os.lstat or a builtin rebound, a hook that looked them up when
    # called would run the program's function inside itself.
    code = FORGE + r'''
import os, builtins, posixpath
def evil(*args, **kwargs):
    _forge([sys._getframe(1)])
    os._exit(0)
os.lstat = os.readlink = os.getcwd = os.fspath = posixpath.realpath = evil
builtins.type = builtins.len = builtins.PermissionError = builtins.isinstance = evil
import __main__
__main__.PermissionError = __main__.type = evil
try:
    open("../../etc/hostname")
except BaseException:
    pass
''' + WRONG
    result = run_python(code, checks=CHECKS, limits=limits)
    assert_not_passed(result)


@CONFIGS
def test_callbacks_while_answering_the_judge(limits):
    # The program's answers are produced by its own objects: their methods run in its process, with the
    # harness's frames above them. What they find there decides nothing.
    code = FORGE + r'''
class Answer:
    def _go(self, *args):
        _forge([sys._getframe(1)])
        return 3
    __eq__ = __ne__ = __hash__ = __bool__ = __len__ = __index__ = __int__ = __float__ = __repr__ = __str__ = _go
    def __iter__(self):
        _forge([sys._getframe(1)])
        return iter([3])
def add(a, b):
    return Answer()
'''
    result = run_python(code, checks=CHECKS, limits=limits)
    assert_not_passed(result)


@CONFIGS
def test_an_exception_whose_str_runs_code(limits):
    code = FORGE + r'''
class Sneaky(Exception):
    def __str__(self):
        _forge([sys._getframe(1)])
        os._exit(0)
def add(a, b):
    raise Sneaky()
'''
    result = run_python(code, checks=CHECKS, limits=limits)
    assert_not_passed(result)


# -- the harness's state and channels ------------------------------------------------------------------


@CONFIGS
def test_frames_gc_and_every_descriptor(limits):
    code = FORGE + "_forge()\n" + WRONG
    assert_not_passed(run_python(code, checks=CHECKS, limits=limits))


@CONFIGS
def test_gc_referrers_of_the_harness_functions(limits):
    code = FORGE + r'''
import gc
try:
    for obj in gc.get_referrers(sys._getframe().f_back or sys._getframe()):
        print(type(obj))
    gc.get_referents(sys.modules["__main__"])
except Exception as exc:
    print("refused:", exc)
_forge()
''' + WRONG
    result = run_python(code, checks=CHECKS, limits=limits)
    assert_not_passed(result)
    if limits.audit_hook:
        assert "refused: sandbox: gc.get_referrers denied" in result.stdout


@CONFIGS
def test_ctypes_writes_to_every_descriptor(limits):
    code = r'''
try:
    import ctypes
    libc = ctypes.CDLL(None)
    for fd in range(3, 256):
        libc.write(fd, b'{"v": {"i": "3"}}\n', 18)
    print("ctypes ran")
except Exception as exc:
    print("refused:", exc)
''' + WRONG
    result = run_python(code, checks=CHECKS, limits=limits)
    assert_not_passed(result)
    assert ("refused" in result.stdout) == limits.audit_hook


@CONFIGS
def test_answering_the_judge_ourselves_with_guessed_answers(limits):
    # Take over the reply pipe from the top level: answer every request 'yes', 3 or 4, in any shape.
    code = r'''
import os, sys, json
frame = sys._getframe()
fds = set()
while frame is not None:
    for name, value in frame.f_locals.items():
        if name.endswith("_fd") and isinstance(value, int):
            fds.add(value)
    frame = frame.f_back
answers = [{"v": True}, {"v": {"i": "3"}}, {"v": {"h": 1, "n": "function"}}, {"m": "builtins"}]
for fd in sorted(fds):
    try:
        os.write(fd, b'{"completed": true, "error": "", "status": 0}\n')
        for answer in answers * 4:
            os.write(fd, (json.dumps(answer) + "\n").encode())
    except OSError:
        pass
for fd in sorted(fds):
    try:
        request = os.read(fd, 65536)
    except OSError:
        continue
os._exit(0)
''' + WRONG
    assert_not_passed(run_python(code, checks=CHECKS, limits=limits))


@CONFIGS
def test_malformed_and_huge_answers_fail_the_check_not_the_judge(limits):
    code = r'''
def add(a, b):
    if a == 1:
        x = []
        for _ in range(5000):
            x = [x]
        return x
    return list(range(3_000_000))
'''
    result = run_python(code, checks=CHECKS, limits=limits)
    assert_not_passed(result)
    assert "nested" in result.checks[0].error and "MemoryError" in result.checks[1].error, result.checks


# -- leaving early, late, or sideways ---------------------------------------------------------------------


@CONFIGS
@pytest.mark.parametrize("where", ["top level", "in the call", "atexit", "thread", "signal", "__del__"])
def test_os_exit_zero_at_every_point(limits, where):
    code = {
        "top level": "import os\nos._exit(0)\n" + WRONG,
        "in the call": "import os\ndef add(a, b):\n    os._exit(0)\n",
        "atexit": "import atexit, os\natexit.register(lambda: os._exit(0))\n" + WRONG,
        "thread": "import os, threading\nthreading.Timer(0.05, lambda: os._exit(0)).start()\n" + WRONG
                  + "import time\ntime.sleep(0.2)\n",
        "signal": "import os, signal\nsignal.signal(signal.SIGALRM, lambda *a: os._exit(0))\n"
                  "signal.setitimer(signal.ITIMER_REAL, 0.01)\n" + WRONG,
        "__del__": "import os\nclass D:\n    def __del__(self):\n        os._exit(0)\n"
                   "def add(a, b):\n    D()\n    return 0\n",
    }[where]
    assert_not_passed(run_python(code, checks=CHECKS, limits=limits))


@CONFIGS
def test_late_atexit_handlers_and_signal_handlers_forge(limits):
    code = FORGE + r'''
import atexit, signal
atexit.register(_forge)
for sig in (signal.SIGTERM, signal.SIGPIPE, signal.SIGHUP, signal.SIGALRM):
    signal.signal(sig, lambda *a: _forge())
signal.setitimer(signal.ITIMER_REAL, 0.01, 0.01)
''' + WRONG
    assert_not_passed(run_python(code, checks=CHECKS, limits=limits))


@CONFIGS
def test_forking_before_the_verdict(limits):
    # The hook denies fork; without it, a child of the program writes its forgeries while the parent serves.
    code = FORGE + r'''
try:
    if os.fork() == 0:
        import time
        for _ in range(20):
            _forge()
            time.sleep(0.01)
        os._exit(0)
except Exception as exc:
    print("refused:", exc)
''' + WRONG
    result = run_python(code, checks=CHECKS, limits=limits)
    assert_not_passed(result)
    assert ("refused" in result.stdout) == limits.audit_hook


@CONFIGS
def test_sys_exit_before_the_checks_and_printing_passed(limits):
    for code in ("print('2/2 tests passed')\nimport sys\nsys.exit(0)", "raise SystemExit(0)" + WRONG):
        assert_not_passed(run_python(code, checks=CHECKS, limits=limits))


# -- lying about values -------------------------------------------------------------------------------------


@CONFIGS
def test_an_object_equal_to_everything_is_not_the_right_answer(limits):
    code = r'''
class Yes:
    def __eq__(self, other):
        return True
    __hash__ = object.__hash__
class Int(int):
    def __eq__(self, other):
        return True
    __hash__ = int.__hash__
def add(a, b):
    return Yes() if a == 1 else Int(0)
'''
    result = run_python(code, checks=CHECKS, limits=limits)
    assert_not_passed(result)


@CONFIGS
def test_shadowing_builtins_does_not_change_what_the_checks_call(limits):
    code = ("import builtins\nlen = lambda x: 3\nbuiltins.len = len\nsorted = lambda x: [1, 2]\n"
            "def f():\n    return []\n")
    result = run_python(code, checks=["assert len(f()) == 3", "assert sorted(f()) == [1, 2]"], limits=limits)
    assert_not_passed(result)


@CONFIGS
def test_tampering_with_a_module_the_checks_use(limits):
    code = "import math\nmath.isclose = lambda *a, **k: True\ndef add(a, b):\n    return 0.0\n"
    checks = ["assert math.isclose(add(1, 2), 3.0)", "assert math.isclose(add(2, 2), 4.0)"]
    assert_not_passed(run_python(code, checks=checks, limits=limits))


@CONFIGS
def test_truthiness_of_a_program_object_is_not_the_programs_to_decide(limits):
    code = "class T:\n    def __bool__(self):\n        return True\ndef is_prime(n):\n    return T()\n"
    result = run_python(code, checks=["assert is_prime(7)", "assert is_prime(11)"], limits=limits)
    assert [check.passed for check in result.checks] == [False, False]
    assert "truth" in result.checks[0].error


@CONFIGS
def test_the_checks_are_never_shown_to_the_program(limits):
    # Look everywhere the program can for the expected values (the checks' text).
    code = r'''
import os, sys, gc
found = []
needle = "".join(["add(1, ", "2) == ", "3"])  # the source holds only the pieces
def look(text):
    if needle in text and text is not needle:
        found.append(text[:80])
frame = sys._getframe()
while frame is not None:
    for value in list(frame.f_locals.values()) + list(frame.f_globals.values()):
        if isinstance(value, str):
            look(value)
    frame = frame.f_back
for value in list(os.environ.values()) + sys.argv:
    look(value)
try:
    for obj in gc.get_objects():
        if isinstance(obj, str):
            look(obj)
except Exception:
    pass
for path in ("/proc/self/cmdline", "/proc/%d/cmdline" % os.getppid()):
    try:
        look(open(path, "rb").read().decode(errors="replace"))
    except Exception:
        pass
print("FOUND" if found else "nothing")
def add(a, b):
    return a + b
'''
    result = run_python(code, checks=CHECKS, limits=limits)
    assert result.stdout.strip() == "nothing", result.stdout
    assert [check.passed for check in result.checks] == [True, True]


# -- the configuration that only has the hook ------------------------------------------------------------


def test_in_process_only_is_refused_unless_allowed():
    limits = SandboxLimits(isolate=False, drop_privileges=False)
    layers = sandbox_layers(limits)
    if os_isolated(layers):
        pytest.skip(f"this machine isolates even with namespaces and uid switched off: {layers}")
    with pytest.raises(SandboxError, match="allow_in_process_sandbox_only: true"):
        run_python("print(1)", limits=limits)
    allowed = SandboxLimits(isolate=False, drop_privileges=False, allow_in_process_sandbox_only=True)
    assert run_python("print(1)", limits=allowed).stdout == "1\n"
