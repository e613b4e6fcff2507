"""``nccid research cohort|export|modelling|teaching``, ``nccid validate`` and
``nccid validation-images``."""


import json  # no "from __future__ import annotations": Typer reads the real annotation objects
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.table import Table

from nccid.cli.common import UserError, console, counted, err_console, setup_django

research_app = typer.Typer(help="Research access: cohorts, exports, modelling data, teaching.",
                           no_args_is_help=True)
teaching_app = typer.Typer(help="Teaching collections (data managers).", no_args_is_help=True)
research_app.add_typer(teaching_app, name="teaching")

UserOpt = Annotated[str, typer.Option("--user", help="Act as this account (its role and sets apply).")]


def _source():
    from .source import default_source

    return default_source()


def _user(name: str):
    setup_django(needs_key=False)  # research reads: never the key (docs/keys.md)
    from nccid.accounts.models import User

    user = User.objects.filter(username=name, is_active=True).first()
    if user is None:
        raise UserError(f"no active user {name!r}")
    return user


def _errors():
    """Research errors the user can fix, to be shown as one line.

    Only after Django is set up (``_user`` or ``setup_django``): importing ``.teaching`` loads
    models, and an ``except _errors()`` is evaluated when the error is raised."""
    from .cohort import CohortError, ScopeError
    from .export import ExportError
    from .teaching import TeachingError

    return (CohortError, ScopeError, ExportError, TeachingError, PermissionError)


def _not_written(output: Path, exc: OSError) -> str:
    """An OS failure as one line: the reason only, not the failing path (it may be the store's)."""
    return (f"{output}: the export was not written ({exc.strerror or exc.__class__.__name__}); "
            "nothing partial was left")


def _build_filter(covid, modality, site, date_from, date_to, age_min, age_max, sex, ethnicity,
                  clinical, within_days, of_field, filter_json):
    from .cohort import CohortFilter

    data: dict[str, Any] = {}
    if filter_json:
        try:
            data = json.loads(Path(filter_json).read_text())
        except (OSError, json.JSONDecodeError) as exc:
            raise UserError(f"{filter_json}: cannot read the filter JSON ({exc})") from exc
    given = {"covid_status": covid, "modality": modality, "site": site, "study_date_from": date_from,
             "study_date_to": date_to, "age_min": age_min, "age_max": age_max, "sex": sex,
             "ethnicity": ethnicity, "clinical": clinical}
    data.update({k: v for k, v in given.items() if v not in (None, [])})
    if within_days is not None:
        data["within"] = {"field": of_field, "days": within_days}  # None: the default date
    elif of_field is not None:  # a date with no window would be dropped unnoticed
        raise UserError(f"--of {of_field} needs --within-days N (images within N days of it)")
    return CohortFilter.from_dict(data)


def _filter_options(fn):
    """The same filter options on every cohort command."""
    import functools
    import inspect

    options = {
        "covid": Annotated[list[str] | None, typer.Option("--covid", help="positive, negative or unknown.")],
        "modality": Annotated[list[str] | None, typer.Option("--modality", help="CT, DX, CR, MR, or xray/mri.")],
        "site": Annotated[list[str] | None, typer.Option("--site", help="Site code.")],
        "date_from": Annotated[str | None, typer.Option("--from", help="Study date on or after (YYYY-MM-DD).")],
        "date_to": Annotated[str | None, typer.Option("--to", help="Study date on or before (YYYY-MM-DD).")],
        "age_min": Annotated[int | None, typer.Option("--age-min", help="Age in years at least this.")],
        "age_max": Annotated[int | None, typer.Option("--age-max", help="Age in years at most this.")],
        "sex": Annotated[list[str] | None, typer.Option("--sex", help="Male, Female or Unknown.")],
        "ethnicity": Annotated[list[str] | None, typer.Option(
            "--ethnicity", help="White, Mixed/Multiple, Asian, Black, Other or Unknown (any case).")],
        "clinical": Annotated[list[str] | None, typer.Option(
            "--clinical", help="A cleaned field test, e.g. itu_admission=Yes or age>=60.")],
        "within_days": Annotated[int | None, typer.Option(
            "--within-days", help="Images within N days of the --of clinical date.")],
        "of_field": Annotated[str | None, typer.Option(
            "--of", help="The clinical date for --within-days (default date_of_positive_covid_swab).")],
        "filter_json": Annotated[Path | None, typer.Option("--filter-json", help="A filter as JSON.")],
    }
    sig = inspect.signature(fn)
    params = [p for p in sig.parameters.values() if p.name != "flt"]
    params += [inspect.Parameter(n, inspect.Parameter.KEYWORD_ONLY, annotation=a,
                                 default=None) for n, a in options.items()]

    @functools.wraps(fn)
    def wrapper(**kwargs):
        picked = {n: kwargs.pop(n) for n in options}
        setup_django(needs_key=False)  # before the filter: a bad one is reported through _errors()
        try:
            flt = _build_filter(**picked)
            return fn(flt=flt, **kwargs)
        except _errors() as exc:
            raise UserError(str(exc)) from exc

    wrapper.__signature__ = sig.replace(parameters=params)
    return wrapper


def _counts_line(counts) -> str:
    return f"{counts.patients} patients, {counts.studies} studies, {counts.images} images"


@research_app.command("cohort")
@_filter_options
def cohort_cmd(flt, user: UserOpt,
               list_: Annotated[bool, typer.Option("--list", help="Also list the images.")] = False,
               limit: Annotated[int, typer.Option(
                   "--limit", min=1, max=10_000, help="At most this many rows listed (1-10000).")] = 100,
               as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False) -> None:
    """Count (and list) the patients, studies and images matching a filter (training set)."""
    from .cohort import select_cohort

    # a list of rows hands data out (a withdrawal names it), a count does not
    cohort = select_cohort(_user(user), flt, _source(), "research.list" if list_ else "research.cohort")
    counts = cohort.counts()
    rows = cohort.images(limit=limit) if list_ else None
    if as_json:
        from django.core.serializers.json import DjangoJSONEncoder

        from .api import image_rows

        out = {"counts": counts.as_dict(), "filter": flt.to_dict()}
        if rows is not None:  # as the API writes them: dates as dates, arrival times in UTC
            out["images"] = image_rows(rows)
        console.print_json(json.dumps(out, cls=DjangoJSONEncoder))
        return
    console.print(_counts_line(counts), highlight=False)
    if rows is not None:
        table = Table("Pseudonym", "Site", "Modality", "Study date", "Study UID", "SOP UID")
        for r in rows.itertuples():
            table.add_row(r.pseudonym, r.site, r.modality, str(r.study_date)[:10], r.study_uid, r.sop_uid)
        console.print(table)
        if counts.images > limit:
            console.print(f"(first {limit} of {counts.images} images; use --limit or export)")


@research_app.command("export")
@_filter_options
def export_cmd(flt, user: UserOpt,
               output: Annotated[Path, typer.Option("-o", "--output", help="A new folder, or a .zip file.")],
               formats: Annotated[str, typer.Option("--format", help="Any of parquet,csv,dicom.")] = "parquet,csv,dicom",
               ) -> None:
    """Export a cohort (tables, DICOM in the bucket layout, manifest with checksums)."""
    from nccid.cli.progress import progress_bar

    from .export import export_cohort

    try:
        with progress_bar("Copying images") as bar:
            result = export_cohort(_user(user), flt, output, formats, _source(), bar.reached)
    except OSError as exc:
        raise UserError(_not_written(output, exc)) from exc
    console.print(f"Exported {_counts_line(result.counts)}: {result.files} files, "
                  f"{result.bytes / 1e6:.1f} MB to {result.destination}", highlight=False)


@research_app.command("modelling")
def modelling_cmd(user: UserOpt,
                  output: Annotated[Path, typer.Option("-o", "--output", help="Folder for the CSV and PNG.")]
                  ) -> None:
    """Weekly counts by site and intervals between events, from cleaned clinical records."""
    account = _user(user)
    from .services import modelling_outputs

    try:
        result = modelling_outputs(account, output, _source())
    except _errors() as exc:
        raise UserError(str(exc)) from exc
    console.print(f"{result['records']} clinical records -> "
                  + ", ".join(str(p) for p in result["files"]), highlight=False)


@research_app.command("withdrawn")
def withdrawn_cmd(user: UserOpt,
                  since: Annotated[str | None, typer.Option(
                      "--since", help="Only those on or after this date (YYYY-MM-DD).")] = None,
                  as_json: Annotated[bool, typer.Option("--json", help="JSON instead of lines.")] = False,
                  ) -> None:
    """Patients withdrawn and studies removed from your sets: delete them from earlier copies."""
    import json

    account = _user(user)
    from nccid.withdrawal.services import WithdrawalError, parse_since, withdrawn_for

    try:
        answer = withdrawn_for(account, parse_since(since))
    except (WithdrawalError, *_errors()) as exc:
        raise UserError(str(exc)) from exc
    if as_json:
        console.print_json(json.dumps(answer))
        return
    for row in answer["patients"]:
        reinstated = f" (reinstated {row['reinstated_at']})" if row.get("reinstated_at") else ""
        console.print(f"patient {row['pseudonym']} withdrawn {row['withdrawn_at']}{reinstated}",
                      highlight=False)
    for row in answer["studies"]:
        console.print(f"study {row['study_uid']} removed {row['withdrawn_at']}", highlight=False)
    err_console.print(f"{counted(len(answer['patients']), 'patient')} withdrawn, "
                      f"{counted(len(answer['studies']), 'study', 'studies')} removed: delete them "
                      "from copies you made earlier.", highlight=False)


@teaching_app.command("add")
def teaching_add(collection: str, user: UserOpt,
                 pseudonym: Annotated[str, typer.Option("--pseudonym", help="The patient's pseudonym (NCCID-...).")],
                 study: Annotated[str, typer.Option("--study", help="Study Instance UID (de-identified).")],
                 note: Annotated[str, typer.Option("--note", help="What the case teaches.")] = "",
                 description: Annotated[str, typer.Option(
                     "--description", help="The collection's description, when this makes it.")] = "") -> None:
    """Mark a study as a case of a teaching collection (made on first use)."""
    account = _user(user)  # sets Django up, which .teaching's models need
    from .teaching import add_case

    try:
        case = add_case(account, collection, pseudonym, study, note, description, _source())
    except _errors() as exc:
        raise UserError(str(exc)) from exc
    console.print(f"Added case {case.pk} to {case.collection.name}", highlight=False)


@teaching_app.command("list")
def teaching_list(user: UserOpt, collection: Annotated[str | None, typer.Argument()] = None) -> None:
    """List collections, or the cases of one collection."""
    account = _user(user)  # sets Django up, which .teaching's models need
    from .services import require_data_manager
    from .teaching import get_collection, list_collections

    try:
        require_data_manager(account)
        if collection is None:
            table = Table("Collection", "Cases", "Created by", "Description")
            for c in list_collections():
                table.add_row(c.name, str(c.cases.count()), c.created_by.username, c.description)
        else:
            table = Table("#", "Pseudonym", "Study UID", "Note")
            for n, case in enumerate(get_collection(collection).cases.all(), start=1):
                table.add_row(str(n), case.pseudonym, case.study_uid, case.note)
    except _errors() as exc:
        raise UserError(str(exc)) from exc
    console.print(table)


@teaching_app.command("export")
def teaching_export(collection: str, user: UserOpt,
                    output: Annotated[Path, typer.Option("-o", "--output", help="A new folder.")]) -> None:
    """Export a collection as de-identified DICOM with an offline index.html."""
    account = _user(user)  # sets Django up, which .teaching's models need
    from .teaching import export_collection

    try:
        out = export_collection(account, collection, output, _source())
    except _errors() as exc:
        raise UserError(str(exc)) from exc
    except OSError as exc:
        raise UserError(_not_written(output, exc)) from exc
    console.print(f"Wrote {out / 'index.html'}", highlight=False)


def validate_cmd(predictions: Annotated[Path, typer.Argument(help="CSV: pseudonym or sop_instance_uid, score.")],
                 user: UserOpt,
                 output: Annotated[Path, typer.Option("-o", "--output", help="The HTML report to write.")],
                 operating_point: Annotated[str, typer.Option(
                     "--operating-point", help="A score threshold, or 'youden'.")] = "0.5") -> None:
    """Score an AI product's predictions on the held-out validation set (HTML report)."""
    from .services import validate_predictions
    from .validation_report import PredictionError

    try:
        text = predictions.read_text(encoding="utf-8-sig")
    except (OSError, UnicodeDecodeError) as exc:
        raise UserError(f"{predictions}: cannot read ({exc.__class__.__name__})") from exc
    account = _user(user)
    try:
        outcome = validate_predictions(account, text, operating_point, _source(),
                                       title=f"AI validation report: {predictions.name}")
    except PredictionError as exc:
        raise UserError(str(exc)) from exc
    except (ValueError, *_errors()) as exc:
        raise UserError(str(exc)) from exc
    output.write_text(outcome.html, encoding="utf-8")
    auc = outcome.report.overall["auc"]
    console.print(f"AUC {auc[0]:.3f} (95% CI {auc[1]:.3f}-{auc[2]:.3f}) on "
                  f"{outcome.report.overall['n']} predictions; report: {output}"
                  if auc[1] is not None else f"Report: {output}", highlight=False)


def validation_images_cmd(user: UserOpt,
                          output: Annotated[Path, typer.Option(
                              "-o", "--output", help="A new folder, or a .zip file.")],
                          modality: Annotated[list[str] | None, typer.Option(
                              "--modality", help="CT, DX, CR, MR, or xray/mri (default: all).")] = None,
                          ) -> None:
    """The validation set's images and the IDs to predict, to run an AI product on (data managers)."""
    from nccid.cli.progress import progress_bar

    account = _user(user)
    from .validation_images import export_validation_images

    try:
        with progress_bar("Copying images") as bar:
            result = export_validation_images(account, output, modality or (), _source(), bar.reached)
    except _errors() as exc:
        raise UserError(str(exc)) from exc
    except OSError as exc:
        raise UserError(_not_written(output, exc)) from exc
    console.print(f"Exported the validation set's {_counts_line(result.counts)}: {result.files} "
                  f"files, {result.bytes / 1e6:.1f} MB to {result.destination}; run the product "
                  "on them, then 'nccid validate' its predictions (PREDICTIONS.txt)", highlight=False)


def register(app: typer.Typer) -> None:
    """Add this part's commands to the ``nccid`` CLI."""
    app.add_typer(research_app, name="research")
    app.command("validate")(validate_cmd)
    app.command("validation-images")(validation_images_cmd)

