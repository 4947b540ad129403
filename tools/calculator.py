"""The ``calculator`` tool: exact arithmetic on one expression, without executing code.

The expression is parsed with :func:`ast.parse` (``mode="eval"``) and walked by a small
evaluator that knows a fixed set of nodes; anything else (names outside the whitelist,
attributes, subscripts, comprehensions, lambdas, strings…) is refused before evaluation.

Numbers and exactness:

* integers are exact and unbounded up to :data:`MAX_BITS` bits (about 10,000 digits);
* ``/`` between exact numbers gives a :class:`~fractions.Fraction` (``1/3`` stays ``1/3``);
* decimal literals are read from their source text, so ``0.1 + 0.2`` is exactly ``3/10``;
* functions without an exact answer (``sin``, ``log``, ``sqrt(2)`` …) give floats.

Bounds are checked *before* the expensive step: ``2**(10**9)`` or ``10**10**10`` is refused
at once, as is ``factorial`` past :data:`MAX_FACTORIAL`.

Contract: ``calculator(expression)`` returns a short string (``"1/3 ≈ 0.3333…"``, ``"1024"``)
or raises :class:`CalculatorError` (a :class:`~tools.base.ToolError`) saying what was wrong.
"""

from __future__ import annotations

import ast
import math
import re
from collections.abc import Callable
from decimal import Decimal, localcontext
from fractions import Fraction
from typing import Annotated

from pydantic import Field

from tools.base import ToolError, tool

Number = int | Fraction | float

MAX_EXPRESSION_CHARS = 2_000
MAX_BITS = 33_300
"""Largest exact integer (numerator, denominator) kept, in bits: about 10,000 decimal digits."""
MAX_FACTORIAL = 3_000
MAX_ROUND_DIGITS = 1_000
_DECIMAL_DIGITS = 20
"""Significant digits shown in the decimal form of a non-terminating fraction."""


class CalculatorError(ToolError):
    """The expression could not be evaluated; the message says why."""


def _bits(value: int) -> int:
    return abs(value).bit_length()


def _check(value: Number) -> Number:
    """Normalise a result (integral fractions become ints) and enforce the size bounds."""
    if isinstance(value, bool):
        return int(value)
    if isinstance(value, complex):
        raise CalculatorError("the result is a complex number; only real arithmetic is supported")
    if isinstance(value, float):
        if not math.isfinite(value):
            raise CalculatorError("the result is not a finite number (overflow or undefined)")
        return value
    if isinstance(value, Fraction):
        if _bits(value.numerator) > MAX_BITS or _bits(value.denominator) > MAX_BITS:
            raise CalculatorError(_too_big())
        return value.numerator if value.denominator == 1 else value
    if _bits(value) > MAX_BITS:
        raise CalculatorError(_too_big())
    return value


def _too_big() -> str:
    return f"the result would exceed {MAX_BITS} bits (about 10,000 digits); use smaller numbers"


def _float(value: Number) -> float:
    try:
        return float(value)
    except OverflowError:
        raise CalculatorError(
            "a number is too large for floating-point functions (more than about 1e308)"
        ) from None


_LITERAL = re.compile(r"(?P<mant>[0-9_]*\.?[0-9_]*)(?:[eE](?P<exp>[+-]?[0-9_]+))?")


def _literal(text: str) -> Number:
    """Read a float literal exactly from its source text (``0.1`` is ``1/10``)."""
    match = _LITERAL.fullmatch(text)
    if match is None:
        raise CalculatorError(f"cannot read the number {text!r}")
    exponent = int(match["exp"] or "0")
    if abs(exponent) > 4 * MAX_BITS // 13:  # 10**e has about 3.33*e bits
        raise CalculatorError(f"the exponent of {text!r} is too large")
    return _check(Fraction(text.replace("_", "")))


def _iroot(value: int, n: int) -> int | None:
    """The exact non-negative integer ``n``-th root of ``value``, or ``None``."""
    if value < 0:
        return None
    if value < 2:
        return value
    # Newton iteration on integers, starting above the root.
    x = 1 << ((_bits(value) + n - 1) // n)
    while True:
        y = ((n - 1) * x + value // x ** (n - 1)) // n
        if y >= x:
            break
        x = y
    return x if x**n == value else None


def _power(base: Number, exponent: Number) -> Number:
    if (
        isinstance(exponent, Fraction)
        and not isinstance(base, float)
        and exponent.denominator <= 64
    ):
        # Exact roots where they exist: 4**(1/2) == 2, (8/27)**(2/3) == 4/9.
        root_base = Fraction(base)
        num = _iroot(root_base.numerator, exponent.denominator)
        den = _iroot(root_base.denominator, exponent.denominator)
        if num is not None and den is not None:
            return _power(Fraction(num, den), exponent.numerator)
    if isinstance(exponent, int) and not isinstance(base, float):
        if base == 0 and exponent < 0:
            raise CalculatorError("division by zero (0 raised to a negative power)")
        if base not in (0, 1, -1):
            frac = Fraction(base)
            size = max(_bits(frac.numerator), _bits(frac.denominator))
            if abs(exponent) * max(size - 1, 1) > MAX_BITS:
                raise CalculatorError(_too_big())
        return _check(Fraction(base) ** exponent)
    try:
        result = _float(base) ** _float(exponent)
    except OverflowError:
        raise CalculatorError("the result is too large for floating-point numbers") from None
    except ZeroDivisionError:
        raise CalculatorError("division by zero (0 raised to a negative power)") from None
    return _check(result)


def _div(a: Number, b: Number) -> Number:
    if isinstance(a, float) or isinstance(b, float):
        return a / b
    return Fraction(a) / Fraction(b)


_BINARY: dict[type[ast.operator], Callable[[Number, Number], Number]] = {
    ast.Add: lambda a, b: a + b,
    ast.Sub: lambda a, b: a - b,
    ast.Mult: lambda a, b: a * b,
    ast.Div: _div,
    ast.FloorDiv: lambda a, b: a // b,
    ast.Mod: lambda a, b: a % b,
    ast.Pow: _power,
}


def _sqrt(x: Number) -> Number:
    if x < 0:
        raise CalculatorError("sqrt of a negative number is not a real number")
    return _power(x, Fraction(1, 2)) if not isinstance(x, float) else math.sqrt(x)


def _log(x: Number, base: Number | None = None) -> Number:
    def ln(v: Number) -> float:
        if v <= 0:
            raise CalculatorError("log is only defined for positive numbers")
        if isinstance(v, Fraction):  # big numerators and denominators stay out of floats
            return math.log(v.numerator) - math.log(v.denominator)
        return math.log(v)

    if base is None:
        return ln(x)
    if base <= 0 or base == 1:
        raise CalculatorError("the base of log must be positive and not 1")
    result = ln(x) / ln(base)
    exact = round(result)
    if (
        not isinstance(x, float)
        and not isinstance(base, float)
        and abs(result - exact) < 1e-9
        and abs(exact) * max(_bits(Fraction(base).numerator), _bits(Fraction(base).denominator))
        <= MAX_BITS
        and Fraction(base) ** exact == x
    ):
        return exact  # log(1000, 10) is exactly 3, not 2.9999999999999996
    return result


def _factorial(n: Number) -> int:
    if not isinstance(n, int) or n < 0:
        raise CalculatorError("factorial needs a non-negative integer")
    if n > MAX_FACTORIAL:
        raise CalculatorError(f"factorial is limited to n <= {MAX_FACTORIAL}")
    return math.factorial(n)


def _ints(name: str, *values: Number) -> list[int]:
    if not all(isinstance(v, int) for v in values):
        raise CalculatorError(f"{name} needs integers")
    return [int(v) for v in values]


def _round(x: Number, digits: Number | None = None) -> Number:
    if digits is None:
        return round(x)
    if not isinstance(digits, int) or abs(digits) > MAX_ROUND_DIGITS:
        raise CalculatorError(f"round's digits must be an integer within ±{MAX_ROUND_DIGITS}")
    if isinstance(x, float):
        return round(x, digits)
    return round(Fraction(x), digits)


def _float_fn(fn: Callable[[float], float]) -> Callable[[Number], Number]:
    return lambda x: fn(_float(x))


def _min(*values: Number) -> Number:
    return min(values)


def _max(*values: Number) -> Number:
    return max(values)


FUNCTIONS: dict[str, tuple[Callable[..., Number], int, int]] = {
    # name: (function, min args, max args)
    "sqrt": (_sqrt, 1, 1),
    "sin": (_float_fn(math.sin), 1, 1),
    "cos": (_float_fn(math.cos), 1, 1),
    "tan": (_float_fn(math.tan), 1, 1),
    "asin": (_float_fn(math.asin), 1, 1),
    "acos": (_float_fn(math.acos), 1, 1),
    "atan": (_float_fn(math.atan), 1, 1),
    "exp": (_float_fn(math.exp), 1, 1),
    "log": (_log, 1, 2),
    "ln": (_log, 1, 1),
    "log10": (lambda x: _log(x, 10), 1, 1),
    "log2": (lambda x: _log(x, 2), 1, 1),
    "factorial": (_factorial, 1, 1),
    "gcd": (lambda *v: math.gcd(*_ints("gcd", *v)), 1, 64),
    "lcm": (lambda *v: math.lcm(*_ints("lcm", *v)), 1, 64),
    "abs": (abs, 1, 1),
    "round": (_round, 1, 2),
    "floor": (math.floor, 1, 1),
    "ceil": (math.ceil, 1, 1),
    "min": (_min, 1, 256),
    "max": (_max, 1, 256),
}
CONSTANTS: dict[str, float] = {"pi": math.pi, "e": math.e, "tau": math.tau}


class _Evaluator:
    def __init__(self, source: str) -> None:
        self.source = source

    def eval(self, node: ast.AST) -> Number:
        if isinstance(node, ast.Expression):
            return self.eval(node.body)
        if isinstance(node, ast.Constant):
            return self._constant(node)
        if isinstance(node, ast.BinOp):
            return self._binop(node)
        if isinstance(node, ast.UnaryOp) and isinstance(node.op, ast.USub | ast.UAdd):
            value = self.eval(node.operand)
            return _check(-value if isinstance(node.op, ast.USub) else +value)
        if isinstance(node, ast.Name):
            if node.id in CONSTANTS:
                return CONSTANTS[node.id]
            hint = " (it is a function: call it)" if node.id in FUNCTIONS else ""
            raise CalculatorError(f"unknown name {node.id!r}{hint}; {_vocabulary()}")
        if isinstance(node, ast.Call):
            return self._call(node)
        raise CalculatorError(
            f"{type(node).__name__} is not allowed in a calculator expression; {_vocabulary()}"
        )

    def _constant(self, node: ast.Constant) -> Number:
        value = node.value
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise CalculatorError(f"only numbers are allowed, not {value!r}")
        if isinstance(value, float):
            text = ast.get_source_segment(self.source, node) or repr(value)
            return _literal(text)
        return _check(value)

    def _binop(self, node: ast.BinOp) -> Number:
        op = _BINARY.get(type(node.op))
        if op is None:
            hint = " (use ** for powers)" if isinstance(node.op, ast.BitXor) else ""
            raise CalculatorError(f"the operator {type(node.op).__name__} is not supported{hint}")
        left, right = self.eval(node.left), self.eval(node.right)
        try:
            return _check(op(left, right))
        except ZeroDivisionError:
            raise CalculatorError("division by zero") from None
        except OverflowError:
            raise CalculatorError("the result is too large for floating-point numbers") from None

    def _call(self, node: ast.Call) -> Number:
        if not isinstance(node.func, ast.Name) or node.func.id not in FUNCTIONS:
            name = node.func.id if isinstance(node.func, ast.Name) else ast.unparse(node.func)
            raise CalculatorError(f"unknown function {name!r}; {_vocabulary()}")
        if node.keywords or any(isinstance(a, ast.Starred) for a in node.args):
            raise CalculatorError(f"{node.func.id}() takes plain positional arguments only")
        fn, low, high = FUNCTIONS[node.func.id]
        if not low <= len(node.args) <= high:
            count = f"{low}" if low == high else f"{low} to {high}"
            raise CalculatorError(f"{node.func.id}() takes {count} argument(s)")
        args = [self.eval(a) for a in node.args]
        try:
            return _check(fn(*args))
        except OverflowError:
            raise CalculatorError(
                f"{node.func.id}(): the result is too large for floating-point numbers"
            ) from None
        except (ValueError, ZeroDivisionError) as exc:
            raise CalculatorError(f"{node.func.id}(): {exc}") from None


def _vocabulary() -> str:
    return (
        "use numbers, + - * / // % **, parentheses, the functions "
        + ", ".join(sorted(FUNCTIONS))
        + " and the constants "
        + ", ".join(sorted(CONSTANTS))
    )


def _int_text(value: int) -> str:
    """``str(value)`` without Python's 4,300-digit conversion limit."""
    if value < 0:
        return "-" + _int_text(-value)
    if value.bit_length() < 10_000:
        return str(value)
    high, low = divmod(value, 10**2_000)
    return _int_text(high) + str(low).zfill(2_000)


def _terminates(fraction: Fraction) -> bool:
    den = fraction.denominator
    for p in (2, 5):
        while den % p == 0:
            den //= p
    return den == 1


def format_number(value: Number) -> str:
    """How a result is shown: ints in full, fractions with a decimal form, floats by repr."""
    if isinstance(value, int):
        return _int_text(value)
    if isinstance(value, float):
        return repr(value)
    exact = f"{_int_text(value.numerator)}/{_int_text(value.denominator)}"
    with localcontext() as context:
        if _terminates(value) and _bits(value.denominator) < 200:
            context.prec = len(_int_text(abs(value.numerator))) + 70
            decimal = Decimal(value.numerator) / Decimal(value.denominator)
            return f"{exact} = {_plain(decimal)}"
        context.prec = _DECIMAL_DIGITS
        decimal = Decimal(value.numerator) / Decimal(value.denominator)
        return f"{exact} ≈ {_plain(decimal)}"


def _plain(value: Decimal) -> str:
    text = format(value, "f") if abs(value.adjusted()) < 30 else format(value, "e")
    if "." in text and "e" not in text:
        text = text.rstrip("0").rstrip(".")
    return text


def evaluate(expression: str) -> Number:
    """Evaluate ``expression`` exactly; raise :class:`CalculatorError` when it cannot be."""
    if len(expression) > MAX_EXPRESSION_CHARS:
        raise CalculatorError(
            f"the expression is {len(expression)} characters long; the limit is "
            f"{MAX_EXPRESSION_CHARS}. Split the work into smaller steps"
        )
    if not expression.strip():
        raise CalculatorError("the expression is empty; send something like '2 + 3 * 4'")
    try:
        tree = ast.parse(expression.strip(), mode="eval")
    except SyntaxError as exc:
        raise CalculatorError(f"syntax error in {expression!r}: {exc.msg}") from None
    except (RecursionError, MemoryError, ValueError):
        raise CalculatorError("the expression is too deeply nested or malformed") from None
    try:
        return _Evaluator(expression.strip()).eval(tree)
    except RecursionError:
        raise CalculatorError("the expression is too deeply nested") from None


@tool
def calculator(expression: Annotated[str, Field(min_length=1)]) -> str:
    """Evaluate an arithmetic expression exactly (no code is run).

    Supports integers of any size (up to about 10,000 digits), exact fractions (1/3 stays
    1/3) and decimals (0.1 + 0.2 is exactly 0.3), + - * / // % ** and parentheses, the
    functions sqrt, sin, cos, tan, asin, acos, atan, exp, log (natural, or log(x, base)), ln,
    log10, log2, factorial, gcd, lcm, abs, round, floor, ceil, min, max, and the constants
    pi, e, tau. Use ** for powers (^ is not supported).

    Args:
        expression: The expression, e.g. "(2**64 - 1) / 3" or "sqrt(2) * pi".
    """
    return format_number(evaluate(expression))
