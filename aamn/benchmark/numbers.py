"""Whether every number of a report is in the results it reports: the numbers of a Markdown text
(outside code) that no value of a results JSON gives at the precision shown.

A number shown with ``d`` decimals is found when a value of the JSON rounds to it at ``d``
decimals; the values are every number of the JSON, and of each list of numbers its mean, sample
standard deviation, min, max and range (a "mean ± std" of per-seed values), and of each value
between 0 and 1 the percentage (a fraction shown as "33 %").  Integers below ``min_integer``
(counts: "2 budgets", "3 seeds") and the numbers inside backticks or code blocks (commands,
config keys) are not checked; a number only some arithmetic of the JSON gives (a difference, a
ratio) is reported, to be stored in the results or said otherwise.  ``tools/check_numbers.py``
is the command line."""

import bisect
import math
import re
import statistics
from typing import List, NamedTuple, Optional, Sequence, Tuple

# a number: not part of a word, a metric's name (P@0.5) or a longer number; 1,214 is one number
_NUMBER = re.compile(r"(?<![\w.,@])-?(?:\d{1,3}(?:,\d{3})+|\d+)(?:\.\d+)?(?!\w|[.,]\d)")
_DATE = re.compile(r"\b\d{4}-\d{2}-\d{2}\b")
_CODE_SPAN = re.compile(r"`[^`\n]*`")


class Number(NamedTuple):
    """A number of the text: as written, its value, its decimals and its line (1-based)."""

    text: str
    value: float
    decimals: int
    line: int


def numbers_in(text: str, min_integer: int = 10) -> List[Number]:
    """The numbers of a Markdown ``text`` outside code (backtick spans, fenced blocks) and dates;
    integers below ``min_integer`` are left out."""
    out, fenced = [], False
    for i, line in enumerate(text.splitlines(), 1):
        if line.lstrip().startswith("```"):
            fenced = not fenced
            continue
        if fenced:
            continue
        line = _DATE.sub(" ", _CODE_SPAN.sub(" ", line))
        for m in _NUMBER.finditer(line):
            token = m.group(0)
            plain = token.replace(",", "")
            decimals = len(plain.split(".")[1]) if "." in plain else 0
            value = float(plain)
            if decimals == 0 and abs(value) < min_integer:
                continue
            out.append(Number(token, value, decimals, i))
    return out


def json_values(obj) -> List[float]:
    """Every number of a JSON value (bools left out), with each numeric list's mean, sample
    standard deviation, min, max and range, and each fraction's percentage."""
    out: List[float] = []

    def walk(o):
        if isinstance(o, bool) or o is None:
            return
        if isinstance(o, (int, float)):
            if math.isfinite(o):
                out.append(float(o))
                if 0.0 < abs(o) <= 1.0:
                    out.append(100.0 * o)
            return
        if isinstance(o, dict):
            for v in o.values():
                walk(v)
            return
        if isinstance(o, (list, tuple)):
            nums = [float(v) for v in o if isinstance(v, (int, float)) and not isinstance(v, bool)
                    and math.isfinite(v)]  # fmt: skip
            if len(nums) > 1:
                out.extend([statistics.mean(nums), statistics.stdev(nums), min(nums), max(nums),
                            max(nums) - min(nums)])  # fmt: skip
            for v in o:
                walk(v)

    walk(obj)
    return out


def found(number: Number, values: Sequence[float]) -> bool:
    """Whether a value of ``values`` (sorted) rounds to ``number`` at its decimals (within half a
    unit of its last digit)."""
    half = 0.5 * 10.0**-number.decimals + 1e-9
    i = bisect.bisect_left(values, number.value - half)
    return i < len(values) and values[i] <= number.value + half


def unmatched(text: str, obj, min_integer: int = 10) -> List[Number]:
    """The numbers of ``text`` (``numbers_in``) that no value of ``obj`` (``json_values``)
    gives."""
    values = sorted(json_values(obj))
    return [n for n in numbers_in(text, min_integer) if not found(n, values)]


def _heading_level(row: str) -> int:
    """The level of a Markdown heading row (its leading ``#``), 0 for another row."""
    return len(row) - len(row.lstrip("#"))


def section(text: str, heading: Optional[str] = None, lines: Optional[Tuple[int, int]] = None):
    """``(first line number, text)`` of the Markdown section under the heading that starts with
    ``heading`` (to the next heading of its level or above), or of the 1-based inclusive line range
    ``lines``; the whole text when neither is given.

    Raises:
        ValueError: no heading starts so, or the range is outside the text.
    """
    rows = text.splitlines()
    if lines is not None:
        a, b = lines
        if not 1 <= a <= b <= len(rows):
            raise ValueError(f"lines {a}-{b}: the text has {len(rows)} lines")
        return a, "\n".join(rows[a - 1 : b])
    if heading is None:
        return 1, text
    for i, row in enumerate(rows):
        level = _heading_level(row)
        if level and row[level:].strip().startswith(heading):
            end = next((j for j in range(i + 1, len(rows))
                        if 0 < _heading_level(rows[j]) <= level), len(rows))  # fmt: skip
            return i + 1, "\n".join(rows[i:end])
    raise ValueError(f"no heading starting with {heading!r}")
