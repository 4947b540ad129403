"""Compiling sandboxed code: RestrictedPython's checks, then the sandbox's own.

The compile-time half of the python sandbox's RestrictedPython layer (the run-time half, the
functions the rewritten code calls, is :mod:`tools._sandbox_policy`). Self-contained
(standard library and RestrictedPython only): the sandbox child loads this file by path.

On top of RestrictedPython's rules (no private names, no ``exec``/``eval``, ``except*``,
``match``, ``async``, annotated assignments refused; attribute, item and iteration access
rewritten to guard calls), :class:`SandboxTransformer`:

* refuses **annotations** (parameters, return values, ``x: T = v``) and ``from __future__``
  imports, so no string ever reaches ``typing.get_type_hints`` or any other evaluator;
* rewrites **every call** ``f(a, *b, k=c)`` to ``_call_(f, a, *b, k=c)``, so the result of
  every callable, builtin or stdlib, method or class, goes through the screen;
* screens the target of ``with ... as name``, what each **decorator** returns, and the
  **parameters** of every function and lambda the code defines (a stdlib callback passes them).
"""

from __future__ import annotations

import ast
from types import CodeType
from typing import cast

from RestrictedPython.compile import compile_restricted_eval, compile_restricted_exec
from RestrictedPython.transformer import RestrictingNodeTransformer, copy_locations

ANNOTATIONS_REFUSED = (
    "annotations are not allowed in the sandbox (they can be evaluated as code later): "
    "remove them, e.g. `def f(x: int) -> int:` becomes `def f(x):` and `x: int = 1` "
    "becomes `x = 1`"
)


def _name(identifier: str) -> ast.Name:
    return ast.Name(identifier, ast.Load())


def _call(
    function: str, args: list[ast.expr], keywords: list[ast.keyword] | None = None
) -> ast.Call:
    return ast.Call(func=_name(function), args=args, keywords=keywords or [])


def _parameters(arguments: ast.arguments) -> list[ast.expr]:
    every = [*arguments.posonlyargs, *arguments.args, *arguments.kwonlyargs]
    every += [a for a in (arguments.vararg, arguments.kwarg) if a is not None]
    return [_name(a.arg) for a in every]


class SandboxTransformer(RestrictingNodeTransformer):
    """RestrictedPython's transformer with the sandbox's rules (see the module docstring)."""

    def visit_arg(self, node: ast.arg) -> ast.AST:
        if node.annotation is not None:
            self.error(node, ANNOTATIONS_REFUSED)
        return cast(ast.AST, super().visit_arg(node))

    def visit_AnnAssign(self, node: ast.AnnAssign) -> None:
        self.error(node, ANNOTATIONS_REFUSED)

    def visit_ImportFrom(self, node: ast.ImportFrom) -> ast.AST:
        if node.module == "__future__":
            self.error(node, "`from __future__ import ...` is not allowed in the sandbox")
        return cast(ast.AST, super().visit_ImportFrom(node))

    def visit_Call(self, node: ast.Call) -> ast.AST:
        if isinstance(node.func, ast.Name) and node.func.id in ("exec", "eval"):
            self.error(node, f"{node.func.id.capitalize()} calls are not allowed.")
        node = self.node_contents_visit(node)
        wrapped = _call("_call_", [node.func, *node.args], node.keywords)
        copy_locations(wrapped, node)
        return ast.fix_missing_locations(wrapped)

    def visit_With(self, node: ast.With) -> ast.AST:
        targets = [item.optional_vars for item in node.items]
        node = cast(ast.With, super().visit_With(node))
        screens: list[ast.stmt] = [
            ast.Assign(
                targets=[ast.Name(target.id, ast.Store())],
                value=_call("_screen_", [_name(target.id)]),
            )
            for target in targets
            if isinstance(target, ast.Name)
        ]
        for statement in screens:
            copy_locations(statement, node)
        node.body[:0] = screens
        return ast.fix_missing_locations(node)

    def _function(self, node: ast.FunctionDef, returns: ast.expr | None) -> ast.FunctionDef:
        if returns is not None:
            self.error(node, ANNOTATIONS_REFUSED)
        parameters = _parameters(node.args)
        if parameters:
            check = ast.Expr(_call("_check_", parameters))
            copy_locations(check, node)
            docstring = ast.get_docstring(node, clean=False) is not None
            node.body.insert(1 if docstring else 0, check)
        node.decorator_list = [_call("_decorate_", [d]) for d in node.decorator_list]
        return ast.fix_missing_locations(node)

    def visit_FunctionDef(self, node: ast.FunctionDef) -> ast.AST:
        returns = node.returns
        return self._function(cast(ast.FunctionDef, super().visit_FunctionDef(node)), returns)

    def visit_Lambda(self, node: ast.Lambda) -> ast.AST:
        node = cast(ast.Lambda, super().visit_Lambda(node))
        parameters = _parameters(node.args)
        if parameters:  # `lambda a: body` becomes `lambda a: _check_(a) or body`
            node.body = ast.BoolOp(ast.Or(), [_call("_check_", parameters), node.body])
        return ast.fix_missing_locations(node)

    def visit_ClassDef(self, node: ast.ClassDef) -> ast.AST:
        node = cast(ast.ClassDef, super().visit_ClassDef(node))
        node.decorator_list = [_call("_decorate_", [d]) for d in node.decorator_list]
        return ast.fix_missing_locations(node)


class Compiled:
    """The code of a run: its statements, and the last expression (its value is returned)."""

    __slots__ = ("body", "tail")

    def __init__(self, body: CodeType, tail: CodeType | None) -> None:
        self.body, self.tail = body, tail


def compile_code(code: str, filename: str) -> Compiled | str:
    """Compile ``code`` under the sandbox's rules; a message for the model when refused.

    A final expression statement is compiled apart (``eval`` mode) so its value can be
    returned. Source nested too deeply to parse or compile is refused, not crashed on.
    """
    try:
        tree = ast.parse(code, filename, "exec")
    except SyntaxError as exc:
        return f"line {exc.lineno}: {exc.msg}"
    except (RecursionError, MemoryError, ValueError) as exc:
        return f"the code could not be parsed ({type(exc).__name__})"
    last = tree.body.pop() if tree.body and isinstance(tree.body[-1], ast.Expr) else None
    assert last is None or isinstance(last, ast.Expr)
    try:
        body = compile_restricted_exec(tree, filename, policy=SandboxTransformer)
        errors = list(body.errors)
        tail = None
        if last is not None:
            expression = ast.Expression(last.value)
            tail = compile_restricted_eval(expression, filename, policy=SandboxTransformer)
            errors += tail.errors
    except (RecursionError, MemoryError) as exc:
        return f"the code is too deeply nested ({type(exc).__name__})"
    if errors or body.code is None or (tail is not None and tail.code is None):
        return "\n".join(errors) or "the code could not be compiled"
    return Compiled(body.code, tail.code if tail is not None else None)
