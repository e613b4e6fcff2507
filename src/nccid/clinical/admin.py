"""Read-only admin views of clinical intake (no staged data, no editing of records)."""

from django.contrib import admin

from .models import ClinicalRecord, PatientLink, Upload


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


@admin.register(ClinicalRecord)
class ClinicalRecordAdmin(ReadOnly):
    list_display = ("pseudonym", "site", "kind", "updated")
    list_filter = ("kind", "site")
    search_fields = ("pseudonym",)


@admin.register(PatientLink)
class PatientLinkAdmin(ReadOnly):
    list_display = ("site", "hospital_hash", "pseudonym", "created")
    search_fields = ("pseudonym",)
