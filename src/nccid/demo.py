"""Synthetic demo sites, accounts and data for 'make run'.

Everything here is invented: NHS numbers from the 999 test range, made-up names and images that
are drawn phantoms. Loading is idempotent and resumable: two audit events mark its start and its
end, so a load that was interrupted (Ctrl-C during the first 'make run') is completed by the next
run, step by step (a sheet already accepted is not sent again; images sent again are duplicates
intake skips), and a finished one is left as is.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from rich.console import Console
from rich.table import Table

DEMO_PASSWORD = "nccid-demo-only-2020"


@dataclass(frozen=True)
class DemoSite:
    code: str
    name: str
    ae_title: str
    split: str
    seed: int


SITES = [
    DemoSite("RTH", "Royal Test Hospital", "RTH_PACS", "split", 11),
    DemoSite("NTH", "Northern Test Hospital", "NTH_PACS", "split", 12),
    DemoSite("VTH", "Valley Test Hospital", "VTH_PACS", "validation", 13),
]
ACCOUNTS = [
    ("rth.uploader", "uploader", "RTH"),
    ("nth.uploader", "uploader", "NTH"),
    ("vth.uploader", "uploader", "VTH"),
    ("data.manager", "data-manager", None),
    ("researcher", "researcher", None),
    ("admin", "admin", None),
]
# Granted at creation (an account is granted no set otherwise): the demo's researcher and
# administrator query the training set.
RESEARCH_SETS = {"researcher": ["training"], "admin": ["training"]}
PATIENTS_PER_SITE = 30
DEMO_ACTOR = "nccid-demo"
STARTED, LOADED = "demo.started", "demo.loaded"  # audit actions marking the load's progress
SHEETS = ("positive", "negative", "isaric")
# Most of a negative sheet's swabs are negative, as a site's are (drawn evenly, seven in ten
# of its patients had a positive swab, counted positive: the validation set then held too few
# negative patients for 'nccid validate' to report on).
SHEET_WEIGHTS = {"negative": {"swab_status": {"0": 19, "1": 1}}}
ACCEPT_TEST_NUMBERS = "NCCID_ACCEPT_TEST_NUMBERS"


def chest_phantom(rows: int, columns: int, seed: int) -> np.ndarray:
    """A drawn chest-like image (body, two lungs, spine), so thumbnails look like something."""
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:rows, 0:columns]
    cy, cx = rows / 2, columns / 2
    image = np.full((rows, columns), 300.0)
    body = ((x - cx) / (0.46 * columns)) ** 2 + ((y - cy) / (0.5 * rows)) ** 2 < 1
    image[body] = 2200
    for side in (-1, 1):
        lung = ((x - cx - side * 0.2 * columns) / (0.15 * columns)) ** 2 + ((y - cy) / (0.33 * rows)) ** 2 < 1
        image[lung] = 700 + rng.normal(0, 60, size=lung.sum())
    spine = np.abs(x - cx) < 0.04 * columns
    image[spine & body] = 3400
    image += rng.normal(0, 40, size=image.shape)
    return np.clip(image, 0, 4095).astype(np.uint16)


def _print(console: Console | None, text: str) -> None:
    if console is not None:
        console.print(text)


def load_demo(console: Console | None = None) -> bool:
    """Create the demo sites, accounts, clinical records and images, or finish an interrupted
    load. False if the demo is already loaded, or the home has sites or accounts of its own
    (nothing is added to it then, and no demo account is printed), or the demo home has had
    sites or accounts added to it (refused before this by ``nccid run`` and ``init --demo``)."""
    state = demo_state()
    if state in ("not a demo home", "older demo home", "demo home with its own"):
        return False
    if state == "loaded":
        if console is not None:
            print_accounts(console)
        return False
    from nccid.accounts.models import audit
    from nccid.cli.progress import progress_bar
    from nccid.warehouse.catalogue import refresh_catalogue

    if state == "new":
        audit(DEMO_ACTOR, STARTED)
        _print(console, "Loading synthetic demo sites, accounts and data …")
    else:
        _print(console, "Finishing the synthetic demo load that was interrupted …")
    _create_sites_and_accounts()
    with tempfile.TemporaryDirectory(prefix="nccid-demo-") as scratch, \
            _test_numbers_accepted(), \
            progress_bar("Loading the demo", total=len(SITES) * _steps_per_site()) as bar:
        for demo_site in SITES:
            _load_site(demo_site, Path(scratch), bar.advance)
    refresh_catalogue()  # before the end mark: an interrupted refresh is redone next time
    audit(DEMO_ACTOR, LOADED)
    if console is not None:
        print_accounts(console)
    return True


def demo_state() -> str:
    """'loaded', 'interrupted' (started, not finished), 'new' (no site and no account at all),
    'older demo home' (no marks, but a demo site and nothing that is not the demo's: loaded
    before these marks existed, so how far it got is unknown), 'demo home with its own' (the
    demo's marks, and sites or accounts added to it since: an operator setting up for real in
    the demo's home), or 'not a demo home' (sites or accounts of an operator's own). Only a
    new or a demo home may get, or go on serving, the demo's published passwords."""
    from nccid.accounts.models import AuditEvent, Site, User

    marks = set(AuditEvent.objects.filter(username=DEMO_ACTOR, action__in=(STARTED, LOADED))
                .values_list("action", flat=True))
    if marks:
        if not_the_demos():
            return "demo home with its own"
        return "loaded" if LOADED in marks else "interrupted"
    if not Site.objects.exists() and not User.objects.exists():
        return "new"
    if Site.objects.exists() and not not_the_demos():
        return "older demo home"
    return "not a demo home"


def not_the_demos() -> list[str]:
    """The sites (codes) and accounts (usernames) that are not the demo's: same code, name and
    AE title; same username and role. An account named like one of the demo's ('admin') with
    another role is an operator's."""
    from nccid.accounts.models import Site, User

    demo_sites = {(s.code, s.name, s.ae_title) for s in SITES}
    demo_accounts = {(username, role) for username, role, _ in ACCOUNTS}
    sites = [code for code, name, ae_title in Site.objects.values_list("code", "name", "ae_title")
             if (code, name, ae_title) not in demo_sites]
    accounts = [username for username, role in User.objects.values_list("username", "role")
                if (username, role) not in demo_accounts]
    return sorted(sites) + sorted(accounts)


@contextmanager
def _test_numbers_accepted() -> Iterator[None]:
    """The demo's synthetic people have NHS test numbers: its images are taken whatever the
    setting says (as its sheets are, ``import_file(accept_test_numbers=True)``), for the load
    only. Image intake reads the setting, and the load runs in this one process."""
    from nccid.config import reset_settings_cache

    before = os.environ.get(ACCEPT_TEST_NUMBERS)
    os.environ[ACCEPT_TEST_NUMBERS] = "true"
    reset_settings_cache()
    try:
        yield
    finally:
        if before is None:
            os.environ.pop(ACCEPT_TEST_NUMBERS, None)
        else:
            os.environ[ACCEPT_TEST_NUMBERS] = before
        reset_settings_cache()


def _steps_per_site() -> int:
    return len(SHEETS) + PATIENTS_PER_SITE + 4 + 1  # sheets, each patient's images, the held one


def _create_sites_and_accounts() -> None:
    """Those not made yet (an interrupted load may have made some)."""
    from nccid.accounts.models import Site, User
    from nccid.accounts.services import add_site, add_user

    for s in SITES:
        if not Site.objects.filter(code=s.code).exists():
            add_site(s.code, s.name, s.ae_title, s.split)
    for username, role, site_code in ACCOUNTS:
        if not User.objects.filter(username=username).exists():
            add_user(username, role, DEMO_PASSWORD, site_code,
                     research_sets=RESEARCH_SETS.get(username, ()))


def _load_site(demo_site: DemoSite, scratch: Path, step: Callable[[], None]) -> None:
    from nccid.accounts.models import Site, User
    from nccid.clinical.models import Upload
    from nccid.clinical.services import import_file
    from nccid.synthetic.clinical import write_sheet
    from nccid.synthetic.people import people

    site = Site.objects.get(code=demo_site.code)
    uploader = User.objects.get(username=f"{demo_site.code.lower()}.uploader")
    patients = people(PATIENTS_PER_SITE + 4, seed=demo_site.seed, site_prefix=demo_site.code)
    # The last few patients get images but no clinical record: their images wait to be linked.
    positive, negative = patients[:18], patients[18:PATIENTS_PER_SITE]
    groups = {"positive": positive, "negative": negative, "isaric": positive[:8]}
    for kind in SHEETS:
        # Sent again, an accepted sheet would add an upload of unchanged records to the list.
        if not Upload.objects.filter(site=site, kind=kind, status=Upload.Status.ACCEPTED).exists():
            path = scratch / f"{demo_site.code}-{kind}.xlsx"
            write_sheet(kind, groups[kind], path, seed=demo_site.seed, weights=SHEET_WEIGHTS.get(kind))
            import_file(site, kind, path, uploader, accept_test_numbers=True)  # synthetic people
        step()
    # Images: most patients identified by NHS number, some by hospital number only, and a few
    # whose clinical record has not arrived (they wait, encrypted, to be linked).
    for index, person in enumerate(patients):
        by_nhs = index % 3 != 0
        _send_images(site, person, index, use_nhs=by_nhs)
        step()
    _send_held_image(site, patients[1], demo_site.seed)
    step()


def _send_held_image(site, person, seed: int) -> None:
    """A portable radiograph with a (drawn, meaningless) label burned into its corner and
    Burned In Annotation = YES: held at intake, so the review queue has something to show."""
    from nccid.imaging.intake import ingest
    from nccid.synthetic.dicom import synthetic_instance, to_bytes

    size = 256
    pixels = chest_phantom(size, size, seed=seed)
    pixels[8:40, 8:120] = 4095  # the label's box
    for column in range(14, 114, 10):  # its "characters"
        pixels[16:32, column:column + 6] = 0
    ds = synthetic_instance(person, modality="CR", study=9, series=1, instance=1, rows=size,
                            columns=size, bits=12, patient_id=person.nhs_number, plant=False)
    ds.PixelData = pixels.tobytes()
    ds.WindowCenter, ds.WindowWidth = 1800, 3600
    ds.BurnedInAnnotation = "YES"
    ingest(to_bytes(ds), site, source="demo")


def _send_images(site, person, index: int, use_nhs: bool) -> None:
    from nccid.imaging.intake import ingest
    from nccid.synthetic.dicom import synthetic_instance, to_bytes

    patient_id = person.nhs_number if use_nhs else person.hospital_number
    modality_plan = [("DX", 1, 256)]
    if index % 4 == 0:
        modality_plan.append(("CT", 6, 128))
    if index % 9 == 0:
        modality_plan.append(("MR", 3, 128))
    for study, (modality, count, size) in enumerate(modality_plan, start=1):
        for instance in range(1, count + 1):
            ds = synthetic_instance(person, modality=modality, study=study, series=1,
                                    instance=instance, rows=size, columns=size, bits=12,
                                    patient_id=patient_id, plant=False)
            ds.PixelData = chest_phantom(size, size, seed=index * 100 + instance).tobytes()
            ds.WindowCenter, ds.WindowWidth = 1800, 3600
            ingest(to_bytes(ds), site, source="demo")


def print_accounts(console: Console) -> None:
    table = Table("Username", "Role", "Site", "Password", title="Demo accounts (synthetic data only)")
    for username, role, site_code in ACCOUNTS:
        table.add_row(username, role, site_code or "all", DEMO_PASSWORD)
    console.print(table)
