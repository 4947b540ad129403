"""Attacks on the python sandbox's RestrictedPython layer (SECURITY.md A, issue 11).

Two kinds of test. End to end, each attack runs in a real sandbox child and must end in a
typed error observation (compile or runtime), never crash the parent, and leave no trace; and
ordinary code must keep working. In process, a real ``os`` module is *planted* in the code's
namespace, standing for whatever a standard-library function might one day hand out, and
every route by which a value reaches the code must refuse it: the screen must not depend on
no such function existing.
"""

from __future__ import annotations

import functools
import operator
import os
import sys
from pathlib import Path
from typing import Any

import pytest

from tools import _sandbox_compile as sandbox_compile
from tools import _sandbox_policy as policy
from tools._sandbox_child import _Output, _Writes
from tools.base import ToolError
from tools.python_tool import (
    PythonCompileError,
    PythonLimits,
    PythonResultError,
    PythonRuntimeError,
    PythonSandboxError,
    run_code,
)

LIMITS = PythonLimits(cpu_seconds=2, wall_seconds=10)

# -- end to end: every attack is refused with a typed error -----------------------------------

C, R = PythonCompileError, PythonRuntimeError
ATTACKS: list[tuple[str, str, type[PythonSandboxError]]] = [
    # The reported escape: string annotations evaluated by typing.get_type_hints, outside
    # RestrictedPython, through functools.singledispatch(...).register and singledispatchmethod.
    ("singledispatch register", "import functools\n@functools.singledispatch\ndef f(x):\n"
     "    return 0\n@f.register\ndef _(x: \"[c for c in ().__class__.__base__.__subclasses__()]\"):"
     "\n    return 1", C),
    ("singledispatch without annotations", "import functools\nfunctools.singledispatch", R),
    ("singledispatch by from-import", "from functools import singledispatch", R),
    ("singledispatchmethod", "import functools\nclass A:\n    @functools.singledispatchmethod\n"
     "    def f(self, x):\n        return 0", R),
    ("singledispatch through partial", "import functools\n"
     "functools.partial(functools.singledispatch)", R),
    ("annotation on a parameter", "def f(x: int):\n    return x", C),
    ("string annotation", "def f(x: 'os.system(\"id\")'):\n    return x", C),
    ("return annotation", "def f(x) -> 'os':\n    return x", C),
    ("annotation on a keyword-only parameter", "def f(*, x: int = 1):\n    return x", C),
    ("annotation on *args", "def f(*a: int):\n    pass", C),
    ("annotated assignment", "x: int = 1", C),
    ("annotated assignment in a class", "class A:\n    x: 'os' = 1", C),
    ("future annotations", "from __future__ import annotations\nx = 1", C),
    # imports
    *[(f"import {m}", f"import {m}", C if m == "builtins" else R) for m in
      ("os", "sys", "subprocess", "ctypes", "importlib", "builtins", "typing", "inspect", "gc",
       "posix", "io", "pickle", "dataclasses", "abc", "types", "threading")],
    ("from-import of a module's module", "from statistics import sys", R),
    ("module of an allowed module", "import re\nre.functools", R),
    ("re-exported name outside the list", "import functools\nfunctools.namedtuple", R),
    # builtins that are not there
    *[(f"{b}()", f"{b}('x')", R) for b in
      ("open", "compile", "globals", "locals", "vars", "dir", "help", "input", "type", "super",
       "memoryview")],
    ("breakpoint()", "breakpoint()", C),
    ("eval", "eval('1')", C),
    ("exec", "exec('x = 1')", C),
    ("__import__", "__import__('os')", C),
    ("__builtins__", "__builtins__", C),
    ("getattr __builtins__", "getattr(print, '__globals__')", R),
    # dunder walks
    ("subclass walk", "().__class__.__base__.__subclasses__()", C),
    ("subclass walk by getattr", "getattr(getattr((), '__cl' + 'ass__'), '__base__')", R),
    ("mro walk", "[].__class__.__mro__[-1]", C),
    # generator, coroutine and traceback frames
    ("gi_frame", "def g():\n    yield 1\ng().gi_frame", C),
    ("gi_frame by getattr", "def g():\n    yield 1\ngetattr(g(), 'gi_' + 'frame')", R),
    ("gi_yieldfrom", "def g():\n    yield 1\ngetattr(g(), 'gi_yieldfrom')", R),
    ("coroutine", "async def c():\n    pass", C),
    ("tb_frame", "try:\n    1/0\nexcept Exception as e:\n    e.__traceback__", C),
    ("tb_frame by getattr", "try:\n    1/0\nexcept Exception as e:\n"
     "    getattr(e, '__trace' + 'back__')", R),
    ("f_back", "def g():\n    yield 1\nx = g()\nx.gi_frame.f_back.f_globals", C),
    ("frame attribute names by getattr", "getattr(1, 'f_' + 'globals')", R),
    # exceptions
    ("except*", "try:\n    pass\nexcept* ValueError:\n    pass", C),
    ("ExceptionGroup", "ExceptionGroup('x', [ValueError()])", R),
    ("AttributeError.obj", "import statistics\ntry:\n    statistics.nope\n"
     "except AttributeError as e:\n    m = getattr(e, 'obj')", R),
    ("exception __context__", "try:\n    {}['x']\nexcept KeyError as e:\n"
     "    getattr(e, '__context__')", R),
    # str.format and format_map attribute walks
    ("format __class__", "'{0.__class__.__base__}'.format(1)", R),
    ("format_map __class__", "'{a.__class__}'.format_map({'a': 1})", R),
    ("unbound str.format", "str.format('{0.__class__}', 1)", R),
    ("format gi_frame", "def g():\n    yield 1\n'{0.gi_frame}'.format(g())", R),
    ("format through a module proxy", "import json\n'{0.decoder}'.format(json)", R),
    ("format item then dunder", "'{0[0].__class__}'.format([1])", R),
    ("string.Formatter", "import string\nstring.Formatter().format('{0.__class__}', 1)", R),
    ("f-string dunder", "f'{().__class__}'", C),
    # names like the guards
    ("positional-only _getattr_", "def f(_getattr_, /):\n    return _getattr_\nf(1)", C),
    ("keyword-only _getiter_", "def f(*, _getiter_=None):\n    pass", C),
    ("lambda _write_", "f = lambda _write_, /: _write_", C),
    ("lambda default _print_", "f = lambda _print_=1: 0", C),
    ("assignment to _call_", "_call_ = 1", C),
    ("import as _getattr_", "import math as _getattr_", C),
    # class-based tricks
    ("__init_subclass__", "class A:\n    def __init_subclass__(cls):\n        pass", C),
    ("__class_getitem__", "class A:\n    def __class_getitem__(cls, i):\n        pass", C),
    ("metaclass", "class A(metaclass=type):\n    pass", C),
    ("__getattribute__", "class A:\n    def __getattribute__(self, n):\n        pass", C),
    ("__getattr__", "class A:\n    def __getattr__(self, n):\n        pass", C),
    ("class attribute write on a stdlib class",
     "import collections\ncollections.Counter.most_common = 1", R),
    ("__class__ write", "class A:\n    pass\nsetattr(A(), '__class__', int)", R),
    ("decorator from outside", "import functools\n@functools.wraps(print)\ndef f():\n"
     "    pass", R),
    ("attrgetter", "import operator\noperator.attrgetter('__class__')(1)", R),
    ("methodcaller", "import operator\noperator.methodcaller('__reduce_ex__', 2)(1)", R),
    ("match class pattern", "match 1:\n    case int(real=r):\n        r", C),
    ("match mapping", "match {}:\n    case {'a': x}:\n        x", C),
    ("nonlocal", "def f():\n    x = 1\n    def g():\n        nonlocal x", C),
    # results that are not JSON
    ("a module proxy as the result", "import math\nmath", PythonResultError),
    ("a function as the result", "len", PythonResultError),
]  # fmt: skip


@pytest.mark.parametrize(
    ("code", "error"), [(code, error) for _, code, error in ATTACKS], ids=[a[0] for a in ATTACKS]
)
def test_attack_is_refused_with_a_typed_error(
    code: str, error: type[PythonSandboxError], tmp_path: Path
) -> None:
    with pytest.raises(PythonSandboxError) as caught:
        run_code(code, LIMITS)
    assert type(caught.value) is error, str(caught.value)
    assert isinstance(caught.value, ToolError)


def test_annotations_are_refused_with_a_message_that_says_what_to_do() -> None:
    with pytest.raises(PythonCompileError, match=r"annotations are not allowed.*def f\(x\):"):
        run_code("def f(x: int) -> int:\n    return x", LIMITS)


def test_a_refused_name_lists_what_the_module_offers() -> None:
    with pytest.raises(PythonRuntimeError) as caught:
        run_code("import functools\nfunctools.singledispatch", LIMITS)
    assert "functools.singledispatch is not available in the sandbox" in str(caught.value)
    assert "lru_cache" in str(caught.value) and "reduce" in str(caught.value)


def test_module_writes_do_not_leak_within_a_run_or_into_the_next(tmp_path: Path) -> None:
    code = (
        "import math, decimal\n"
        "try:\n    math.sqrt = lambda x: 42\nexcept TypeError as e:\n    first = str(e)\n"
        "decimal.getcontext().prec = 3\n"
        "[first, math.sqrt(16)]"
    )
    first, root = run_code(code, LIMITS).result
    assert "cannot set attributes of module objects" in first and root == 4.0
    assert run_code("import math, decimal\n[math.sqrt(16), decimal.getcontext().prec]",
                    LIMITS).result == [4.0, 28]  # fmt: skip


def test_a_secret_in_the_parents_environment_is_not_visible(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("QWQ_POLICY_SECRET", "correct-horse-battery")
    for code in (
        "import os\nos.environ",
        "import time\ntime.tzname",  # reachable, but holds nothing of the parent's
        "import json\njson.dumps({})",
    ):
        try:
            text = run_code(code, LIMITS).render()
        except PythonSandboxError as exc:
            text = str(exc)
        assert "correct-horse-battery" not in text


# -- what must keep working ---------------------------------------------------------------------

WORKING: list[tuple[str, Any]] = [
    ("import math, statistics\n[math.sqrt(16), statistics.median([3, 1, 2])]", [4.0, 2]),
    ("import json\njson.loads(json.dumps({'a': [1, 2]}))", {"a": [1, 2]}),
    ("import re\nre.findall(r'\\d+', 'a1b22')", ["1", "22"]),
    ("import datetime\nstr(datetime.date(2024, 3, 1) - datetime.timedelta(days=1))",
     "2024-02-29"),
    ("from collections import Counter, deque\n"
     "[Counter('abca').most_common(1), list(deque([1, 2], maxlen=1))]", [[["a", 2]], [2]]),
    ("from fractions import Fraction\nstr(Fraction(1, 3) * 3)", "1"),
    ("import decimal\nstr(decimal.Decimal('1.10') + decimal.Decimal('2.20'))", "3.30"),
    ("import random\nrandom.seed(7)\na = random.random()\nrandom.seed(7)\na == random.random()",
     True),
    ("'-'.join(s.upper() for s in 'a b'.split())", "A-B"),
    ("{k: v for k, v in zip('ab', range(2))}", {"a": 0, "b": 1}),
    ("class P:\n    def __init__(self, x):\n        self.x = x\n    def __lt__(self, o):\n"
     "        return self.x < o.x\nsorted([P(2), P(1)])[0].x", 1),
    ("class E(ValueError):\n    pass\ntry:\n    raise E('bad')\nexcept ValueError as e:\n"
     "    r = [str(e), e.args]\nr", ["bad", ["bad"]]),
    ("'{:.2f} {name}'.format(3.14159, name='pi')", "3.14 pi"),
    ("'{0[a]} {0[b][1]}'.format({'a': 1, 'b': [2, 3]})", "1 3"),
    ("'{p[x]}'.format_map({'p': {'x': 'y'}})", "y"),
    ("f'{3.14159:.3f} {\"q\"!r} {7:>{3}}'", "3.142 'q'   7"),
    ("if (n := 5) > 3:\n    r = n * 2\nr", 10),
    ("f = lambda a, b=2: a * b\n[f(3), f(3, 3)]", [6, 9]),
    ("def deco(fn):\n    return lambda *a: fn(*a) + 1\n@deco\ndef g(x):\n    return x\ng(1)", 2),
    ("import functools\n@functools.lru_cache(maxsize=None)\ndef fib(n):\n"
     "    return n if n < 2 else fib(n - 1) + fib(n - 2)\nfib(40)", 102334155),
    ("import functools, operator\n[functools.reduce(operator.add, [1, 2, 3]), "
     "operator.itemgetter(1)([5, 6])]", [6, 6]),
    ("next(iter([4, 5])), list(map(abs, [-1])), list(filter(None, [0, 2]))", [4, [1], [2]]),
    ("{'a': 1}.get('b', 0), getattr(1, 'real', None), max([], default=3)", [0, 1, 3]),
    ("import itertools\nlist(itertools.combinations([1, 2, 3], 2))", [[1, 2], [1, 3], [2, 3]]),
    ("import string\nstring.Template('$x!').substitute(x='hi')", "hi!"),
    ("from collections import namedtuple\nP = namedtuple('P', 'x y')\nP(1, 2).y", 2),
    ("import decimal\nwith decimal.localcontext() as c:\n    c.prec = 3\n"
     "    r = str(decimal.Decimal(1) / 7)\nr", "0.143"),
    ("def g():\n    yield from range(3)\nsum(g())", 3),
    ("def f(a, /, b, *rest, c=1, **kw):\n    return [a, b, rest, c, kw]\nf(1, 2, 3, c=4, d=5)",
     [1, 2, [3], 4, {"d": 5}]),
    ("from collections.abc import Mapping\nisinstance({}, Mapping)", True),
]  # fmt: skip


@pytest.mark.parametrize(("code", "expected"), WORKING)
def test_ordinary_code_keeps_working(code: str, expected: Any) -> None:
    assert run_code(code, LIMITS).result == expected


# -- in process: a planted real module is refused on every route ----------------------------------

PLANTED_ROUTES = [
    "next(iter(planted))",
    "list(map(lambda m: m, planted))",
    "[m for m in planted]",
    "for m in planted:\n    pass",
    "(m,) = planted",
    "import functools\nfunctools.reduce(lambda a, b: b, planted, 0)",
    "import operator\noperator.itemgetter(0)(planted)",
    "operator_free = planted[0]",
    "table.get('k')",
    "table['k']",
    "list(table.values())[0]",
    "[v for k, v in table.items()]",
    "getattr(holder, 'missing', planted[0])",
    "getattr(holder, 'module')",
    "holder.module",
    "sorted(planted, key=lambda m: 0)",
    "max([], default=table['k'])",
    "planted.pop()",
    "planted.copy()[0]",
    "'{0[0]}'.format(planted)",
    "'{0[0].environ}'.format(planted)",
    "'{t[k].environ}'.format_map({'t': table})",
    "def f(*args):\n    return args\nf(*planted)",
    "def f(m):\n    return 1\nlist(map(f, planted))",
    "def f(**kw):\n    return kw\nf(**table)",
    "import functools\nfunctools.partial(lambda a, m: m, 1)(*planted)",
    "with context as m:\n    pass",
    "def deco(fn):\n    return planted[0]\n@deco\ndef g():\n    pass",
    "x = [*planted]\nx[0]",
    "raiser()",
]


class _Holder:
    module = os


class _Context:
    def __enter__(self) -> Any:
        return os

    def __exit__(self, *exc: object) -> None:
        return None


def _raise_with_module() -> None:
    raise KeyError(os)


def run_planted(code: str) -> Any:
    """Run ``code`` in this process under the sandbox's compiler and policy, with a real
    ``os`` planted in ``planted``, ``table``, ``holder``, ``context``."""
    compiled = sandbox_compile.compile_code(code, "<python>")
    assert not isinstance(compiled, str), compiled
    namespace = policy.Policy().namespace(_Output(1000), _Writes())
    namespace.update(planted=[os], table={"k": os}, holder=_Holder(), context=_Context(),
                     raiser=_raise_with_module)  # fmt: skip
    exec(compiled.body, namespace)
    return None if compiled.tail is None else eval(compiled.tail, namespace)


@pytest.mark.parametrize("code", PLANTED_ROUTES)
def test_a_planted_module_is_refused_on_every_route(code: str) -> None:
    try:
        value = run_planted(code)
    except (TypeError, AttributeError, KeyError) as exc:
        if isinstance(exc, KeyError):  # the exception itself may carry it: its args are
            assert "raiser" in code  # plain data, read through the same screen
            assert_refused("try:\n    raiser()\nexcept KeyError as e:\n    m = e.args[0]")
            return
        assert "'os' is not available" in str(exc) or "real module" in str(exc), str(exc)
        return
    assert not _holds_module(value), f"{code!r} handed out {value!r}"


def assert_refused(code: str) -> None:
    with pytest.raises(TypeError, match="'os' is not available"):
        run_planted(code)


def _holds_module(value: Any) -> bool:
    if isinstance(value, type(os)):
        return True
    if isinstance(value, list | tuple | set):
        return any(_holds_module(v) for v in value)
    if isinstance(value, dict):
        return any(_holds_module(v) for v in value.values())
    return False


def test_an_allowed_module_planted_raw_becomes_its_read_only_proxy() -> None:
    import math

    guards = policy.Policy()
    proxy = guards.screen(math)
    assert proxy is guards.screen(math) and not isinstance(proxy, type(math))
    assert guards.getattr(proxy, "sqrt")(9) == 3.0
    with pytest.raises(AttributeError, match="attributes of module objects"):
        guards.getattr(math, "sqrt")  # a raw module is never read from, even an allowed one
    with pytest.raises(TypeError, match="real module cannot be passed"):
        guards.check(1, (math,))


def test_frames_tracebacks_code_and_evaluators_are_refused_as_values() -> None:
    guards = policy.Policy()
    try:
        raise ValueError
    except ValueError as exc:
        traceback = exc.__traceback__
    assert traceback is not None
    for value in (sys._getframe(), traceback, run_planted.__code__, eval, getattr, type,
                  __import__, functools.singledispatch, operator.attrgetter):  # fmt: skip
        with pytest.raises(TypeError, match="not available in the sandbox"):
            guards.screen(value)
        with pytest.raises(TypeError, match="not available in the sandbox"):
            guards.call(lambda v=value: v)
    with pytest.raises(AttributeError):
        guards.getattr(sys._getframe(), "f_lineno")
