"""The error answers each route can give, read from the code that gives them.

Every non-2xx answer of the functions is built in one of two ways: `RequestRejected(status, type,
reason[, headers])` (braze_forwarder.http_answers, the one error type of every HTTP function), or a
literal body `{"type": ..., "reason": ...}` handed to `Answer(...)` or the handler's
`answers.json(...)`. Reading the modules a route runs (their syntax tree, without importing them)
lists every (status, type) it can answer, with the reason's text or, where the reason is computed,
a pattern that matches it. The document's error answers are made from this list, so a new error
type shows up in `make openapi` (and a stale openapi.json fails the test) without anyone
remembering to document it.
"""

from __future__ import annotations

import ast
import importlib.util
import re
from dataclasses import dataclass
from pathlib import Path

_BUILDERS = frozenset({"Answer", "json"})


@dataclass(frozen=True)
class ErrorAnswer:
    status: int
    type: str
    reason: str | None
    """The reason's text when it is a constant; None when the code computes it."""
    pattern: str
    """A regular expression every reason of this answer matches (fullmatch)."""
    headers: tuple[str, ...]
    where: str
    """module:line of the code that answers it."""
    built_by: str
    """RequestRejected, Answer or json."""

    def matches(self, reason: str) -> bool:
        return re.fullmatch(self.pattern, reason, re.DOTALL) is not None


def error_answers(modules: tuple[str, ...]) -> list[ErrorAnswer]:
    """Every error answer built in these modules, in source order; handlers of unknown routes excluded
    (API Gateway only sends the routes of template.yaml, so they cannot answer a documented route)."""
    found: list[ErrorAnswer] = []
    for module in modules:
        spec = importlib.util.find_spec(module)
        if spec is None or spec.origin is None:
            raise ModuleNotFoundError(f"apidoc: no module {module}")
        tree = ast.parse(Path(spec.origin).read_text(encoding="utf-8"), filename=spec.origin)
        skipped = {id(node) for node in ast.walk(tree) if _is_not_found_handler(node) for node in ast.walk(node)}
        for node in ast.walk(tree):
            if isinstance(node, ast.Call) and id(node) not in skipped:
                answer = _error_answer(node, f"{module}:{node.lineno}")
                if answer is not None:
                    found.append(answer)
    return sorted(found, key=lambda answer: (answer.status, answer.type, answer.where))


def _is_not_found_handler(node: ast.AST) -> bool:
    return isinstance(node, ast.FunctionDef) and any(
        isinstance(decorator, ast.Attribute) and decorator.attr == "not_found" for decorator in node.decorator_list
    )


def _error_answer(call: ast.Call, where: str) -> ErrorAnswer | None:
    name = call.func.id if isinstance(call.func, ast.Name) else getattr(call.func, "attr", None)
    arguments = list(call.args) + [keyword.value for keyword in call.keywords if keyword.arg == "headers"]
    if not arguments or not _is_int(arguments[0]):
        return None
    status = arguments[0].value  # type: ignore[attr-defined]
    if name == "RequestRejected" and len(arguments) >= 3 and _is_str(arguments[1]):
        headers = arguments[3] if len(arguments) > 3 else None
        return _answer(name, status, arguments[1].value, arguments[2], headers, where)  # type: ignore[attr-defined]
    if name in _BUILDERS and len(arguments) >= 2 and isinstance(arguments[1], ast.Dict):
        pairs = zip(arguments[1].keys, arguments[1].values, strict=True)
        fields = {key.value: value for key, value in pairs if _is_str(key)}  # type: ignore[union-attr]
        if _is_str(fields.get("type")) and "reason" in fields:
            headers = arguments[2] if len(arguments) > 2 else None
            return _answer(name, status, fields["type"].value, fields["reason"], headers, where)
    return None


def _answer(
    built_by: str, status: int, type_: str, reason: ast.expr, headers: ast.expr | None, where: str
) -> ErrorAnswer:
    names: tuple[str, ...] = ()
    if isinstance(headers, ast.Dict):
        names = tuple(key.value for key in headers.keys if _is_str(key))  # type: ignore[union-attr]
    constant = reason.value if _is_str(reason) else None  # type: ignore[attr-defined]
    return ErrorAnswer(status, type_, constant, _pattern(reason), names, where, built_by)


def _pattern(reason: ast.expr) -> str:
    if _is_str(reason):
        return re.escape(reason.value)  # type: ignore[attr-defined]
    if isinstance(reason, ast.JoinedStr):
        return "".join(re.escape(part.value) if _is_str(part) else ".+?" for part in reason.values)
    return ".+"


def _is_int(node: ast.AST | None) -> bool:
    return isinstance(node, ast.Constant) and type(node.value) is int


def _is_str(node: ast.AST | None) -> bool:
    return isinstance(node, ast.Constant) and isinstance(node.value, str)
