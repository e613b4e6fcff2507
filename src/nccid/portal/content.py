"""What the portal pages show, gathered from the parts that own it (schema, services, settings).

Kept apart from the views so the pages and their tests read the same facts.
"""

from __future__ import annotations

import io
import re
import tomllib
from datetime import timedelta
from functools import cache, lru_cache
from importlib import resources
from urllib.parse import urlsplit

from nccid.config import get_settings

# The three kinds of spreadsheet, in header order; titles and versions come from the schema.
KIND_PAGES = {
    "positive": {"nav": "Upload Covid (Positive) Data", "url_name": "portal:upload_positive"},
    "negative": {"nav": "Upload Covid Status (Negative) Data", "url_name": "portal:upload_negative"},
    "isaric": {"nav": "Upload Covid ISARIC Data", "url_name": "portal:upload_isaric"},
}

TYPE_WORDS = {
    "identifier": "identifier (pseudonymised on upload)",
    "text": "text",
    "integer": "whole number",
    "decimal": "number",
    "date": "date",
    "code": "code",
}


@cache
def _schema(kind: str) -> dict:
    text = resources.files("nccid.clinical").joinpath("schema", f"{kind}.toml").read_text("utf-8")
    return tomllib.loads(text)


@lru_cache(maxsize=1)
def _codes() -> dict:
    text = resources.files("nccid.clinical").joinpath("schema", "codes.toml").read_text("utf-8")
    return tomllib.loads(text)


def _kind_info(kind: str) -> dict:
    template = _schema(kind)["template"]
    return {
        "kind": kind, "title": template["title"], "version": template["version"],
        "one_row_per_patient": template.get("one_row_per_patient", True),
        "filename": f"nccid-{kind}-template-v{template['version']}.xlsx",
        **KIND_PAGES[kind],
    }


@lru_cache(maxsize=1)
def kinds() -> dict[str, dict]:
    """kind -> page facts (title, version, navigation text), in header order."""
    return {kind: _kind_info(kind) for kind in KIND_PAGES}


def _code_text(list_name: str) -> str:
    entry = _codes().get(list_name, {})
    if list_name == "ethnicity":
        return "NHS ethnic category code A-S (sub-codes such as CA allowed) or free text"
    return ", ".join(f"{label} = {code}" for code, label in entry.get("codes", []))


def _range_text(column: dict) -> str:
    low, high = column.get("min"), column.get("max")
    unit = column.get("unit", "")
    if low is None and high is None:
        return unit
    return f"{low if low is not None else ''}–{high if high is not None else ''} {unit}".strip()


def columns(kind: str) -> list[dict]:
    """The template's columns as site staff need them: header, what to write, accepted old headers."""
    rows = []
    for column in _schema(kind).get("column", []):
        what = TYPE_WORDS.get(column.get("type", "text"), column.get("type", ""))
        if column.get("type") == "code":
            what = _code_text(column.get("codes", ""))
        elif column.get("type") == "date":
            what = "date (DD/MM/YYYY, YYYY-MM-DD, 13 Jul 2020 or an Excel date)"
        rows.append({
            "header": column["header"],
            "what": what,
            "range": _range_text(column),
            "other_units": ", ".join(column.get("units", {}) or {}),
            "hint": column.get("hint", ""),
            "required": column.get("required", False),
            "aliases": column.get("aliases", []),
            "in_template": column.get("in_template", True),
        })
    return rows


def template_bytes(kind: str) -> bytes:
    """The current blank template, generated from the schema by the clinical part."""
    from nccid.clinical import xlsx_template

    buffer = io.BytesIO()
    xlsx_template.build_workbook(kind).save(buffer)
    return buffer.getvalue()


# Listening on every interface: no address a site could send to.
WILDCARD_HOSTS = ("", "0.0.0.0", "::", "[::]")


def node_public_host(request_host: str = "") -> str:
    """Where sites send images: node_public_host; else the host of public_url; else node_host
    unless it is a wildcard listen address; else the host name this page was requested by."""
    settings = get_settings()
    if settings.node_public_host:
        return settings.node_public_host
    if settings.public_url:
        return urlsplit(settings.public_url).hostname
    if settings.node_host not in WILDCARD_HOSTS:
        return settings.node_host
    return urlsplit(f"//{request_host}").hostname or ""  # without its port


def node_details(request_host: str = "") -> dict:
    """The node as sites address it; ``request_host`` is the portal request's Host."""
    settings = get_settings()
    return {"ae_title": settings.node_ae_title, "host": node_public_host(request_host),
            "port": settings.node_port}


def contacts() -> list[dict]:
    """Data managers with an e-mail address: the people site staff should write to."""
    from nccid.accounts.models import Role, User

    managers = User.objects.filter(role=Role.DATA_MANAGER, is_active=True).exclude(email="")
    return [{"name": u.get_full_name() or u.username, "email": u.email}
            for u in managers.order_by("last_name", "username")]


def guidance_context(user, request_host: str = "") -> dict:
    settings = get_settings()
    return {
        "kinds": list(kinds().values()),
        "columns": {kind: columns(kind) for kind in KIND_PAGES},
        "node": node_details(request_host),
        "site": getattr(user, "site", None),
        "contacts": contacts(),
        "validation_percent": settings.validation_percent,
        "deid_profile": settings.deid_profile,
        "pending_retention_days": settings.pending_retention_days,
    }


# ---- uploads and studies, as the pages show them -------------------------------------------

_OTHER_KIND = re.compile(r"the (positive|negative|isaric) template, not the")


PREVIEW_PROBLEMS = 200  # problems listed on the check page; the CSV has every one
PROBLEM_GROUPS = 50  # kinds of problem (column and reason) summarised above the list


def upload_summary(upload) -> dict:
    """An upload's status and counts, without its problems (My uploads lists many)."""
    from nccid.clinical.services import expiry_note

    message = upload.message or ""
    other = _OTHER_KIND.search(message)
    return {
        "status": upload.status,
        "status_label": upload.get_status_display(),
        "kind": upload.kind,
        "detected_kind": other.group(1) if other else "",
        "version": upload.template_version,
        "created": upload.created,
        "message": message,
        "expired": expiry_note(upload),  # a check nobody confirmed in time, cancelled
        "n_rows": upload.total_rows,
        "n_accepted": upload.accepted_rows,
        "n_rejected": upload.rejected_rows,
        "n_new": upload.new_records,
        "n_updated": upload.updated_records,
        "n_unchanged": upload.unchanged_records,
    }


def upload_facts(upload) -> dict:
    """An upload's status, counts, errors and warnings under the names the templates use.

    A sheet with a systematic mistake (a date format, an old template) has a problem in every
    row: the page lists the first ``PREVIEW_PROBLEMS`` and summarises all of them by column and
    reason; the CSV has every one kept. A sheet wrong in most cells has more than are kept
    (clinical.validation.ProblemList): those are counted by column in ``omitted``."""
    from nccid.clinical.services import not_listed

    problems = list(upload.errors or [])
    omitted = list(upload.omitted_problems or [])
    error_rows = len({p.get("row") for p in problems if p.get("row") and p.get("severity", "error") == "error"})
    return upload_summary(upload) | {
        "problems": problems[:PREVIEW_PROBLEMS],
        "n_listed": len(problems),
        "n_problems": len(problems) + upload.omitted_count,
        "problem_groups": _problem_groups(problems, omitted),
        "omitted": [o | {"text": f"{o.get('column') or '–'}: {not_listed(o)}"} for o in omitted],
        "n_omitted": upload.omitted_count,
        "n_errors": upload.error_count,
        "n_warnings": upload.warning_count,
        # the rows of errors not listed are not known: the rows refused are
        "error_rows": max(error_rows, upload.rejected_rows) if omitted else error_rows,
        "sheet_warnings": list(upload.sheet_warnings or []),
        # when a check still waiting is cancelled unconfirmed (clinical.services.expire_checks)
        "expires": upload.created + timedelta(days=get_settings().check_retention_days),
    }


def _problem_groups(problems: list[dict], omitted: list[dict]) -> list[dict]:
    """Problems of the same severity, column and reason counted together, each with the first
    rows it occurs in, and a column's problems only counted (``Upload.omitted_problems``: their
    reasons and rows not kept) after them, so each column's counts add up to its problems.
    Errors first; within a severity the column with most problems first, and in a column the
    most frequent reason first."""
    groups: dict[tuple, dict] = {}
    for problem in problems:
        key = (problem.get("severity", "error"), problem.get("column") or "", problem.get("reason", ""))
        group = groups.setdefault(key, {"severity": key[0], "column": key[1], "reason": key[2],
                                        "count": 0, "rows": [], "not_listed": False})
        group["count"] += 1
        if problem.get("row") and len(group["rows"]) < 3:
            group["rows"].append(problem["row"])
    ranked = list(groups.values()) + [_not_listed_group(o) for o in omitted]
    per_column: dict[tuple, int] = {}
    for group in ranked:
        column = (group["severity"], group["column"])
        per_column[column] = per_column.get(column, 0) + group["count"]
    ranked.sort(key=lambda g: (g["severity"] != "error", -per_column[g["severity"], g["column"]],
                               g["column"], g["not_listed"], -g["count"]))
    return ranked[:PROBLEM_GROUPS]


def _not_listed_group(omitted: dict) -> dict:
    """A column's problems counted but not kept, as a row of the table (rows not known)."""
    severity = omitted.get("severity", "error")
    return {"severity": severity, "column": omitted.get("column") or "", "rows": [],
            "count": omitted.get("count", 0), "not_listed": True,
            "reason": f"more {severity}s in this column, not listed (only counted: fix those listed "
                      "and upload again to see them)"}


def studies_for_site(site, status: str = "", *, as_the_site: bool = False):
    """DICOM studies the site sent, newest first, from the imaging part (only those shown as
    ``status`` if it is one of the receipts' statuses); None if imaging is not installed.
    ``as_the_site``: statuses as the site is told them (its own clinical records only)."""
    try:
        from nccid.imaging.services import studies_for_site as imaging_studies
    except ImportError:
        return None
    return imaging_studies(site, status, as_the_site=as_the_site)


def study_statuses(site, *, as_the_site: bool = False) -> list[dict]:
    """Each receipt status with how many of the site's studies are shown with it (none: left
    out)."""
    try:
        from nccid.imaging.services import study_status_counts
    except ImportError:
        return []
    return [{"code": code, "label": label, "count": count}
            for code, label, count in study_status_counts(site, as_the_site=as_the_site)]


def _status_label(code: str) -> str:
    from nccid.imaging.models import ReceiptStatus

    return ReceiptStatus(code).label


def study_row(receipt) -> dict:
    """A receipt as My uploads shows it: the patient by pseudonym, or by hospital-number hash
    until linked."""
    return {
        "date": receipt.last_received,
        "first": receipt.first_received,
        "modality": receipt.modality,
        "instances": receipt.instances,
        "status": _status_label(receipt.shown_status),
        "status_code": receipt.shown_status,
        "who": receipt.patient or "–",
        "refused": receipt.rejected,
        "problem": receipt.problem,
    }
