"""Time and money as the Billwerk API writes them, for the sandbox.

Creation times are kept as integer ticks of 100 ns since the Unix epoch, the resolution
of the API's seven fractional digits, so a window edge at 23:59:59.9999999 compares
exactly. Money is kept as integer cents and written into the JSON text with two decimals
by hand, because a float would print as `1234.5` or with binary noise.
"""

from __future__ import annotations

import json
import re
from datetime import UTC, date, datetime
from decimal import Decimal
from typing import Any

TICKS_PER_SECOND = 10_000_000
TICKS_PER_DAY = 86_400 * TICKS_PER_SECOND
_EPOCH_ORDINAL = date(1970, 1, 1).toordinal()

# Both the bare date and a UTC timestamp with 0 to 7 fractional digits are valid params.
_PARAM_RE = re.compile(
    r"(\d{4})-(\d{2})-(\d{2})(?:T(\d{2}):(\d{2}):(\d{2})(?:\.(\d{1,7}))?Z)?",
    re.ASCII,
)

# Money travels through the JSON encoder as a string wrapped in control characters, which
# the encoder escapes; stripping the escaped wrapper and its quotes leaves a bare number.
_OPEN, _CLOSE = "\x00\x01", "\x01\x00"
_OPEN_JSON, _CLOSE_JSON = '"\\u0000\\u0001', '\\u0001\\u0000"'

_day_names: dict[int, str] = {}


def day_ticks(day: date) -> int:
    """The tick at 00:00:00.0000000 UTC of `day`."""
    return (day.toordinal() - _EPOCH_ORDINAL) * TICKS_PER_DAY


def tick_day(ticks: int) -> date:
    """The UTC calendar day a tick falls on."""
    return date.fromordinal(ticks // TICKS_PER_DAY + _EPOCH_ORDINAL)


def now_ticks() -> int:
    """The current wall-clock time as ticks."""
    return int(datetime.now(UTC).timestamp() * TICKS_PER_SECOND)


def format_ticks(ticks: int) -> str:
    """Write ticks as the API does: `2024-01-15T10:22:33.1234567Z`."""
    days, rest = divmod(ticks, TICKS_PER_DAY)
    name = _day_names.get(days)
    if name is None:
        name = date.fromordinal(days + _EPOCH_ORDINAL).isoformat()
        _day_names[days] = name

    seconds, fraction = divmod(rest, TICKS_PER_SECOND)
    hours, seconds = divmod(seconds, 3600)
    minutes, seconds = divmod(seconds, 60)
    return f"{name}T{hours:02d}:{minutes:02d}:{seconds:02d}.{fraction:07d}Z"


def parse_timestamp(text: str) -> int:
    """Read a `dateFrom` / `dateTo` value or a record timestamp into ticks.

    A bare date means midnight at the start of that day, as a .NET server reads it.
    Raises ValueError for anything else, which the server turns into a 400.
    """
    match = _PARAM_RE.fullmatch(text)
    if match is None:
        msg = f"not a date or UTC timestamp with up to 7 fractional digits: {text!r}"
        raise ValueError(msg)

    year, month, day, hour, minute, second, fraction = match.groups()
    moment = datetime(
        int(year), int(month), int(day), int(hour or 0), int(minute or 0), int(second or 0)
    )
    days = moment.toordinal() - _EPOCH_ORDINAL
    seconds = moment.hour * 3600 + moment.minute * 60 + moment.second
    return days * TICKS_PER_DAY + seconds * TICKS_PER_SECOND + int((fraction or "").ljust(7, "0"))


def format_money(cents: int) -> str:
    """Write cents as a JSON number with exactly two decimals."""
    sign = "-" if cents < 0 else ""
    whole, part = divmod(abs(cents), 100)
    return f"{sign}{whole}.{part:02d}"


def money(cents: int) -> str:
    """A record value that `to_json` writes as a JSON number with two decimals."""
    if cents >= 0:
        return f"{_OPEN}{cents // 100}.{cents % 100:02d}{_CLOSE}"
    return f"{_OPEN}{format_money(cents)}{_CLOSE}"


def _json_default(value: object) -> str:
    # Callers may insert records holding Decimal amounts; they are money too.
    if isinstance(value, Decimal):
        return money(int(value.scaleb(2).to_integral_value()))
    msg = f"cannot write {type(value).__name__} into a sandbox record"
    raise TypeError(msg)


_ENCODER = json.JSONEncoder(ensure_ascii=False, separators=(",", ":"), default=_json_default)


def to_json(record: dict[str, Any]) -> bytes:
    """Serialize one record once, with Unicode kept as UTF-8 and money with two decimals."""
    text = _ENCODER.encode(record)
    if _OPEN_JSON in text:
        text = text.replace(_OPEN_JSON, "").replace(_CLOSE_JSON, "")
    return text.encode("utf-8")
