"""Forms of the portal pages. Validation that belongs to the data lives in the clinical services."""

from __future__ import annotations

from django import forms
from django.conf import settings

from nccid.accounts.models import Site

SPREADSHEET_SUFFIXES = (".xlsx", ".xlsm", ".xls", ".ods", ".csv")


class UploadForm(forms.Form):
    """One spreadsheet; an administrator also says which site they are acting for."""

    file = forms.FileField(
        label="Upload a file",
        help_text="An Excel workbook (.xlsx) made from the template above, or a CSV file with the same headers.",
        error_messages={"required": "Select the spreadsheet to upload",
                        "empty": "The selected file is empty"},
    )

    def __init__(self, *args, acting_for_any_site: bool = False, **kwargs):
        super().__init__(*args, **kwargs)
        if acting_for_any_site:
            self.fields["site"] = forms.ModelChoiceField(
                queryset=Site.objects.order_by("code"), to_field_name="code",
                label="Site you are uploading for",
                error_messages={"required": "Select the site you are uploading for",
                                "invalid_choice": "Select one of the listed sites"},
            )
            self.order_fields(["site", "file"])

    def clean_file(self):
        upload = self.cleaned_data["file"]
        name = (upload.name or "").lower()
        if not name.endswith(SPREADSHEET_SUFFIXES):
            raise forms.ValidationError(
                "The selected file must be a spreadsheet: " + ", ".join(SPREADSHEET_SUFFIXES))
        limit = settings.NCCID_MAX_SPREADSHEET_BYTES
        if upload.size > limit:
            raise forms.ValidationError(
                f"The selected file must be smaller than {limit // (1024 * 1024)} MB: "
                "split it into several uploads")
        return upload
