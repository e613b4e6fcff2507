"""Free-text reasons data managers type (vault reveal, withdrawal, reinstatement, study
removal), and teaching notes: refused when they seem to hold an identifier, since they are
stored in the audit log and shown on the audit page (notes go out with teaching cases). One
check for every form and command.

What is refused besides an NHS/CHI number is data: ``reasons.toml``. Messages never repeat
the reason, so they are safe to show, log and store.
"""

from __future__ import annotations

import re
import tomllib
from functools import lru_cache
from importlib import resources

from nccid.identity.keys import PSEUDONYM_PATTERN
from nccid.identity.numbers import looks_like_patient_number

PATIENT_NUMBER_MESSAGE = "the {what} must not contain an NHS/CHI number"
MAX_REASON_LENGTH = 1000  # a sentence and a reference; also bounds the checks' work
TOO_LONG_MESSAGE = "the {what} must be at most " + f"{MAX_REASON_LENGTH} characters"


def identifier_in_reason(reason: str, what: str = "reason") -> str | None:
    """Why ``reason`` may not be kept (it seems to hold an identifier, or is too long to
    check), or None when it may; the message calls it ``what`` and never repeats it."""
    text = reason or ""
    if len(text) > MAX_REASON_LENGTH:
        return TOO_LONG_MESSAGE.format(what=what)
    if looks_like_patient_number(text):
        return PATIENT_NUMBER_MESSAGE.format(what=what)
    text = re.sub(PSEUDONYM_PATTERN.pattern, " ", text, flags=re.IGNORECASE)
    for message, patterns in _refused():
        if any(pattern.search(text) for pattern in patterns):
            return message.format(what=what)
    return None


@lru_cache(maxsize=1)
def date_pattern() -> re.Pattern:
    """One pattern finding a date in the spellings ``reasons.toml`` refuses in a reason (its
    "date" kind, but for those refused in reasons only), for other typed text: a clinical
    sheet's cell where no date belongs."""
    table = _table()
    [kind] = [kind for kind in table["refused"] if kind["kind"] == "date"]
    return re.compile("|".join(f"(?:{_with_parts(p, table)})" for p in kind["patterns"]), re.IGNORECASE)


@lru_cache(maxsize=1)
def _refused() -> tuple[tuple[str, tuple[re.Pattern, ...]], ...]:
    table = _table()
    return tuple((kind["message"], tuple(re.compile(_with_parts(p, table), re.IGNORECASE)
                                         for p in kind["patterns"] + kind.get("in_reasons_only", [])))
                 for kind in table["refused"])


def _table() -> dict:
    return tomllib.loads(resources.files("nccid.identity").joinpath("reasons.toml").read_text())


def _with_parts(pattern: str, table: dict) -> str:
    """``pattern`` with each "{name}" of a shared part (a top-level string of the table,
    such as ``month``) replaced by that part; one holding "{name}" of a list of parts (such as
    ``date_separator``) is tried with each of them, the same one at every place."""
    for name, part in table.items():
        if isinstance(part, str):
            pattern = pattern.replace("{" + name + "}", part)
    for name, parts in table.items():
        if isinstance(parts, list) and "{" + name + "}" in pattern:
            pattern = "|".join(f"(?:{pattern.replace('{' + name + '}', part)})" for part in parts)
    return pattern
