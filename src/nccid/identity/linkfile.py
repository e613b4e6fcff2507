"""Turn a CSV file of NHS/CHI numbers into pseudonyms, streaming (pure: no Django).

The number column is replaced, in place, by ``pseudonym`` (and ``pseudonym_error`` unless
strict), so another dataset can be joined to the warehouse without anyone seeing an
identifier. The output is written to a temporary file and moved into place only when the
whole input was read without a fatal problem: a failed run leaves no half-written file.
Messages name rows and columns, never a number.
"""

from __future__ import annotations

import csv
import io
import os
import re
import secrets
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from nccid.identity.keys import Keyring
from nccid.identity.numbers import (
    InvalidPatientNumber,
    looks_like_patient_number,
    validate_patient_number,
)

PSEUDONYM_COLUMN = "pseudonym"
ERROR_COLUMN = "pseudonym_error"
MAX_LISTED = 20
_NOT_CSV_MAGIC = {b"PK\x03\x04": "an xlsx/zip file", b"\xd0\xcf\x11\xe0": "an old Excel (xls) file"}


class LinkFileError(ValueError):
    """The file cannot be linked; the message says what and where. No output was written."""


@dataclass
class LinkSummary:
    rows: int = 0
    pseudonymised: int = 0
    invalid: int = 0
    # (row, reason) of the first MAX_LISTED invalid numbers; row 1 is the header.
    invalid_rows: list[tuple[int, str]] = field(default_factory=list)
    # Kept columns where some values look like NHS/CHI numbers: {column: rows}.
    suspicious_columns: dict[str, int] = field(default_factory=dict)


def _key(header: str) -> str:
    return re.sub(r"[\s_]+", "_", header.strip().lower())


def find_column(headers: list[str], wanted: str) -> int:
    """Index of ``wanted``, matched ignoring case, spaces and underscores.

    Two matching columns are an error: the one left behind would be copied with its numbers.
    """
    loose = [i for i, h in enumerate(headers) if _key(h) == _key(wanted)]
    if len(loose) == 1:
        return loose[0]
    if not loose:
        raise LinkFileError(f"no column {wanted!r} in the header row: {_describe_headers(headers)}")
    raise LinkFileError(f"column {wanted!r} appears {len(loose)} times in the header row")


# A digit or two words of letters: a header holding one may be a patient's number, birth date
# or name (a file without a header row), so it is never repeated in a message.
_MAYBE_IDENTIFYING = re.compile(r"[0-9]|[^\W\d_]{2,}[^\w]+[^\W\d_]{2,}")


def _describe_headers(headers: list[str]) -> str:
    """The header row in words safe to print: headers that could identify are named by position."""
    count = f"{len(headers)} column{'s' if len(headers) != 1 else ''}"
    if any(looks_like_patient_number(h) or re.search(r"[0-9]{2}", h) for h in headers):
        return (f"{count}, and the first row looks like data, not headers (it holds numbers or "
                "dates; not shown): add a header row, naming the NHS/CHI number column "
                "nhs_number or giving its header with --column")
    shown = [f"column {i + 1} (not shown)" if _MAYBE_IDENTIFYING.search(h) else repr(h)
             for i, h in enumerate(headers[:30])]
    more = f" and {len(headers) - 30} more" if len(headers) > 30 else ""
    return f"{count}: {', '.join(shown)}{more}; give the NHS/CHI number column's header with --column"


def check_output_path(target: Path) -> None:
    """LinkFileError unless ``target`` can be a new file: its folder exists, it is no folder."""
    target = Path(target)
    if target.is_dir():
        raise LinkFileError(f"the output {target} is a folder: give a file name, e.g. {target / 'linked.csv'}")
    if not target.parent.is_dir():
        raise LinkFileError(f"the output folder {target.parent} does not exist: create it first")


def _check_not_binary(path: Path) -> None:
    with open(path, "rb") as handle:
        start = handle.read(4)
    for magic, what in _NOT_CSV_MAGIC.items():
        if start.startswith(magic):
            raise LinkFileError(f"{path.name} is {what}, not a CSV file: save it as CSV first")


def link_csv(
    source: Path,
    target: Path,
    column: str,
    keyring: Keyring,
    *,
    strict: bool = False,
    encoding: str = "utf-8-sig",
    delimiter: str = ",",
    progress: Callable[[int], None] | None = None,
) -> LinkSummary:
    """Write ``target``: ``source`` with ``column`` replaced by pseudonyms. See the module doc.

    ``progress`` is called now and then with the number of input bytes read so far.
    Raises LinkFileError (nothing written) for a file problem, or in strict mode for any
    invalid number.
    """
    source, target = Path(source), Path(target)
    if not source.is_file():
        raise LinkFileError(f"{source} is not a file")
    if target.resolve() == source.resolve():
        raise LinkFileError("the output file must not be the input file")
    check_output_path(target)
    _check_not_binary(source)
    tmp = target.with_name(f".{target.name}.{secrets.token_hex(4)}.partial")
    try:
        with open(source, "rb") as raw, open(tmp, "w", newline="", encoding="utf-8") as out:
            text = io.TextIOWrapper(raw, encoding=encoding, newline="")
            summary = _link_stream(text, out, column, keyring, strict, delimiter,
                                   lambda: progress(raw.tell()) if progress else None)
        os.replace(tmp, target)
        return summary
    except UnicodeDecodeError as exc:
        raise LinkFileError(
            f"{source.name} is not {encoding} text (byte {exc.start}): "
            "give the right --encoding (e.g. cp1252 for older Excel exports)"
        ) from None
    except csv.Error as exc:
        raise LinkFileError(f"{source.name} is not a readable CSV file: {exc}") from None
    except OSError as exc:  # e.g. no permission to write in the output folder
        raise LinkFileError(f"cannot read {source.name} or write {target}: "
                            f"{exc.strerror or type(exc).__name__}") from None
    finally:
        tmp.unlink(missing_ok=True)


def _link_stream(text, out, column, keyring, strict, delimiter, tick) -> LinkSummary:
    reader = csv.reader(text, delimiter=delimiter)
    headers = next(reader, None)
    if not headers or not any(h.strip() for h in headers):
        raise LinkFileError("the file is empty: no header row")
    index = find_column(headers, column)
    kept = [h for i, h in enumerate(headers) if i != index]
    for name in (PSEUDONYM_COLUMN, ERROR_COLUMN):
        if name in kept:
            raise LinkFileError(f"the file already has a {name!r} column")
    added = [PSEUDONYM_COLUMN] if strict else [PSEUDONYM_COLUMN, ERROR_COLUMN]
    writer = csv.writer(out, delimiter=delimiter)
    writer.writerow(headers[:index] + added + headers[index + 1:])

    summary, ragged, suspicious = LinkSummary(), [], Counter()
    for row_number, row in enumerate(reader, start=2):
        if not row:
            continue  # a blank line
        if row_number % 5000 == 0:
            tick()
        if len(row) != len(headers):
            # A shifted row could carry the number into a kept column: never copy it.
            ragged.append(row_number)
            continue
        summary.rows += 1
        try:
            pseudonym, error = keyring.pseudonym(validate_patient_number(row[index])), ""
            summary.pseudonymised += 1
        except InvalidPatientNumber as exc:
            pseudonym, error = "", str(exc)
            summary.invalid += 1
            if len(summary.invalid_rows) < MAX_LISTED:
                summary.invalid_rows.append((row_number, error))
        for i, cell in enumerate(row):
            if i != index and len(cell) >= 10 and looks_like_patient_number(cell):
                suspicious[headers[i]] += 1
        if not ragged and not (strict and summary.invalid):
            writer.writerow(row[:index] + ([pseudonym] if strict else [pseudonym, error])
                            + row[index + 1:])
    tick()
    if ragged:
        listed = ", ".join(str(r) for r in ragged[:MAX_LISTED])
        more = f" and {len(ragged) - MAX_LISTED} more" if len(ragged) > MAX_LISTED else ""
        raise LinkFileError(
            f"{len(ragged)} row(s) do not have the {len(headers)} fields of the header "
            f"(rows {listed}{more}): check for unquoted delimiters; nothing was written"
        )
    if strict and summary.invalid:
        lines = "; ".join(f"row {r}: {column} {reason}" for r, reason in summary.invalid_rows)
        more = summary.invalid - len(summary.invalid_rows)
        raise LinkFileError(
            f"{summary.invalid} invalid number(s), nothing was written: {lines}"
            + (f"; and {more} more" if more > 0 else "")
        )
    summary.suspicious_columns = dict(suspicious)
    return summary
