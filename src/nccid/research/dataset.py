"""The Python API: ``nccid.research.open(...)`` gives frames and a PyTorch-compatible dataset.

    import nccid.research
    data = nccid.research.open("rita", modality="CT", covid_status="positive")
    data.counts, data.clinical(), data.images(polars=True)
    ds = data.torch_dataset(window=(40, 400), normalise="unit")
    image, label = ds[0]          # float32 C×H×W numpy array, 1/0

PyTorch is optional: the dataset is a plain map-style dataset (``__len__``/``__getitem__``)
that a ``torch.utils.data.DataLoader`` accepts as it is; torch is imported only when the
caller asks for tensors.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import Any

import numpy as np
import pandas as pd
import pydicom
from pydicom.pixels import apply_modality_lut

from .cohort import (
    Cohort,
    CohortFilter,
    Counts,
    ScopeError,
    _field_expr,
    clinical_columns,
    scope_for,
)
from .decoding import decode_pixels
from .source import Source, default_source

# How clinical label values become numbers (data, not branches).
LABEL_VALUES = {"positive": 1, "negative": 0, "yes": 1, "no": 0, "true": 1, "false": 0}
Window = str | tuple[float, float] | None
# Objects with pixels to give: Rows and Columns are required wherever Pixel Data is (PS3.3
# C.7.6.3), and the catalogue has neither for an SR, a presentation state or a key object
# selection, whose reading would fail (whatever their SOP class or Modality says).
HAS_PIXELS = "rows > 0 AND columns > 0"


# ---------------------------------------------------------------- pixels

def _dicom_window(ds: pydicom.Dataset) -> tuple[float, float] | None:
    centre, width = ds.get("WindowCenter"), ds.get("WindowWidth")
    if centre is None or width is None:
        return None
    def first(v):
        return (float(v[0]) if isinstance(v, pydicom.multival.MultiValue) else float(v))
    return first(centre), first(width)


def pixels_to_array(ds: pydicom.Dataset, window: Window = "auto",
                    normalise: str | None = "unit") -> np.ndarray:
    """Float32 C×H×W: rescale slope/intercept applied, windowed, MONOCHROME1 inverted.

    ``window``: ``"auto"`` (the DICOM window if the file has one, else the full range),
    ``"dicom"`` (the file's window, an error if absent), ``"none"``, or ``(centre, width)``.
    ``normalise``: ``"unit"`` (0..1), ``"zscore"`` or ``None`` (values as windowed/rescaled).
    """
    values = apply_modality_lut(decode_pixels(ds), ds).astype(np.float32)
    chosen: tuple[float, float] | None
    if window in ("auto", "dicom"):
        chosen = _dicom_window(ds)
        if chosen is None and window == "dicom":
            raise ValueError("the image has no DICOM window centre/width")
    elif window in (None, "none"):
        chosen = None
    else:
        chosen = (float(window[0]), float(window[1]))
    if chosen is not None:
        centre, width = chosen
        low = centre - width / 2
        values = np.clip((values - low) / max(width, 1e-6), 0.0, 1.0)
        if ds.get("PhotometricInterpretation") == "MONOCHROME1":
            values = 1.0 - values
    elif ds.get("PhotometricInterpretation") == "MONOCHROME1":
        values = values.max() + values.min() - values
    if normalise == "unit" and chosen is None:
        span = float(values.max() - values.min())
        values = (values - values.min()) / span if span else np.zeros_like(values)
    elif normalise == "zscore":
        std = float(values.std())
        values = (values - values.mean()) / std if std else values - values.mean()
    elif normalise not in (None, "unit"):
        raise ValueError(f"normalise must be 'unit', 'zscore' or None, not {normalise!r}")
    return _chw(values, ds)


def preview_png(ds: pydicom.Dataset, size: int) -> bytes:
    """The image's first frame as an 8-bit PNG at most ``size`` pixels on either side: grey,
    or colour for a colour image; windowed as by ``pixels_to_array(ds, "auto", "unit")``."""
    import io

    from PIL import Image

    values = pixels_to_array(ds, "auto", "unit")
    colour = int(ds.get("SamplesPerPixel", 1)) > 1
    single = int(ds.get("NumberOfFrames", 1) or 1) == 1
    frame = np.moveaxis(values, 0, -1) if colour and single else values[0]  # H×W(×C)
    image = Image.fromarray(np.round(np.clip(frame, 0.0, 1.0) * 255).astype(np.uint8))
    image.thumbnail((size, size))
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return buffer.getvalue()


def _chw(values: np.ndarray, ds: pydicom.Dataset) -> np.ndarray:
    if values.ndim == 2:
        values = values[np.newaxis]
    elif values.ndim == 3 and int(ds.get("SamplesPerPixel", 1)) > 1:
        values = np.moveaxis(values, -1, 0)  # H×W×C -> C×H×W
    return np.ascontiguousarray(values, dtype=np.float32)


# ---------------------------------------------------------------- dataset

class ImageDataset:
    """Map-style dataset of (float32 C×H×W image, label); picklable for DataLoader workers."""

    def __init__(self, warehouse: Any, items: list[tuple[str, float]], window: Window = "auto",
                 normalise: str | None = "unit", transform: Callable | None = None,
                 tensors: bool = False) -> None:
        self.warehouse = warehouse
        self.items = items
        self.window = window
        self.normalise = normalise
        self.transform = transform
        self.tensors = tensors
        if tensors:
            import torch  # noqa: F401  (fail now, not in a worker, if torch is missing)

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, index: int):
        key, label = self.items[index]
        opener = getattr(self.warehouse, "open", None)
        if opener is not None:
            with opener(key) as handle:
                ds = pydicom.dcmread(handle)
        else:
            import io

            ds = pydicom.dcmread(io.BytesIO(self.warehouse.read(key)))
        image = pixels_to_array(ds, self.window, self.normalise)
        if self.tensors:
            import torch

            image, label = torch.from_numpy(image), torch.tensor(label, dtype=torch.float32)
        if self.transform is not None:
            image = self.transform(image)
        return image, label


def label_value(value: Any) -> float | None:
    if value is None or (isinstance(value, float) and np.isnan(value)):
        return None
    if isinstance(value, bool | int | float | np.integer | np.floating):
        return float(value)
    text = str(value).strip().lower()
    if text in LABEL_VALUES:
        return float(LABEL_VALUES[text])
    try:
        return float(text)
    except ValueError:
        return None


class ResearchData:
    """A cohort opened from Python: counts, frames and an image dataset."""

    def __init__(self, cohort: Cohort) -> None:
        self.cohort = cohort

    @property
    def counts(self) -> Counts:
        return self.cohort.counts()

    @staticmethod
    def _frame(df: pd.DataFrame, polars: bool):
        if not polars:
            return df
        try:
            import polars as pl
        except ImportError as exc:  # polars is an optional extra, as torch is
            raise ModuleNotFoundError(
                "polars=True needs polars, an optional extra: pip install 'nccid[polars]' "
                "(or call without polars=True for a pandas frame)", name="polars") from exc
        return pl.from_pandas(df)

    def clinical(self, polars: bool = False):
        return self._frame(self.cohort.clinical(), polars)

    def images(self, polars: bool = False):
        return self._frame(self.cohort.images(), polars)

    def patients(self, polars: bool = False):
        return self._frame(self.cohort.patients(), polars)

    def labels(self, label: str = "final_covid_status") -> dict[str, float | None]:
        """Pseudonym -> numeric label from the clinical record (COVID status as a fallback)."""
        params: dict[str, Any] = {}
        expr = _field_expr(label, clinical_columns(self.cohort.con), params, "label_field")
        rows = self.cohort._execute(
            f"SELECT c.pseudonym, any_value(CAST({expr} AS VARCHAR)) FILTER (WHERE {expr} IS NOT NULL) "
            "FROM clinical c WHERE list_contains($sets, c.set_name) "
            "AND c.pseudonym IN (SELECT pseudonym FROM cp) GROUP BY 1", params).fetchall()
        labels = {p: label_value(v) for p, v in rows}
        if label == "final_covid_status":
            for p, status in self.cohort._execute(
                    "SELECT pseudonym, covid_status FROM pat WHERE pseudonym IN (SELECT pseudonym FROM cp)"
            ).fetchall():
                if labels.get(p) is None:
                    labels[p] = label_value(status)
        return labels

    def torch_dataset(self, window: Window = "auto", normalise: str | None = "unit",
                      label: str = "final_covid_status", transform: Callable | None = None,
                      tensors: bool = False, drop_unlabelled: bool = True) -> ImageDataset:
        """The cohort's images with pixels (``HAS_PIXELS``) and their labels."""
        labels = self.labels(label)
        items = []
        cursor = self.cohort.image_rows("storage_key, pseudonym", where=HAS_PIXELS)
        while batch := cursor.fetchmany(10_000):
            for key, pseudonym in batch:
                value = labels.get(pseudonym)
                if value is None and drop_unlabelled:
                    continue
                items.append((key, float("nan") if value is None else value))
        return ImageDataset(self.cohort.source.warehouse, items, window, normalise, transform, tensors)

    def close(self) -> None:
        self.cohort.close()


def _resolve_user(user_or_none: Any):
    if user_or_none is not None and not isinstance(user_or_none, str):
        return user_or_none
    name = user_or_none or os.environ.get("NCCID_USER")
    if not name:
        raise ScopeError("say who is asking: nccid.research.open('<username>', ...) or set NCCID_USER")
    from django.apps import apps

    if not apps.ready:  # a plain Python session: start Django (and check the database) once
        from nccid.cli.common import setup_django

        setup_django(needs_key=False)  # a research host holds no key file (docs/keys.md)
    from nccid.accounts.models import User

    user = User.objects.filter(username=name, is_active=True).first()
    if user is None:
        raise ScopeError(f"no active user {name!r}")
    return user


def open_cohort(user_or_none: Any = None, filter: CohortFilter | dict | None = None, *,
                source: Source | None = None, **criteria: Any) -> ResearchData:
    """Open the cohort a user may see (training set by default); the opening is audited."""
    user = _resolve_user(user_or_none)
    if isinstance(filter, CohortFilter):
        flt = CohortFilter.from_dict({**filter.to_dict(), **criteria}) if criteria else filter
    else:
        flt = CohortFilter.from_dict({**(filter or {}), **criteria})
    from nccid.accounts.models import audit

    cohort = Cohort(flt, scope_for(user), source or default_source())
    audit(user, "research.open", filter=flt.to_dict(), sets=list(cohort.sets),
          **cohort.counts().as_dict())
    return ResearchData(cohort)
