"""Forms of the portal pages. Validation that belongs to the data lives in the clinical services."""

from __future__ import annotations

from django import forms
from django.conf import settings
from django.contrib.auth.forms import AuthenticationForm

from nccid.accounts.models import Site

# What the clinical reader reads (nccid.clinical.reader): Excel's xlsx (xlsm is the same with
# macros) and CSV. An old .xls or an OpenDocument .ods is refused here, saying how to convert it.
SPREADSHEET_SUFFIXES = (".xlsx", ".xlsm", ".csv")
WRONG_FORMAT = ("The selected file must be an Excel workbook (.xlsx) or a CSV file (.csv). "
                "If it is another kind of spreadsheet (.xls, .ods, .numbers), open it in Excel or "
                "LibreOffice, choose Save As, save it as .xlsx or CSV, and upload that file")


# What an empty field says, naming it (the NHS.UK pattern), not Django's "This field is required."
SIGN_IN_REQUIRED = {"username": "Enter your username", "password": "Enter your password"}
PASSWORD_CHANGE_REQUIRED = {"old_password": "Enter your current password",
                            "new_password1": "Enter a new password",
                            "new_password2": "Confirm the new password"}


def name_what_is_missing(form: forms.Form, required: dict[str, str]) -> None:
    """Give each field of ``required`` its own message for being left empty."""
    for name, message in required.items():
        form.fields[name].error_messages["required"] = message


class SignInForm(AuthenticationForm):
    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        name_what_is_missing(self, SIGN_IN_REQUIRED)


# A multipart request carries the file and a few short fields (the CSRF token, a site code):
# a body this much over the file limit cannot hold a file within it.
MULTIPART_ALLOWANCE = 64 * 1024


def max_mb() -> int:
    return settings.NCCID_MAX_SPREADSHEET_BYTES // (1024 * 1024)


def too_large_message() -> str:
    return f"The selected file must be smaller than {max_mb()} MB: split it into several uploads"


def too_large(request) -> bool:
    """True if the request says (Content-Length) it is larger than any file within the limit:
    refused before its body is read, in the same words as a file found too large."""
    try:
        length = int(request.META.get("CONTENT_LENGTH") or 0)
    except ValueError:
        return False  # Django refuses it when it reads the body
    return length > settings.NCCID_MAX_SPREADSHEET_BYTES + MULTIPART_ALLOWANCE


class UploadForm(forms.Form):
    """One spreadsheet; an administrator also says which site they are acting for."""

    file = forms.FileField(
        label="Upload a file",
        error_messages={"required": "Select the spreadsheet to upload",
                        "empty": "The selected file is empty"},
    )

    def __init__(self, *args, acting_for_any_site: bool = False, **kwargs):
        super().__init__(*args, **kwargs)
        self.fields["file"].help_text = (
            "An Excel workbook (.xlsx) made from the template above, or a CSV file with the same "
            f"headers, smaller than {max_mb()} MB. Another kind of spreadsheet: save it as .xlsx "
            "or CSV first.")
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
            raise forms.ValidationError(WRONG_FORMAT)
        if upload.size > settings.NCCID_MAX_SPREADSHEET_BYTES:
            raise forms.ValidationError(too_large_message())
        return upload
