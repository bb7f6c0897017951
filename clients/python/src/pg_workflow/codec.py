"""JSON shapes shared with the other SDKs (see clients/python/README.md, "Wire format").

input  = a JSON array of the positional arguments; keyword arguments are first bound to
         their positions by the function's signature. Only keyword-only arguments (or
         **kwargs) make it an object: {"args": [...], "kwargs": {...}}. Readers accept both.
output = the return value as JSON (null for None).
error  = {"type": "ValueError", "message": "...", "traceback": "..."}.
"""
from __future__ import annotations

import builtins
import inspect
import json
import traceback as tb
from typing import Any, Callable

from .errors import SerializationError, StepFailed

Encoder = Callable[[Any], Any]


def dumps(value: Any, default: Encoder | None = None, what: str = "value") -> str:
    try:
        return json.dumps(value, default=default, allow_nan=False, separators=(",", ":"))
    except (TypeError, ValueError) as e:
        raise SerializationError(f"{what} is not JSON ({e}); return JSON-able values "
                                 f"or give App(json_default=...)") from None


SCALARS = (str, int, float, bool, type(None))


def as_stored(value: Any, encoded: str) -> Any:
    """What a replay will return for `value`: the value itself when JSON keeps it as it is
    (a scalar), else its JSON decoded (a tuple becomes a list, a dict's int keys strings)."""
    return value if type(value) in SCALARS else json.loads(encoded)


class Encoded(str):
    """JSON text made here (an input on its way to start). Values read from the database
    are already parsed by psycopg: only this type is ever decoded again."""


def loads(value: Any) -> Any:
    return json.loads(value) if isinstance(value, Encoded) else value


def encode_input(fn: Callable[..., Any], args: tuple, kwargs: dict, default: Encoder | None) -> "Encoded":
    if kwargs:
        try:
            bound = inspect.signature(fn).bind(*args, **kwargs)
        except TypeError as e:
            raise TypeError(f"{getattr(fn, '__qualname__', fn)}: {e}") from None
        args, kwargs = bound.args, bound.kwargs
    if kwargs:
        return Encoded(dumps({"args": list(args), "kwargs": kwargs}, default, "the workflow's input"))
    return Encoded(dumps(list(args), default, "the workflow's input"))


def decode_input(value: Any) -> tuple[list, dict]:
    value = loads(value)
    if value is None:
        return [], {}
    if isinstance(value, list):
        return value, {}
    if isinstance(value, dict) and set(value) <= {"args", "kwargs"}:
        return list(value.get("args") or []), dict(value.get("kwargs") or {})
    return [value], {}  # a single non-array input (e.g. from psql or a schedule): one argument


def error_of(e: BaseException) -> dict:
    return {"type": type(e).__name__, "message": str(e),
            "traceback": "".join(tb.format_exception(type(e), e, e.__traceback__))}


def rebuild_step_error(error: Any) -> BaseException:
    """The exception a replayed step raises: the builtin type of the first run when there is
    one (ValueError, KeyError, ...), else StepFailed carrying the type name."""
    if not isinstance(error, dict):
        return StepFailed("Error", str(error))
    name, message = str(error.get("type", "Error")), str(error.get("message", ""))
    cls = getattr(builtins, name, None)
    if isinstance(cls, type) and issubclass(cls, Exception):
        try:
            return cls(message)
        except Exception:
            pass
    return StepFailed(name, message, error.get("traceback"))
