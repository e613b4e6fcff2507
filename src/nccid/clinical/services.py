"""Clinical intake: the one place the portal, the API and the CLI go through.

``preview_upload`` reads, validates and pseudonymises a sheet and stages the result;
``confirm_upload`` writes it (atomically, once); ``cancel_upload`` drops it, and
``expire_checks`` those left unconfirmed past ``check_retention_days``; ``import_file``
does both for the CLI. Nothing identifying is stored: records carry pseudonyms and keyed
hospital-number hashes, the NHS/CHI numbers go to the vault encrypted.
"""

from __future__ import annotations

import base64
import csv
import hashlib
import io
import json
import logging
from collections.abc import Iterable
from contextlib import nullcontext
from datetime import timedelta
from pathlib import Path

import orjson
from django.conf import settings
from django.db import connection, transaction
from django.db.models import QuerySet
from django.utils import timezone

from nccid.accounts.models import Site, audit
from nccid.config import get_settings
from nccid.identity.service import (
    StagedNumbersUnreadable,
    get_keyring,
    seal_for_staging,
    store_staged_in_vault,
)
from nccid.withdrawal.services import remove_waiting_by_hospital_number, withdrawn_among

from . import reader
from .models import ClinicalRecord, ClinicalRecordVersion, PatientLink, Upload
from .parsing import SHEETS
from .schema import KINDS, Template, get_template
from .signals import AcceptedRecord, records_accepted
from .validation import (
    ConfigurationError,
    PatientRecord,
    Problem,
    Result,
    SiteRules,
    clean_negative,
    isaric_4c_score,
    merge_swab_lists,
    validate,
)

log = logging.getLogger("nccid.clinical")
CHUNK = 500  # rows per IN (...) query: well under every backend's parameter limit


class UploadStateError(ValueError):
    """The upload cannot go to the requested state (e.g. confirming a cancelled upload)."""


def max_bytes() -> int:
    return int(getattr(settings, "NCCID_MAX_SPREADSHEET_BYTES", reader.MAX_BYTES))


def site_rules(site: Site, accept_test_numbers: bool | None = None) -> SiteRules:
    """How the site's sheets are read. NHS test numbers are refused unless the installation
    accepts them (setting accept_test_numbers) or the caller does (the demo's synthetic load)."""
    if accept_test_numbers is None:
        accept_test_numbers = get_settings().accept_test_numbers
    return SiteRules(code=site.code, date_format=site.date_format or "DMY",
                     declared_units=dict(site.declared_units or {}),
                     accept_test_numbers=accept_test_numbers)


def _username(user) -> str:
    return getattr(user, "username", None) or (str(user) if user else "system")


def _user_or_none(user):
    return user if getattr(user, "pk", None) else None


def _refuse(upload: Upload, message: str) -> Upload:
    upload.status = Upload.Status.REJECTED
    upload.message = message
    with transaction.atomic():  # short: the upload and its audit, nothing read before
        upload.save()
        audit(_username(upload.uploaded_by or upload.uploaded_by_name), "clinical.upload.rejected",
              upload=upload.pk, site=upload.site.code, kind=upload.kind)
    log.info("clinical upload %s (%s, %s) refused: %s", upload.pk, upload.site.code, upload.kind, message)
    return upload


def preview_upload(site: Site, kind: str, filename: str, data: bytes, user) -> Upload:
    """Validate and pseudonymise a sheet; the upload is ``preview`` or ``rejected``.

    ``filename`` is only a hint and is never stored (it may carry a patient's name).
    """
    upload, staged = _checked(site, kind, data, user)
    if upload.status == Upload.Status.REJECTED:
        return upload
    try:
        return _stage(upload, staged, user)
    except Exception as exc:
        if is_user_error(exc):
            raise
        return _failed(upload, "staging")


def is_user_error(exc: Exception) -> bool:
    """This part's own error classes (and ValueError) are mistakes in the file or the request,
    said to the user as they are; anything else is an internal error."""
    return isinstance(exc, ValueError) or type(exc).__module__.startswith("nccid.clinical")


def _stage(upload: Upload, staged: dict, user) -> Upload:
    """Save the check with its counts. The counts are planned before the transaction (reading
    the site's records takes a while, and SQLite's transactions hold the write lock from their
    start); the confirmation plans again anyway."""
    plan = _plan(upload.site, upload.kind, staged)
    upload.new_records, upload.updated_records, upload.unchanged_records = (
        len(plan["new"]), len(plan["updated"]), len(plan["unchanged"]))
    upload.sheet_warnings = _with_cleared_warning(upload.sheet_warnings, plan)
    upload.staged = staged
    with transaction.atomic():
        upload.save()
        _previewed(upload, user)
        # A withdrawal committed after the check read the list looked for waiting checks before
        # this one was saved: the list is read again once it is (either order, one sees it).
        transaction.on_commit(lambda: _forget_withdrawn_since_check(upload, user))
    return upload


def _forget_withdrawn_since_check(upload: Upload, user) -> None:
    """Remove from the saved check the patients withdrawn since it read the list, as the
    withdrawal does (``forget_in_previews``), and the site's images waiting under the hospital
    numbers it gives them; ``upload`` then shows the counts saved."""
    if not withdrawn_among(staged_pseudonyms(upload.staged)):
        return  # as saved, none listed: what is saved can only have lost patients since
    with transaction.atomic():
        current = (Upload.objects.select_for_update(of=("self",)).select_related("site")
                   .filter(pk=upload.pk, status=Upload.Status.PREVIEW).first())
        if current is None:  # confirmed or cancelled meanwhile: the confirmation re-reads the list
            return
        withdrawn = withdrawn_among(staged_pseudonyms(current.staged))
        if not withdrawn:
            return
        numbers = _forget_patients(current, withdrawn)
    _remove_waiting_images(current.site, numbers, user)
    upload.refresh_from_db()


def _previewed(upload: Upload, user) -> None:
    audit(_username(user), "clinical.upload.preview", upload=upload.pk, site=upload.site.code,
          kind=upload.kind, rows=upload.total_rows, rejected=upload.rejected_rows)
    log.info("clinical upload %s (%s, %s): %s rows, %s rejected", upload.pk, upload.site.code,
             upload.kind, upload.total_rows, upload.rejected_rows)


CHECK_FAILED = ("the file could not be checked: an internal error stopped it (upload {pk} in the "
                "log). Nothing from it was imported: try again, or contact the NCCID team if it "
                "keeps failing")


def _checked(site: Site, kind: str, data: bytes, user,
             accept_test_numbers: bool | None = None) -> tuple[Upload, dict | None]:
    """``_prepare`` in the process's turn for large sheets (``parsing.SHEETS``); an internal
    failure (memory, the database) becomes a saved ``rejected`` upload saying so.

    No transaction is begun around it: SQLite's take the write lock when they begin
    (settings: transaction_mode IMMEDIATE), and reading a large sheet takes tens of seconds,
    which every other write (a sign-in) would wait out. Its own writes are short, each atomic.
    Within a caller's transaction a savepoint lets a database error there be saved as refused."""
    if kind not in KINDS:
        raise ValueError(f"unknown template kind {kind!r}: use one of {', '.join(KINDS)}")
    try:
        with SHEETS.turn(len(data)), _savepoint_if_in_transaction():
            return _prepare(site, kind, data, user, accept_test_numbers)
    except Exception as exc:
        if is_user_error(exc):
            raise
        upload = Upload(site=site, kind=kind, size=len(data), sha256=hashlib.sha256(data).hexdigest(),
                        uploaded_by=_user_or_none(user), uploaded_by_name=_username(user))
        return _failed(upload, "checking"), None


def _savepoint_if_in_transaction():
    """A savepoint inside a caller's transaction (which holds its locks already), else nothing."""
    return transaction.atomic() if connection.in_atomic_block else nullcontext()


def _failed(upload: Upload, step: str) -> Upload:
    """The upload saved as refused after an internal error (logged with its traceback): the
    site sees it in its list, with nothing of the sheet kept but its counts."""
    log.exception("clinical upload (%s, %s): %s failed", upload.site.code, upload.kind, step)
    failed = Upload(site=upload.site, kind=upload.kind, size=upload.size, sha256=upload.sha256,
                    file_format=upload.file_format, template_version=upload.template_version,
                    uploaded_by=upload.uploaded_by, uploaded_by_name=upload.uploaded_by_name,
                    total_rows=upload.total_rows, status=Upload.Status.REJECTED)
    with transaction.atomic():  # short: the record, its message naming it, and its audit
        failed.save()
        return _refuse(failed, CHECK_FAILED.format(pk=failed.pk))


def _prepare(site: Site, kind: str, data: bytes, user,
             accept_test_numbers: bool | None = None) -> tuple[Upload, dict | None]:
    """Read, validate and pseudonymise: an unsaved ``preview`` upload and its staged records,
    or a saved ``rejected`` upload."""
    if kind not in KINDS:
        raise ValueError(f"unknown template kind {kind!r}: use one of {', '.join(KINDS)}")
    upload = Upload(site=site, kind=kind, size=len(data), sha256=hashlib.sha256(data).hexdigest(),
                    uploaded_by=_user_or_none(user), uploaded_by_name=_username(user),
                    status=Upload.Status.PREVIEW)
    try:
        sheet = reader.read_bytes(data, max_bytes())
        upload.file_format = sheet.format
        layout = reader.layout(sheet, kind)
        upload.template_version = layout.template.version
        # Asked first: a site that links no hospital number yet has no text worth hashing.
        known = (lambda hashes: _linked_hashes(site, hashes)) \
            if PatientLink.objects.filter(site=site).exists() else None
        result = validate(sheet, layout, site_rules(site, accept_test_numbers), get_keyring(),
                          known_hospital_hashes=known)
    except (reader.SpreadsheetRejected, ConfigurationError) as exc:
        return _refuse(upload, str(exc)), None
    _refuse_shared_hospital_numbers(result, layout)
    _refuse_withdrawn(result, layout, site, user)
    upload.total_rows = result.total_rows
    upload.rejected_rows = len(result.rejected_rows)
    upload.accepted_rows = result.accepted_rows
    upload.errors = [p.as_dict() for p in result.problems]
    upload.omitted_problems = result.omitted
    upload.sheet_warnings = result.sheet_warnings
    if not result.records:
        return _refuse(upload, f"no row could be accepted: all {result.total_rows} rows have errors "
                               "(see the list of errors)"), None
    # Sealed under a staging key, not the vault key: a vault re-key before the confirmation
    # leaves them readable, and they are re-encrypted for the vault when confirmed.
    sealed = {p: base64.b64encode(seal_for_staging(p, digits)).decode("ascii")
              for p, digits in result.vault_numbers.items()}
    records = [{"pseudonym": r.pseudonym, "hospital_hash": r.hospital_hash, "data": r.data,
                "cleaned": r.cleaned, "flags": r.flags, "rows": r.rows,
                "hospital_hashes": r.hospital_hashes} for r in result.records]
    # The fields the sheet has columns for: a re-upload changes only these (see _merged).
    fields = [c.field for c in layout.columns if c is not None and c.identifier is None]
    return upload, {"records": records, SEALED: sealed, "fields": fields}


def _linked_hashes(site: Site, hashes: set[str]) -> set[str]:
    """Those of ``hashes`` that a patient of the site is linked by (its known hospital numbers)."""
    wanted, found = list(hashes), set()
    if not PatientLink.objects.filter(site=site).exists():
        return found
    for start in range(0, len(wanted), CHUNK):
        found.update(PatientLink.objects.filter(site=site, hospital_hash__in=wanted[start:start + CHUNK])
                     .values_list("hospital_hash", flat=True))
    return found


SEALED = "vault_sealed"  # staged numbers; "vault" held vault ciphertext in earlier versions
WITHDRAWN_ROW = "this patient has been withdrawn from the database: the row is not stored"


def _refuse_shared_hospital_numbers(result: Result, layout: reader.Layout) -> None:
    """Rows giving one hospital number to two different NHS/CHI numbers become errors: images
    carrying that number could not be linked to the right patient. No row of those patients
    is kept; the messages name the rows, never the number. Every hospital number of a patient
    counts (a negative sheet's patient may have several)."""
    patients: dict[str, dict[str, list[int]]] = {}
    for record in result.records:
        for hospital_hash, rows in record.hospital_hashes.items():
            patients.setdefault(hospital_hash, {}).setdefault(record.pseudonym, []).extend(rows)
    shared = {h: by_patient for h, by_patient in patients.items() if len(by_patient) > 1}
    if not shared:
        return
    header = _identifier_header(layout.template, "hospital_number", "Hospital (Internal) Number")
    refused: set[str] = set()
    named: set[int] = set()
    for by_patient in shared.values():
        rows = sorted(row for patient_rows in by_patient.values() for row in patient_rows)
        for row in rows:
            others = _row_list([r for r in rows if r != row])
            result.problems.append(Problem(
                row, header, "Hospital (Internal) Number", "",
                f"the same hospital number is given to a different NHS/CHI number in {others}: a "
                "hospital number belongs to one patient, so none of these rows was imported "
                "(correct the sheet and upload again)"))
        named.update(rows)
        refused.update(by_patient)
    for record in result.records:
        if record.pseudonym in refused:
            _refuse_rest_of_patient(result, record, named, header)
    for pseudonym in refused:
        result.vault_numbers.pop(pseudonym, None)
    result.records = [r for r in result.records if r.pseudonym not in refused]
    result.problems.sort(key=lambda p: (p.row, p.severity != "error"))


def _staged_hashes(record: dict) -> dict[str, list[int]]:
    """Every hospital-number hash of a staged record and its rows (uploads staged before
    several were kept have only the first)."""
    if record.get("hospital_hashes"):
        return record["hospital_hashes"]
    first = record.get("hospital_hash")
    return {first: list(record.get("rows", []))} if first else {}


def _refuse_rest_of_patient(result: Result, record: PatientRecord, named: set[int], header: str) -> None:
    """The other rows of a refused patient (a swab with another hospital number) go too."""
    for row in record.rows:
        if row not in named:
            result.problems.append(Problem(
                row, header, "Hospital (Internal) Number", "",
                f"not imported: another row of this patient (row {min(named & set(record.rows))}) "
                "gives a hospital number that a different NHS/CHI number has"))
    result.rejected_rows.update(record.rows)


def _row_list(rows: list[int]) -> str:
    shown = [str(r) for r in rows]
    if len(shown) == 1:
        return f"row {shown[0]}"
    return "rows " + ", ".join(shown[:-1]) + " and " + shown[-1]


def _identifier_header(template: Template, identifier: str, default: str) -> str:
    """The template's header of an identifier column."""
    return next((c.header for c in template.columns if c.identifier == identifier), default)


def _withdrawn_row(template: Template, row: int) -> Problem:
    header = _identifier_header(template, "patient_number", "NHS number")
    return Problem(row, header, header, "", WITHDRAWN_ROW)


def _refuse_withdrawn(result: Result, layout: reader.Layout, site: Site, user) -> None:
    """Rows of withdrawn patients become errors: nothing of them is kept, not even the number.
    The hospital numbers they give name the site's images still waiting for a link: removed."""
    withdrawn = withdrawn_among(r.pseudonym for r in result.records)
    if not withdrawn:
        return
    refused = [r for r in result.records if r.pseudonym in withdrawn]
    for record in refused:
        result.problems.extend(_withdrawn_row(layout.template, row) for row in record.rows)
        result.rejected_rows.update(record.rows)
        result.vault_numbers.pop(record.pseudonym, None)
    result.records = [r for r in result.records if r.pseudonym not in withdrawn]
    result.problems.sort(key=lambda p: (p.row, p.severity != "error"))
    _remove_waiting_images(site, {h: r.pseudonym for r in refused for h in r.hospital_hashes}, user)


def _remove_waiting_images(site: Site, numbers: dict[str, str], user) -> None:
    """Once committed (a file deleted cannot be rolled back): see the withdrawal's
    ``remove_waiting_by_hospital_number``."""
    if numbers:
        transaction.on_commit(lambda: remove_waiting_by_hospital_number(site, numbers, _username(user)))


def _count_withdrawn(upload: Upload, rows: Iterable[int]) -> None:
    """Rows of patients withdrawn after the check count as refused, with the withdrawal's
    error, once each (a confirmation may hold the staged rows as they were checked)."""
    counted = {e.get("row") for e in upload.errors or [] if e.get("reason") == WITHDRAWN_ROW}
    new = sorted(set(rows) - counted)
    if not new:
        return
    template = get_template(upload.kind)
    upload.accepted_rows -= len(new)
    upload.rejected_rows += len(new)
    upload.errors = sorted([*(upload.errors or []), *(_withdrawn_row(template, r).as_dict() for r in new)],
                           key=lambda e: (e.get("row") or 0, e.get("severity", "error") != "error"))


_ENCODER = json.JSONEncoder(sort_keys=True, separators=(",", ":"), default=str, check_circular=False)
_ORJSON_OPTIONS = orjson.OPT_SORT_KEYS


def _dumps(value: object) -> str:
    """Compact JSON with sorted keys. orjson is several times faster than the standard library;
    the latter takes what orjson refuses (e.g. integers beyond 64 bits)."""
    try:
        return orjson.dumps(value, default=str, option=_ORJSON_OPTIONS).decode()
    except orjson.JSONEncodeError:
        return _ENCODER.encode(value)


def _digest(hospital_hash: str | None, texts: tuple[str, ...]) -> str:
    return hashlib.sha256("\x1f".join((hospital_hash or "", *texts)).encode()).hexdigest()


def _encode(record: dict) -> dict:
    """The record with its JSON texts (encoded once: for the digest and for the insert)."""
    texts = (_dumps(record["data"]), _dumps(record["cleaned"]), _dumps(record["flags"]))
    return {**record, "json": texts, "digest": _digest(record.get("hospital_hash"), texts)}


def _unchanged(old: ClinicalRecord, merged: dict) -> bool:
    """Same content as stored. Digests written by the standard-library encoder (non-ASCII text
    was escaped) can differ for equal content: then the stored record's digest is recomputed."""
    if old.digest == merged["digest"]:
        return True
    texts = (_dumps(old.data), _dumps(old.cleaned), _dumps(old.flags))
    return _digest(old.hospital_hash, texts) == merged["digest"]


def _existing(site: Site, kind: str, pseudonyms: list[str]) -> dict[str, ClinicalRecord]:
    found: dict[str, ClinicalRecord] = {}
    if not ClinicalRecord.objects.filter(site=site, kind=kind).exists():
        return found  # a site's first upload of this kind: no need to look patients up
    for start in range(0, len(pseudonyms), CHUNK):
        chunk = pseudonyms[start:start + CHUNK]
        for record in ClinicalRecord.objects.filter(site=site, kind=kind, pseudonym__in=chunk):
            found[record.pseudonym] = record
    return found


def _merged(kind: str, old: ClinicalRecord | None, staged: dict, fields: set[str]) -> dict:
    """The record as it will be after this upload: negative sheets add swabs to earlier ones;
    the other kinds update, field by field, the fields the sheet has columns for (``fields``).
    A column the sheet lacks keeps the stored value; a blank cell in a column it has clears
    it (how a site corrects a wrong value to unknown)."""
    if old is None:
        return _encode(staged)
    if kind == "negative":
        data = dict(staged["data"])
        data["swabs"] = merge_swab_lists(old.data.get("swabs", []), staged["data"].get("swabs", []))
        data.setdefault("hospital", old.data.get("hospital"))
        return _encode({**staged, "data": data, "cleaned": clean_negative(data),
                        "flags": sorted(set(old.flags or []) | set(staged["flags"])),
                        "hospital_hash": staged.get("hospital_hash") or old.hospital_hash or None})
    kept = {f: v for f, v in (old.data or {}).items() if f not in fields}
    data = {**kept, **staged["data"]}
    # Each cleaned value comes from the same upload as its typed value: the conversion (units,
    # the site's date format) was done by validation when that upload was read.
    cleaned = {f: (staged["cleaned"].get(f) if f in fields else (old.cleaned or {}).get(f))
               for f in {**(old.cleaned or {}), **staged["cleaned"]}}
    flags = [f for f in old.flags or [] if f not in fields] + list(staged["flags"])
    if kind == "isaric":
        flags = _rescored(cleaned, flags)
    cleared = sum(1 for f in fields if f in (old.data or {}) and f not in staged["data"])
    return {**_encode({**staged, "data": data, "cleaned": cleaned, "flags": sorted(set(flags)),
                       "hospital_hash": staged.get("hospital_hash") or old.hospital_hash or None}),
            "cleared": cleared}


def _rescored(cleaned: dict, flags: list[str]) -> list[str]:
    """Recompute the ISARIC 4C score from the merged fields, and whether a supplied score
    differs from it (flagged, as validation flags it for a single upload)."""
    score = cleaned["isaric_4c_score"] = isaric_4c_score(cleaned)
    supplied = cleaned.get("isaric_4c_score_supplied")
    if supplied is None:  # absent, or flagged as implausible: that flag stands
        return flags
    flags = [f for f in flags if f != "isaric_4c_score_supplied"]
    if score is not None and supplied != score:
        flags.append("isaric_4c_score_supplied")
    return flags


def _staged_fields(kind: str, staged: dict) -> set[str]:
    """The fields the staged sheet has columns for; every template field for uploads staged
    before this was recorded (they replaced records whole)."""
    if "fields" in staged:
        return set(staged["fields"])
    return {c.field for c in get_template(kind).columns if c.identifier is None}


def _plan(site: Site, kind: str, staged: dict) -> dict:
    records = staged.get("records", [])
    fields = _staged_fields(kind, staged)
    existing = _existing(site, kind, [r["pseudonym"] for r in records])
    plan: dict[str, list] = {"new": [], "updated": [], "unchanged": []}
    cleared = cleared_records = 0
    for item in records:
        old = existing.get(item["pseudonym"])
        merged = _merged(kind, old, item, fields)
        if old is None:
            plan["new"].append(merged)
        elif _unchanged(old, merged):
            plan["unchanged"].append(merged)
        else:
            plan["updated"].append((old, merged))
            cleared += merged.get("cleared", 0)
            cleared_records += 1 if merged.get("cleared") else 0
    plan["cleared"] = [cleared, cleared_records]
    return plan


CLEARED = "blank cells cleared "


def _with_cleared_warning(warnings: list[str] | None, plan: dict) -> list[str]:
    """The sheet's warnings with one saying how many stored values blank cells clear (replacing
    the preview's, whose count may be out of date at confirmation)."""
    kept = [w for w in warnings or [] if not w.startswith(CLEARED)]
    fields, records = plan["cleared"]
    if fields:
        kept.append(f"{CLEARED}{fields} stored value{'s' if fields != 1 else ''} of {records} "
                    f"patient{'s' if records != 1 else ''}: a blank cell in a column the sheet has "
                    "clears what an earlier upload stored (leave a column out of the sheet to keep "
                    "its stored values)")
    return kept


def confirm_upload(upload: Upload, user) -> Upload:
    """Write a previewed upload. Confirming twice (or concurrently) imports once."""
    return _confirm(upload, user, upload.staged)


def _confirm(upload: Upload, user, staged: dict | None) -> Upload:
    with transaction.atomic():
        claimed = Upload.objects.filter(pk=upload.pk, status=Upload.Status.PREVIEW).update(
            status=Upload.Status.ACCEPTED, confirmed_at=timezone.now())
        if not claimed:
            current = Upload.objects.get(pk=upload.pk)
            if current.status == Upload.Status.ACCEPTED:
                return current  # already imported: nothing more to do
            if expiry_note(current):
                raise UploadStateError(f"upload {upload.pk} {current.message}")
            raise UploadStateError(f"upload {upload.pk} is {current.status}: only a checked upload "
                                   "waiting for confirmation can be confirmed")
        current = (Upload.objects.select_for_update().select_related("site").defer("staged")
                   .get(pk=upload.pk))
        # Staged data changes in preview only when a withdrawal removes a patient's rows,
        # which the confirmation leaves out anyway; the claim above made this call the only
        # writer: the caller's copy can be used instead of re-reading it.
        if staged is None:
            staged = Upload.objects.values_list("staged", flat=True).get(pk=upload.pk)
        accepted = _write(current, staged or {}, user)
        audit(_username(user), "clinical.upload.confirm", upload=current.pk, site=current.site.code,
              kind=current.kind, new=current.new_records, updated=current.updated_records,
              unchanged=current.unchanged_records)
        site, upload_id = current.site, current.pk
        transaction.on_commit(lambda: records_accepted.send(
            sender=Upload, site=site, records=accepted, upload_id=upload_id))
    log.info("clinical upload %s accepted: %s new, %s updated, %s unchanged", current.pk,
             current.new_records, current.updated_records, current.unchanged_records)
    return current


def _write(upload: Upload, staged: dict, user) -> list[AcceptedRecord]:
    # A patient withdrawn between the check and the confirmation is left out here too.
    withdrawn = withdrawn_among(r["pseudonym"] for r in staged.get("records", []))
    if withdrawn:
        refused = [r for r in staged["records"] if r["pseudonym"] in withdrawn]
        _count_withdrawn(upload, (row for r in refused for row in r.get("rows", [])))
        _remove_waiting_images(upload.site, {h: r["pseudonym"] for r in refused
                                             for h in _staged_hashes(r)}, user)
        staged = {**staged, "records": [r for r in staged["records"] if r["pseudonym"] not in withdrawn]}
    numbers = {name: {p: base64.b64decode(c) for p, c in staged.get(name, {}).items()
                      if p not in withdrawn} for name in (SEALED, "vault")}
    # The vault is a separate database: entries stored before a later failure here are
    # harmless (ciphertext of a pseudonym that then has no record) and stored idempotently.
    try:
        store_staged_in_vault(numbers[SEALED], legacy=numbers["vault"])
    except StagedNumbersUnreadable as exc:  # the claim is rolled back: still waiting
        raise UploadStateError(f"upload {upload.pk}: {exc}") from None
    site, kind = upload.site, upload.kind
    plan = _plan(site, kind, staged)
    now = connection.ops.adapt_datetimefield_value(timezone.now())
    _insert(ClinicalRecord, ["site_id", "pseudonym", "kind", "hospital_hash", "data", "cleaned", "flags",
                             "digest", "last_upload_id", "created", "updated"],
            [(site.pk, r["pseudonym"], kind, r.get("hospital_hash") or "", *r["json"], r["digest"],
              upload.pk, now, now) for r in plan["new"]])
    changed, superseded = [], []
    for old, merged in plan["updated"]:
        superseded.append(ClinicalRecordVersion(
            record=old, upload_id=old.last_upload_id, data=old.data, cleaned=old.cleaned,
            flags=old.flags, superseded_by=upload))
        old.data, old.cleaned, old.flags = merged["data"], merged["cleaned"], merged["flags"]
        old.digest, old.last_upload = merged["digest"], upload
        old.hospital_hash = merged.get("hospital_hash") or old.hospital_hash
        old.updated = timezone.now()
        old.json_owed = True  # (new rows: owed by the column's default)
        changed.append(old)
    ClinicalRecord.objects.bulk_update(
        changed, ["data", "cleaned", "flags", "digest", "last_upload", "hospital_hash", "updated",
                  "json_owed"], batch_size=500)
    ClinicalRecordVersion.objects.bulk_create(superseded, batch_size=1000)
    link_warnings = _link(site, staged.get("records", []))
    upload.new_records, upload.updated_records = len(plan["new"]), len(changed)
    upload.unchanged_records = len(plan["unchanged"])
    upload.sheet_warnings = _with_cleared_warning(upload.sheet_warnings, plan) + link_warnings
    upload.staged = None
    upload.save(update_fields=["new_records", "updated_records", "unchanged_records",
                               "sheet_warnings", "staged", "accepted_rows", "rejected_rows", "errors"])
    every = plan["new"] + [m for _, m in plan["updated"]] + plan["unchanged"]
    return [AcceptedRecord(pseudonym=r["pseudonym"], hospital_hash=r.get("hospital_hash"), kind=kind,
                           cleaned=r["cleaned"], digest=r["digest"]) for r in every]


def _link(site: Site, records: Iterable[dict]) -> list[str]:
    """Remember hospital-number hash -> pseudonym; a hash already linked elsewhere is kept."""
    wanted: dict[str, tuple[str, list[int]]] = {}
    for r in records:
        for hospital_hash, rows in _staged_hashes(r).items():
            wanted.setdefault(hospital_hash, (r["pseudonym"], rows))
    hashes = list(wanted)
    known: dict[str, str] = {}
    has_links = PatientLink.objects.filter(site=site).exists()
    for start in range(0, len(hashes) if has_links else 0, CHUNK):
        known.update(PatientLink.objects.filter(site=site, hospital_hash__in=hashes[start:start + CHUNK])
                     .values_list("hospital_hash", "pseudonym"))
    warnings = []
    for hospital_hash, (pseudonym, rows) in wanted.items():
        if hospital_hash in known and known[hospital_hash] != pseudonym:
            where = f"row {rows[0]}" if rows else "a row"
            warnings.append(f"{where}: the hospital number is already linked to a different NHS/CHI "
                            "number at this site; the earlier link was kept, so its images still "
                            "go to the earlier patient. If this row's number is the right one, "
                            "ask a data manager to move the link and the images "
                            "('nccid patient relink'); otherwise correct the sheet")
    now = connection.ops.adapt_datetimefield_value(timezone.now())
    _insert(PatientLink, ["site_id", "hospital_hash", "pseudonym", "created"],
            [(site.pk, h, p, now) for h, (p, _) in wanted.items() if h not in known],
            ignore_conflicts=True)
    return warnings


def _insert(model, columns: list[str], rows: list[tuple], ignore_conflicts: bool = False) -> None:
    """Plain INSERTs for the large first imports: the ORM's per-field preparation of
    tens of thousands of objects costs more than validating them. JSON comes pre-encoded."""
    if not rows:
        return
    quote = connection.ops.quote_name
    table, names = quote(model._meta.db_table), ", ".join(quote(c) for c in columns)
    with connection.cursor() as cursor:
        if connection.vendor == "postgresql":
            _copy(cursor.cursor, table, names, rows, ignore_conflicts)
            return
        # One statement, prepared once and run per row: SQLite is in-process (no round trips
        # to save), and its many-row statements cost more to build, convert and parse than
        # to run (about 0.1 s of 20,000 records).
        tail = " ON CONFLICT DO NOTHING" if ignore_conflicts else ""
        cursor.executemany(f"INSERT INTO {table} ({names}) VALUES ({', '.join(['%s'] * len(columns))})"
                           + tail, rows)


def _copy(cursor, table: str, names: str, rows: list[tuple], ignore_conflicts: bool) -> None:
    """COPY (psycopg 3) the rows in; to skip conflicting rows, COPY into a scratch table first
    (a multi-row INSERT of thousands of parameters costs more to build than to run)."""
    target = table
    if ignore_conflicts:
        target = "nccid_scratch_insert"
        cursor.execute(f"CREATE TEMPORARY TABLE {target} AS SELECT {names} FROM {table} WITH NO DATA")
    with cursor.copy(f"COPY {target} ({names}) FROM STDIN") as copy:
        for row in rows:
            copy.write_row(row)
    if ignore_conflicts:
        cursor.execute(f"INSERT INTO {table} ({names}) SELECT {names} FROM {target} ON CONFLICT DO NOTHING")
        cursor.execute(f"DROP TABLE {target}")


def cancel_upload(upload: Upload, user) -> Upload:
    with transaction.atomic():
        done = _drop_check(upload.pk)
        current = Upload.objects.get(pk=upload.pk)
        if not done and current.status != Upload.Status.CANCELLED:
            raise UploadStateError(f"upload {upload.pk} is {current.status}: it cannot be cancelled")
        if done:
            audit(_username(user), "clinical.upload.cancel", upload=upload.pk, site=current.site.code)
    return current


def _drop_check(pk: int, **also) -> bool:
    """Cancel the upload if it still waits for confirmation: its staged rows and sealed
    numbers go. One conditional UPDATE, taking the row lock the confirmation's claim takes:
    whichever comes first wins, the other finds the upload no longer waiting."""
    return bool(Upload.objects.filter(pk=pk, status=Upload.Status.PREVIEW).update(
        status=Upload.Status.CANCELLED, staged=None, **also))


EXPIRED = "expired unconfirmed after "


def _expired_message(days: int) -> str:
    return (f"{EXPIRED}{days} day{'s' if days != 1 else ''} (a check not confirmed within "
            "that time is cancelled and the rows it held deleted): nothing from this file was "
            "saved; upload the file again to import it")


def expiry_note(upload: Upload) -> str:
    """``expired unconfirmed after N days`` for a check the upkeep cancelled, else empty."""
    if upload.status != Upload.Status.CANCELLED or not upload.message.startswith(EXPIRED):
        return ""
    return upload.message.partition(" (")[0]


def expire_checks() -> list[int]:
    """Cancel, as a user's cancel does, every check waiting for confirmation for longer than
    ``check_retention_days``: an abandoned one would keep its patients' rows and sealed NHS/CHI
    numbers in the main database for good. Each keeps its counts and says why; audited
    ``clinical.upload.expired``. Runs before every catalogue refresh. The expired uploads."""
    days = get_settings().check_retention_days
    old = Upload.objects.filter(status=Upload.Status.PREVIEW,
                                created__lt=timezone.now() - timedelta(days=days))
    expired = []
    for pk, code, kind in list(old.values_list("pk", "site__code", "kind")):
        with transaction.atomic():
            if not _drop_check(pk, message=_expired_message(days)):
                continue  # confirmed or cancelled meanwhile
            audit("system", "clinical.upload.expired", upload=pk, site=code, kind=kind, days=days)
        log.info("clinical upload %s (%s, %s) expired unconfirmed after %s days", pk, code, kind, days)
        expired.append(pk)
    return expired


def forget_in_previews(pseudonym: str) -> list[tuple[Site, list[str]]]:
    """Remove a withdrawn patient's staged rows and sealed number from every upload still
    waiting for confirmation (an abandoned check would otherwise keep them in the main
    database for good); its rows then count as refused with the withdrawal's error, and its
    counts of new, updated and unchanged records are recomputed. For each preview that held
    the patient: its site and the hospital numbers (keyed) its rows gave the patient."""
    changed = []
    with transaction.atomic():
        for upload in (Upload.objects.select_for_update(of=("self",)).select_related("site")
                       .filter(status=Upload.Status.PREVIEW)):
            if pseudonym in staged_pseudonyms(upload.staged):
                changed.append((upload.site, sorted(_forget_patients(upload, {pseudonym}))))
    return changed


def staged_pseudonyms(staged: dict | None) -> set[str]:
    """The patients a check waiting for confirmation holds: by rows or by sealed number."""
    staged = staged or {}
    held = {r.get("pseudonym") for r in staged.get("records", [])}
    for name in (SEALED, "vault"):
        held.update(staged.get(name) or {})
    return held - {None}


def staged_among(pseudonyms: set[str]) -> set[str]:
    """Those of ``pseudonyms`` that a check waiting for confirmation holds (the withdrawal
    sweep's look: each check read once, one at a time, as they can be large)."""
    if not pseudonyms:
        return set()
    found: set[str] = set()
    for pk in list(Upload.objects.filter(status=Upload.Status.PREVIEW).values_list("pk", flat=True)):
        staged = Upload.objects.filter(pk=pk).values_list("staged", flat=True).first()
        found |= pseudonyms & staged_pseudonyms(staged)
    return found


def _forget_patients(upload: Upload, pseudonyms: set[str]) -> dict[str, str]:
    """Save the (locked) preview without these patients' rows and sealed numbers; the hospital
    numbers (keyed) its rows gave them: ``{hash: pseudonym}``."""
    staged = upload.staged or {}
    records = staged.get("records", [])
    gone = [r for r in records if r.get("pseudonym") in pseudonyms]
    staged = {**staged, "records": [r for r in records if r.get("pseudonym") not in pseudonyms]}
    for name in (SEALED, "vault"):
        if staged.get(name):
            staged[name] = {p: c for p, c in staged[name].items() if p not in pseudonyms}
    _forget_rows(upload, staged, [row for r in gone for row in r.get("rows", [])])
    return {h: r["pseudonym"] for r in gone for h in _staged_hashes(r)}


def _forget_rows(upload: Upload, staged: dict, rows: list[int]) -> None:
    """Save a preview without a withdrawn patient's ``rows``: counted refused, plan again."""
    _count_withdrawn(upload, rows)
    plan = _plan(upload.site, upload.kind, staged)
    upload.new_records, upload.updated_records, upload.unchanged_records = (
        len(plan["new"]), len(plan["updated"]), len(plan["unchanged"]))
    upload.sheet_warnings = _with_cleared_warning(upload.sheet_warnings, plan)
    upload.staged = staged
    upload.save(update_fields=["staged", "accepted_rows", "rejected_rows", "errors", "new_records",
                               "updated_records", "unchanged_records", "sheet_warnings"])


def import_file(site: Site, kind: str, path: Path, user, *,
                accept_test_numbers: bool | None = None) -> Upload:
    """Preview and confirm a file from disk (the CLI). A file over the limit is refused unread.
    ``accept_test_numbers``: None follows the setting; the demo's synthetic load passes True."""
    path = Path(path)
    size = path.stat().st_size
    if size > max_bytes():
        upload = Upload(site=site, kind=kind, size=size, sha256="", uploaded_by=_user_or_none(user),
                        uploaded_by_name=_username(user))
        try:
            reader.check_size(size, max_bytes())
        except reader.SpreadsheetRejected as exc:
            return _refuse(upload, str(exc))
    upload, staged = _checked(site, kind, path.read_bytes(), user, accept_test_numbers)
    if upload.status == Upload.Status.REJECTED:
        return upload
    # Preview and confirm in one transaction; the staged records stay in memory.
    with transaction.atomic():
        upload.save()
        _previewed(upload, user)
        return _confirm(upload, user, staged)


def pseudonym_for_hospital_number(site: Site, hospital_hash: str) -> str | None:
    return (PatientLink.objects.filter(site=site, hospital_hash=hospital_hash)
            .values_list("pseudonym", flat=True).first())


def uploads_for_site(site: Site) -> QuerySet[Upload]:
    """A site's uploads, newest first (the portal's "My uploads"); staged data deferred."""
    return Upload.objects.filter(site=site).defer("staged").order_by("-created", "-id")


def errors_as_csv(upload: Upload) -> str:
    """The upload's errors and warnings as CSV, for the site to fix its sheet: those kept, then
    a line per column saying how many more were only counted (``Upload.omitted_problems``)."""
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\r\n")
    writer.writerow(["row", "column", "value", "severity", "reason"])
    if upload.message:
        writer.writerow(["", "", "", "error", upload.message])
    for problem in upload.errors or []:
        writer.writerow([_safe(problem.get("row", "")), _safe(problem.get("column", "")),
                         _safe(problem.get("value", "")), problem.get("severity", "error"),
                         _safe(problem.get("reason", ""))])
    for omitted in upload.omitted_problems or []:
        writer.writerow(["", _safe(omitted.get("column", "")), "", omitted.get("severity", "error"),
                         _safe(not_listed(omitted))])
    for warning in upload.sheet_warnings or []:
        writer.writerow(["", "", "", "warning", warning])
    return buffer.getvalue()


def not_listed(omitted: dict) -> str:
    """How many more problems of a column were only counted (validation.ProblemList)."""
    count, severity = omitted.get("count", 0), omitted.get("severity", "error")
    return (f"and {count:,} more {severity}{'' if count == 1 else 's'} in this column, not "
            "listed: correct those listed and upload the file again to see them")


def _safe(value: object) -> str:
    """Text a spreadsheet will not run as a formula when the site opens the errors file."""
    text = "" if value is None else str(value)
    return "'" + text if text[:1] in ("=", "+", "-", "@", "\t", "\r") else text
