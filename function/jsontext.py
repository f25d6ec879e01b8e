"""JSON from outside the process, read so that nothing downstream can trip over it.

`parse` turns text into a value or raises `ValueError` with a reason a user can act on:
invalid JSON (line and column), nesting too deep, a number too long for Python, NaN or
Infinity (not JSON), or a lone surrogate (not Unicode; it could not be written out again).
`check` holds values that arrived already parsed (a Lambda event) to the same rules.
`dumps` writes a value as one line: records, outputs, and the coalescer's request keys.
"""

from __future__ import annotations

import json
import math
import re
from typing import Any

MAX_DEPTH = 64
_SURROGATE_ESCAPE = re.compile(r"\\u[dD][89a-fA-F][0-9a-fA-F]{2}")
# Where a float could overflow to infinity (an exponent of 3+ digits, 300+ digits in a row):
# only then is every float checked, so that ordinary answers parse at C speed. The text is
# looked at with every digit as `0` and `E` as `e`, without `+`: two substring searches in C
# (a regex over a 30 MB answer took seconds; this takes tens of milliseconds).
_DIGITS_AS_ZERO = bytes.maketrans(b"0123456789E", b"0000000000e")


def _may_overflow(data: bytes) -> bool:
    shape = data.translate(_DIGITS_AS_ZERO, b"+")
    return b"e000" in shape or b"0" * 300 in shape


def _no_constants(name: str) -> Any:
    raise ValueError(f"{name} is not a JSON number")


def _finite(text: str) -> float:
    value = float(text)
    if math.isinf(value):
        raise ValueError("a number is out of range (it would be infinite)")
    return value


def parse(text: str | bytes) -> Any:
    if isinstance(text, bytes):
        data = text
        try:
            text = text.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise ValueError(f"not valid UTF-8 (byte {exc.start})") from None
    else:
        data = text.encode("utf-8", "surrogatepass")
    parse_float = _finite if _may_overflow(data) else None
    try:
        value = json.loads(text, parse_constant=_no_constants, parse_float=parse_float)
    except json.JSONDecodeError as exc:
        raise ValueError(
            f"not valid JSON (line {exc.lineno}, column {exc.colno}): {exc.msg}"
        ) from None
    except RecursionError:
        raise ValueError("not usable JSON: nested too deeply") from None
    except ValueError as exc:  # a 5,000-digit integer, NaN/Infinity
        raise ValueError(f"not usable JSON: {_reason(exc)}") from None
    if _SURROGATE_ESCAPE.search(text) or (
        text.count("[") + text.count("{") > MAX_DEPTH and _deeper_than(value, MAX_DEPTH)
    ):
        check(value)
    return value


def check(value: Any) -> None:
    """Raise ValueError unless `value` is plain JSON that can be written out as UTF-8."""
    if _deeper_than(value, MAX_DEPTH):
        raise ValueError(f"not usable JSON: nested deeper than {MAX_DEPTH} levels")
    try:
        json.dumps(value, ensure_ascii=False, allow_nan=False).encode("utf-8")
    except RecursionError:
        raise ValueError("not usable JSON: nested too deeply") from None
    except UnicodeEncodeError:
        raise ValueError("not usable JSON: a string holds a lone surrogate (not Unicode)") from None
    except (TypeError, ValueError) as exc:
        raise ValueError(f"not usable JSON: {_reason(exc)}") from None


def dumps(value: Any, *, sort_keys: bool = False) -> str:
    """`value` as compact JSON on one line. orjson writes an embedding's 384 floats about
    15 times faster than json (a batch writes one a record); json takes what orjson does
    not (an integer past 64 bits). NaN and Infinity are written as null: JSON has neither."""
    import orjson  # on the first record written: a cold start does not wait for it

    option = orjson.OPT_NON_STR_KEYS | (orjson.OPT_SORT_KEYS if sort_keys else 0)
    try:
        return orjson.dumps(value, option=option).decode()
    except TypeError:  # orjson.JSONEncodeError is one
        return json.dumps(value, ensure_ascii=False, sort_keys=sort_keys)


def _deeper_than(value: Any, limit: int) -> bool:
    """Whether containers nest more than `limit` deep (iteratively: no recursion to blow)."""
    stack = [(value, 1)]
    while stack:
        current, depth = stack.pop()
        if isinstance(current, dict):
            children: Any = current.values()
        elif isinstance(current, list | tuple):
            children = current
        else:
            continue
        if depth > limit:
            return True
        stack.extend(
            (child, depth + 1) for child in children if isinstance(child, dict | list | tuple)
        )
    return False


def _reason(exc: Exception) -> str:
    text = str(exc)
    if "integer string conversion" in text or "digits" in text:
        return "a number has too many digits"
    if "Out of range float" in text or "is not a JSON number" in text:
        return "NaN and Infinity are not JSON numbers"
    if "out of range" in text:
        return text
    if "not JSON serializable" in text:
        return text.split(" is not")[0].removeprefix("Object of type ") + " is not a JSON type"
    if "keys must be" in text:
        return "object keys must be strings"
    return text[:200]
