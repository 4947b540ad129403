"""The calculator: exact results, bounds checked before the work, nothing but arithmetic."""

from __future__ import annotations

import time

import pytest

from tests.conftest import HANG_BOUND
from tools.base import ToolError
from tools.calculator import CalculatorError, calculator, evaluate
from tools.registry import builtin


def calc(expression: str) -> str:
    result = calculator.invoke(calculator.validate({"expression": expression}))
    assert isinstance(result, str)
    return result


@pytest.mark.parametrize(
    ("expression", "expected"),
    [
        ("2 + 3 * 4", "14"),
        ("(2**64 - 1)", "18446744073709551615"),
        ("1/3", "1/3 ≈ 0.33333333333333333333"),
        ("0.1 + 0.2", "3/10 = 0.3"),
        ("1.5e-3", "3/2000 = 0.0015"),
        ("6/3", "2"),
        ("7 // 2", "3"),
        ("-7 % 3", "2"),
        ("2**-2", "1/4 = 0.25"),
        ("(8/27)**(2/3)", "4/9 ≈ 0.44444444444444444444"),
        ("sqrt(16)", "4"),
        ("sqrt(9/4)", "3/2 = 1.5"),
        ("sqrt(2)", "1.4142135623730951"),
        ("factorial(20)", "2432902008176640000"),
        ("gcd(12, 18) + lcm(4, 6)", "18"),
        ("log(1000, 10)", "3"),
        ("log2(1024)", "10"),
        ("abs(-5/2)", "5/2 = 2.5"),
        ("round(2/3, 3)", "667/1000 = 0.667"),
        ("min(3, 1/2, 0.75) + max(1, 2)", "5/2 = 2.5"),
        ("floor(7/2) + ceil(7/2)", "7"),
        ("cos(0)", "1.0"),
        ("1_000 * 3", "3000"),
    ],
)
def test_exact_arithmetic(expression: str, expected: str) -> None:
    assert calc(expression) == expected


def test_floats_from_transcendental_functions() -> None:
    assert float(calc("sin(pi/6)")) == pytest.approx(0.5)
    assert float(calc("exp(1)")) == pytest.approx(2.718281828459045)
    assert float(calc("2*pi - tau")) == 0.0


def test_big_integers_are_shown_in_full() -> None:
    text = calc("10**4000 + 1")  # past Python's 4,300-digit str() limit once printed
    assert text == "1" + "0" * 3999 + "1"
    assert len(calc("factorial(3000)")) == 9131


@pytest.mark.parametrize(
    "expression",
    ["2**(10**9)", "10**10**10", "(2/3)**(10**8)", "9**9**9", "factorial(3001)", "1e999999999"],
)
def test_huge_results_are_refused_quickly(expression: str) -> None:
    started = time.monotonic()
    with pytest.raises(CalculatorError):
        evaluate(expression)
    assert time.monotonic() - started < HANG_BOUND  # refused before computing


@pytest.mark.parametrize(
    ("expression", "message"),
    [
        ("__import__('os')", "unknown function '__import__'"),
        ("__import__('os').system('id')", "unknown function"),
        ("().__class__", "Attribute is not allowed"),
        ("open('x')", "unknown function 'open'"),
        ("x + 1", "unknown name 'x'"),
        ("[1, 2][0]", "Subscript is not allowed"),
        ("[1, 2]", "List is not allowed"),
        ("'a' * 3", "only numbers are allowed"),
        ("lambda: 1", "Lambda is not allowed"),
        ("2 ^ 10", r"use \*\* for powers"),
        ("1 < 2", "Compare is not allowed"),
        ("True + 1", "only numbers are allowed"),
        ("sqrt(x=4)", "plain positional arguments only"),
        ("sqrt(*[4])", "plain positional arguments only"),
        ("sqrt", "it is a function"),
        ("1 +", "syntax error"),
        ("", "empty"),
        ("1/0", "division by zero"),
        ("0**-1", "division by zero"),
        ("sqrt(-1)", "not a real number"),
        ("(-8)**(1/3)", "complex"),
        ("log(0)", "positive"),
        ("exp(1000)", "too large"),
        ("asin(2)", "domain"),
        ("factorial(1/2)", "non-negative integer"),
        ("gcd(1.5, 2)", "integers"),
        ("sin(10**400)", "too large for floating-point"),
        ("round(1, 10**6)", "within"),
    ],
)
def test_refusals_say_what_is_wrong(expression: str, message: str) -> None:
    with pytest.raises(CalculatorError, match=message) as caught:
        evaluate(expression)
    assert isinstance(caught.value, ToolError)


def test_length_and_nesting_are_capped() -> None:
    with pytest.raises(CalculatorError, match="limit is 2000"):
        evaluate("1+" * 1500 + "1")
    with pytest.raises(CalculatorError, match=r"nested|syntax"):
        evaluate("(" * 900 + "1" + ")" * 900)


def test_registered_as_a_safe_builtin() -> None:
    tool = builtin("calculator")
    assert tool is calculator
    assert tool.risk == "safe"
    assert tool.parameters["required"] == ["expression"]
