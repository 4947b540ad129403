"""What sandboxed code may reach at run time, and the screen every value passes through.

The run-time half of the python sandbox's RestrictedPython layer (the compile-time half is
:mod:`tools._sandbox_compile`). Self-contained (standard library and RestrictedPython only):
the sandbox child runs with ``-I``, without the project on ``sys.path``, and loads this file
by path; tests import it as ``tools._sandbox_policy``.

The rules, each a guard on one route by which a value reaches the code:

* **Imports** are limited to :data:`ALLOWED`, and a module is seen through a read-only proxy
  that offers exactly the names listed for it (not the whole module): no function that
  evaluates code, resolves names or attributes given as strings, or touches files, processes,
  threads or the interpreter. Anything else is refused with the list of what is available.
* **Every value the code obtains** (attribute, item, iterated or unpacked value, the result of
  every call, the target of ``with ... as``, every parameter of a function it defines, each
  value a decorator returns) goes through :meth:`Policy.screen`: an allowed module becomes its
  proxy; any other module, a frame, traceback, code object or cell, and the few callables
  that evaluate or look up names (``eval``, the real ``getattr``, ``functools.singledispatch``
  …) are refused, whatever route led to them.
* **Attribute reads** refuse private names and RestrictedPython's inspection names
  (``gi_frame``, ``f_back``…), any attribute of a real module, frame, traceback, code object
  or cell, and of an exception anything but its plain data (not an AttributeError's ``obj``).
  ``str.format``/``format_map`` resolve ``{0.attr}`` and ``{0[key]}`` through these guards.
* **Attribute writes** reach only classes the code defined and their instances (the
  ``writes`` given to :meth:`Policy.namespace`); module proxies are read-only, so
  ``math.sqrt = ...`` fails in the run and cannot reach the next (each run is a new process).
"""

from __future__ import annotations

import _string  # type: ignore[import-not-found]  # str.format's field-name parser
import builtins as real_builtins
import copy  # noqa: F401  (imported lazily by collections' UserDict.copy; see below)
import functools
import heapq  # noqa: F401  (imported lazily by Counter.most_common)
import importlib
import operator
import string
import sys
import types
from collections.abc import Callable, Iterator
from types import ModuleType
from typing import Any

from RestrictedPython.Guards import (
    guarded_iter_unpack_sequence,
    guarded_unpack_sequence,
    safe_builtins,
    safer_getattr_raise,
)
from RestrictedPython.PrintCollector import PrintCollector

# ``copy`` and ``heapq`` above are imported here because allowed functions import them on
# first use, and by then the kernel layer may have closed the file system (``_strptime``, for
# the ``strptime`` functions, is imported by the layer itself).


def _names(text: str) -> frozenset[str]:
    return frozenset(text.split())


ALLOWED: dict[str, frozenset[str]] = {
    "math": _names(
        "acos acosh asin asinh atan atan2 atanh cbrt ceil comb copysign cos cosh degrees dist e "
        "erf erfc exp exp2 expm1 fabs factorial floor fma fmod frexp fsum gamma gcd hypot inf "
        "isclose isfinite isinf isnan isqrt lcm ldexp lgamma log log10 log1p log2 modf nan "
        "nextafter perm pi pow prod radians remainder sin sinh sqrt sumprod tan tanh tau trunc ulp"
    ),
    "statistics": _names(
        "NormalDist StatisticsError LinearRegression correlation covariance fmean "
        "geometric_mean harmonic_mean kde kde_random linear_regression mean median "
        "median_grouped median_high median_low mode multimode pstdev pvariance quantiles "
        "stdev variance"
    ),
    "json": _names("dumps loads JSONDecoder JSONEncoder JSONDecodeError"),
    "re": _names(
        "compile search match fullmatch split findall finditer sub subn escape purge error "
        "Pattern Match RegexFlag PatternError NOFLAG A ASCII DEBUG I IGNORECASE L LOCALE M "
        "MULTILINE S DOTALL U UNICODE X VERBOSE"
    ),
    "datetime": _names("date datetime time timedelta timezone tzinfo MINYEAR MAXYEAR UTC"),
    "itertools": _names(
        "accumulate batched chain combinations combinations_with_replacement compress count "
        "cycle dropwhile filterfalse groupby islice pairwise permutations product repeat "
        "starmap takewhile tee zip_longest"
    ),
    "collections": _names(
        "ChainMap Counter OrderedDict UserDict UserList UserString defaultdict deque namedtuple abc"
    ),
    "collections.abc": _names(
        "AsyncGenerator AsyncIterable AsyncIterator Awaitable Buffer ByteString Callable "
        "Collection Container Coroutine Generator Hashable ItemsView Iterable Iterator "
        "KeysView Mapping MappingView MutableMapping MutableSequence MutableSet Reversible "
        "Sequence Set Sized ValuesView"
    ),
    "fractions": _names("Fraction"),
    "decimal": _names(
        "Decimal Context DecimalTuple getcontext setcontext localcontext BasicContext "
        "DefaultContext ExtendedContext DecimalException Clamped ConversionSyntax "
        "DivisionByZero DivisionImpossible DivisionUndefined FloatOperation Inexact "
        "InvalidContext InvalidOperation Overflow Rounded Subnormal Underflow MAX_EMAX "
        "MAX_PREC MIN_EMIN MIN_ETINY HAVE_CONTEXTVAR HAVE_THREADS ROUND_05UP ROUND_CEILING "
        "ROUND_DOWN ROUND_FLOOR ROUND_HALF_DOWN ROUND_HALF_EVEN ROUND_HALF_UP ROUND_UP"
    ),
    "random": _names(
        "Random seed random uniform triangular randint randrange choice choices sample "
        "shuffle getrandbits randbytes getstate setstate gauss normalvariate lognormvariate "
        "expovariate vonmisesvariate gammavariate betavariate paretovariate weibullvariate "
        "binomialvariate"
    ),
    "string": _names(
        "ascii_letters ascii_lowercase ascii_uppercase digits hexdigits octdigits printable "
        "punctuation whitespace capwords Template"
    ),
    "functools": _names(
        "reduce partial partialmethod cmp_to_key lru_cache cache cached_property total_ordering"
    ),
    "operator": _names(
        "abs add and_ call concat contains countOf delitem eq floordiv ge getitem gt iadd iand "
        "iconcat ifloordiv ilshift imatmul imod imul index indexOf inv invert ior ipow irshift "
        "is_ is_not isub itemgetter itruediv ixor le length_hint lshift lt matmul mod mul ne "
        "neg not_ or_ pos pow rshift setitem sub truediv truth xor"
    ),
    "time": _names(
        "time time_ns monotonic monotonic_ns perf_counter perf_counter_ns process_time "
        "process_time_ns thread_time thread_time_ns sleep gmtime localtime mktime asctime "
        "ctime strftime strptime struct_time timezone altzone daylight tzname"
    ),
}
"""Per module, exactly the public names code may use (names a Python version lacks are just
absent). Left out on purpose: ``functools.singledispatch``/``singledispatchmethod`` (they
evaluate string annotations with ``typing.get_type_hints``), ``functools.wraps``/
``update_wrapper`` and ``operator.attrgetter``/``methodcaller`` (attributes by a name given
at run time), ``string.Formatter`` (the same, through ``{0.attr}``), ``json.load``/``dump``
(files), ``time.clock_settime``/``tzset`` (the process and the machine), ``random.SystemRandom``
and every module a module merely imports (``statistics.sys``, ``re.functools``)."""

ALLOWED_MODULES = frozenset(ALLOWED)

_REFUSED_TYPES = frozenset(
    {types.FrameType, types.TracebackType, types.CodeType, types.CellType, type(sys.flags)}
)
"""Objects that lead to globals, builtins or the interpreter, refused on every route."""

_PLAIN = frozenset(
    {int, float, str, bool, type(None), list, tuple, dict, set, frozenset, bytes, complex}
)
"""Types screened at no cost (the common case): their instances are plain data."""

_REFUSED_BUILTINS = {
    "open": "there are no files in the sandbox",
    "input": "there is no input in the sandbox",
    "breakpoint": "there is no debugger in the sandbox",
    "help": "there is no help system in the sandbox",
    "compile": "code cannot compile code in the sandbox",
    "globals": "namespaces cannot be inspected in the sandbox",
    "locals": "namespaces cannot be inspected in the sandbox",
    "vars": "namespaces cannot be inspected in the sandbox",
    "dir": "namespaces cannot be inspected in the sandbox",
    "type": "use isinstance(x, SomeClass) to test a type",
    "memoryview": "raw memory is not available in the sandbox",
}
"""Builtins that exist in Python but not here: calling one says why, instead of NameError."""

_EXTRA_BUILTINS = (
    "list", "dict", "set", "frozenset", "tuple", "enumerate", "zip", "map", "filter", "sorted",
    "reversed", "sum", "min", "max", "any", "all", "iter", "next", "bin", "format", "bytes",
    "StopAsyncIteration", "RecursionError", "TimeoutError", "NotImplemented",
)  # fmt: skip

_EXCEPTION_ATTRIBUTES = frozenset(
    {"args", "name", "msg", "errno", "strerror", "filename", "filename2", "lineno", "offset",
     "text", "end_lineno", "end_offset", "value", "code", "reason", "start", "end", "encoding",
     "with_traceback", "add_note", "exceptions", "message", "doc", "pos", "colno"}
)  # fmt: skip
"""What code may read of an exception: its plain data. Not ``obj`` (an AttributeError's real
object, a module when raised by a module's getattr) nor anything not listed."""

_MISSING = object()
_INPLACE: dict[str, Callable[[Any, Any], Any]] = {
    "+=": operator.iadd, "-=": operator.isub, "*=": operator.imul, "/=": operator.itruediv,
    "//=": operator.ifloordiv, "%=": operator.imod, "**=": operator.ipow,
    "<<=": operator.ilshift, ">>=": operator.irshift, "&=": operator.iand,
    "|=": operator.ior, "^=": operator.ixor, "@=": operator.imatmul,
}  # fmt: skip


def _refused_callables() -> dict[int, str]:
    """Callables refused wherever they turn up, by identity: they evaluate strings or look
    names up (``id`` is safe here: each object is kept alive by the module that holds it)."""
    found: dict[int, str] = {}
    named = [(real_builtins, n) for n in ("eval", "exec", "compile", "__import__", "getattr",
             "setattr", "delattr", "vars", "dir", "globals", "locals", "open", "input",
             "breakpoint", "help", "type", "memoryview", "super")]  # fmt: skip
    named += [(functools, n) for n in ("singledispatch", "singledispatchmethod", "wraps",
              "update_wrapper")]  # fmt: skip
    named += [(operator, "attrgetter"), (operator, "methodcaller"), (string, "Formatter")]
    named += [(importlib, "import_module"), (importlib, "__import__")]
    typing = sys.modules.get("typing")
    if typing is not None:
        named += [(typing, "get_type_hints"), (typing, "ForwardRef")]
    for module, name in named:
        value = getattr(module, name, None)
        if value is not None:
            found[id(value)] = f"{module.__name__}.{name}"
    return found


def _refusal(name: str, why: str) -> Callable[..., Any]:
    def refused(*args: object, **kwargs: object) -> Any:
        raise NameError(f"{name}() is not available in the sandbox: {why}")

    return refused


class _Formatter(string.Formatter):
    """``str.format`` whose ``{0.attr}`` and ``{0[key]}`` go through the sandbox's guards."""

    def __init__(self, getattr_: Callable[..., Any], getitem_: Callable[[Any, Any], Any]) -> None:
        self.getattr_, self.getitem_ = getattr_, getitem_

    def get_field(self, field_name: str, args: Any, kwargs: Any) -> tuple[Any, Any]:
        first, rest = _string.formatter_field_name_split(field_name)
        value = self.get_value(first, args, kwargs)
        for is_attribute, key in rest:
            value = self.getattr_(value, key) if is_attribute else self.getitem_(value, key)
        return value, first


class Policy:
    """The guards of one run; :meth:`namespace` builds the globals the code runs in."""

    def __init__(self) -> None:
        self.proxies: dict[str, object] = {}
        self.refused = _refused_callables()
        self.formatter = _Formatter(self.getattr, self.getitem)

    # -- the screen --------------------------------------------------------------------------

    def screen(self, value: Any) -> Any:
        """``value`` if code may hold it; an allowed module's proxy for the module; else raise.

        Raises:
            TypeError: a frame, traceback, code object, cell, a refused callable, or a module
                that is not allowed.
        """
        kind = type(value)
        if kind in _PLAIN:
            return value
        if kind in _REFUSED_TYPES:
            raise TypeError(f"a {kind.__name__} object is not available in the sandbox")
        if isinstance(value, ModuleType):
            if value.__name__ not in ALLOWED:
                raise TypeError(
                    f"the module {value.__name__!r} is not available in the sandbox; "
                    f"available modules: {', '.join(sorted(ALLOWED))}"
                )
            return self.proxy(value)
        refused = self.refused.get(id(value))
        if refused is not None:
            raise TypeError(f"{refused} is not available in the sandbox")
        return value

    def check(self, *values: Any) -> None:
        """Screen the parameters of a function the code defined (stdlib callbacks pass them)."""
        for value in values:
            if type(value) in _PLAIN and type(value) not in (tuple, dict):
                continue
            if type(value) in (tuple, dict):  # *args and **kwargs
                for item in value.values() if type(value) is dict else value:
                    self._check_one(item)
            else:
                self._check_one(value)

    def _check_one(self, value: Any) -> None:
        if self.screen(value) is not value:  # a real module, even an allowed one
            raise TypeError("a real module cannot be passed to code in the sandbox")

    def call(self, function: Any, /, *args: Any, **kwargs: Any) -> Any:
        """Every call in the code: the result is screened, whoever made it."""
        value = function(*args, **kwargs)
        return value if type(value) in _PLAIN else self.screen(value)

    def decorate(self, decorator: Any) -> Callable[[Any], Any]:
        """Every decorator in the code: what it returns is screened."""
        return lambda target: self.screen(decorator(target))

    def getitem(self, obj: Any, key: Any) -> Any:
        return self.screen(obj[key])

    def getiter(self, obj: Any) -> Iterator[Any]:
        return map(self.screen, iter(obj))

    def getattr(self, obj: Any, name: str, *default: Any) -> Any:
        """RestrictedPython's ``_getattr_`` and the sandbox's ``getattr``."""
        if len(default) > 1:
            raise TypeError("getattr expected at most 3 arguments")
        kind = type(obj)
        if kind in _REFUSED_TYPES or isinstance(obj, ModuleType):
            raise AttributeError(f"attributes of {kind.__name__} objects are not available")
        if isinstance(obj, BaseException) and name not in _EXCEPTION_ATTRIBUTES:
            raise AttributeError(f"{kind.__name__}.{name} is not available in the sandbox")
        if name in ("format", "format_map") and (
            isinstance(obj, str) or (isinstance(obj, type) and issubclass(obj, str))
        ):
            return self._format(obj, name)
        return self.screen(safer_getattr_raise(obj, name, *default))  # type: ignore[no-untyped-call]

    def hasattr(self, obj: Any, name: str) -> bool:
        try:
            self.getattr(obj, name)
        except AttributeError:
            return False
        return True

    def _format(self, obj: str | type, name: str) -> Callable[..., str]:
        vformat = self.formatter.vformat
        if isinstance(obj, str):
            if name == "format":
                return lambda *args, **kwargs: vformat(obj, args, kwargs)
            return lambda mapping: vformat(obj, (), mapping)

        def unbound(text: str, *args: Any, **kwargs: Any) -> str:
            if not isinstance(text, str):
                raise TypeError(f"str.{name} needs a str, not {type(text).__name__}")
            if name == "format":
                return vformat(text, args, kwargs)
            (mapping,) = args
            return vformat(text, (), mapping)

        return unbound

    # -- modules -----------------------------------------------------------------------------

    def proxy(self, module: ModuleType) -> object:
        """The read-only proxy of an allowed module (one per module and run)."""
        name = module.__name__
        if name not in self.proxies:
            self.proxies[name] = self._make_proxy(module)
        return self.proxies[name]

    def _make_proxy(self, module: ModuleType) -> object:
        # The module is held in closures, not in an attribute: nothing reachable names it.
        name, allowed, screen = module.__name__, ALLOWED[module.__name__], self.screen

        def get(self_: object, attr: str) -> Any:
            value = getattr(module, attr, _MISSING) if attr in allowed else _MISSING
            if value is not _MISSING:
                return screen(value)
            if attr in allowed or (not attr.startswith("_") and not hasattr(module, attr)):
                # A fresh error, raised outside any except block: the one getattr raises
                # carries the real module in its ``obj`` (and would in ``__context__``).
                raise AttributeError(f"module {name!r} has no attribute {attr!r}", name=attr)
            raise AttributeError(
                f"{name}.{attr} is not available in the sandbox; {name} offers: "
                + ", ".join(sorted(a for a in allowed if hasattr(module, a))),
                name=attr,
            )

        def refuse(self_: object, attr: str, value: object = None) -> None:
            raise AttributeError(f"module {name!r} is read-only in the sandbox")

        namespace = {
            "__slots__": (),
            "__getattr__": get,
            "__setattr__": refuse,
            "__delattr__": refuse,
            "__repr__": lambda self_: f"<module {name!r} (read-only)>",
        }
        return type("module", (), namespace)()

    def import_(
        self, name: str, globals: object = None, locals: object = None, fromlist: Any = (),
        level: int = 0,
    ) -> object:  # fmt: skip
        """The sandbox's ``__import__``: allowed modules, and allowed names from them."""
        if level != 0:
            raise ImportError("relative imports are not available in the sandbox")
        if name not in ALLOWED:
            raise ImportError(
                f"import of {name!r} is not allowed in the sandbox; available modules: "
                + ", ".join(sorted(ALLOWED))
            )
        module = importlib.import_module(name)
        for attr in fromlist or ():
            if attr not in ALLOWED[name] or not hasattr(module, attr):
                raise ImportError(
                    f"cannot import {attr!r} from {name!r} in the sandbox; {name} offers: "
                    + ", ".join(sorted(a for a in ALLOWED[name] if hasattr(module, a))),
                    name=name,
                )
        if not fromlist and "." in name:  # `import a.b` binds `a`
            module = importlib.import_module(name.partition(".")[0])
        return self.proxy(module)

    # -- the namespace -----------------------------------------------------------------------

    def namespace(self, output: Any, writes: Any) -> dict[str, Any]:
        """The globals of a run: restricted builtins and the guard functions the compiled code
        calls. ``output`` has ``write(text)`` and ``text()``; ``writes`` is the attribute-write
        policy (``make_class``, ``guard``, ``setattr``, ``delattr``)."""

        class SharedPrint(PrintCollector):  # type: ignore[misc]
            """Every ``print`` (module level and in functions) writes to the one output."""

            def __init__(self, _getattr_: object = None) -> None:
                self._getattr_ = _getattr_

            def write(self, text: str) -> None:
                output.write(text)

            def __call__(self) -> str:
                return str(output.text())

        printer = SharedPrint(self.getattr)
        builtins = {name: value for name, value in safe_builtins.items() if name != "_getattr_"}
        builtins.update({name: getattr(real_builtins, name) for name in _EXTRA_BUILTINS})
        builtins.update({name: _refusal(name, why) for name, why in _REFUSED_BUILTINS.items()})
        builtins.update(
            __import__=self.import_,
            getattr=self.getattr,
            hasattr=self.hasattr,
            setattr=writes.setattr,
            delattr=writes.delattr,
        )
        return {
            "__builtins__": builtins,
            "__name__": "__sandbox__",
            "__metaclass__": writes.make_class,
            "_getattr_": self.getattr,
            "_getitem_": self.getitem,
            "_getiter_": self.getiter,
            "_iter_unpack_sequence_": guarded_iter_unpack_sequence,
            "_unpack_sequence_": guarded_unpack_sequence,
            "_write_": writes.guard,
            "_apply_": self.call,
            "_call_": self.call,
            "_screen_": self.screen,
            "_check_": self.check,
            "_decorate_": self.decorate,
            "_inplacevar_": lambda op, x, y: self.screen(_INPLACE[op](x, y)),
            "_print_": lambda _getattr_=None: printer,
            "_print": printer,
        }
