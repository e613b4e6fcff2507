"""Read-only admin views of clinical intake (no staged data, no editing of records).

Clinical records are not in the admin site: their values (``data``, ``cleaned``), and even
their kind (a negative sheet's record is a COVID-negative patient's), would show each
validation-set patient's ground truth, which no one may read but validation's aggregate
figures (docs/research.md). The research tools are the way to read the training set's."""

from django.contrib import admin

from .models import PatientLink, Upload


class ReadOnly(admin.ModelAdmin):
    def has_add_permission(self, request):
        return False

    def has_change_permission(self, request, obj=None):
        return False


@admin.register(Upload)
class UploadAdmin(ReadOnly):
    list_display = ("id", "site", "kind", "status", "total_rows", "accepted_rows", "rejected_rows",
                    "new_records", "updated_records", "unchanged_records", "uploaded_by_name", "created")
    list_filter = ("status", "kind", "site")
    exclude = ("staged",)


@admin.register(PatientLink)
class PatientLinkAdmin(ReadOnly):
    list_display = ("site", "hospital_hash", "pseudonym", "created")
    search_fields = ("pseudonym",)
