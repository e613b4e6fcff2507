from django import forms
from django.contrib import admin
from django.contrib.admin.utils import unquote
from django.contrib.auth.admin import UserAdmin
from django.db import models, transaction

from .models import ApiToken, AuditEvent, Role, Site, User
from .services import (
    AccountError,
    account_state,
    audit_account,
    audit_account_deleted,
    audit_password_set,
    audit_site,
    audit_site_deleted,
    checked_ae_title,
    checked_site_code,
    revoke_token,
    site_state,
)
from .signals import audited_by_caller


class DataManagerAccess:
    """Data managers manage sites and accounts here without being superusers (no deleting)."""

    def _manager(self, request) -> bool:
        return request.user.is_active and getattr(request.user, "is_data_manager", False)

    def has_module_permission(self, request):
        return self._manager(request) or super().has_module_permission(request)

    def has_view_permission(self, request, obj=None):
        return self._manager(request) or super().has_view_permission(request, obj)

    def has_add_permission(self, request):
        return self._manager(request) or super().has_add_permission(request)

    def has_change_permission(self, request, obj=None):
        return self._manager(request) or super().has_change_permission(request, obj)


def may_manage(user, account) -> bool:
    """A data manager manages site staff, researchers and their own account; other data
    managers' and administrators' accounts (passwords included: the vault trusts a data
    manager's sign-in) only a superuser may change."""
    return user.is_superuser or account.pk == user.pk or not (
        account.is_superuser or account.role in (Role.DATA_MANAGER, Role.ADMIN))


MANAGING_ROLES = (Role.DATA_MANAGER, Role.ADMIN)
ONLY_SUPERUSERS_PROMOTE = ("Only a superuser may make an account a data manager or an "
                           "administrator: choose site uploader or researcher.")


def may_give_role(user, account, role: str) -> bool:
    """A managing role is a superuser's to give (a data manager who could give it could set an
    account's password, promote it and sign in as a second data manager); a data manager's
    own account keeps the role it has."""
    if user.is_superuser or role not in MANAGING_ROLES:
        return True
    return account is not None and account.pk == user.pk and role == user.role


class SiteForm(forms.ModelForm):
    """The rules ``nccid site add`` applies (code in capitals, an AE title DICOM can carry),
    so a site made or changed here is one the CLI and the node would accept."""

    date_format = forms.ChoiceField(choices=[("DMY", "DMY (day first, UK)"),
                                             ("MDY", "MDY (month first)")])

    class Meta:
        model = Site
        fields = "__all__"

    def __init__(self, *args, **kwargs):
        from nccid.clinical.declared_units import described

        super().__init__(*args, **kwargs)
        units = self.fields["declared_units"]  # Site.clean() checks what is typed here
        units.help_text = (f"{units.help_text} A header (\"CRP\") is stored as its field. "
                           f"Fields with units to choose from: {described()}.")

    def clean_code(self) -> str:
        return _checked(checked_site_code, self.cleaned_data["code"])

    def clean_ae_title(self) -> str | None:
        ae_title = self.cleaned_data.get("ae_title")
        return _checked(checked_ae_title, ae_title) if ae_title else None


def _checked(check, value: str) -> str:
    try:
        return check(value)
    except AccountError as exc:
        raise forms.ValidationError(str(exc)) from exc


@admin.register(Site)
class SiteAdmin(DataManagerAccess, admin.ModelAdmin):
    form = SiteForm
    list_display = ("code", "name", "ae_title", "split_rule", "created")
    search_fields = ("code", "name", "ae_title")

    # Audited as accounts are: an AE title changed here decides which PACS is taken as the site's.
    def save_model(self, request, obj, form, change):
        before = site_state(Site.objects.get(pk=obj.pk)) if change else None
        super().save_model(request, obj, form, change)
        audit_site(request.user, before, obj)

    def delete_model(self, request, obj):
        audit_site_deleted(request.user, obj)
        super().delete_model(request, obj)

    def delete_queryset(self, request, queryset):
        with transaction.atomic():  # the admin's delete action is not in a transaction
            for site in queryset:
                audit_site_deleted(request.user, site)
            super().delete_queryset(request, queryset)


class ResearchSetsField(forms.JSONField):
    """A research-sets box a data manager empties grants no set, as ``[]`` does (the column
    holds a list: an empty box was a database error)."""

    def to_python(self, value):
        converted = super().to_python(value)
        return [] if converted is None else converted


@admin.register(User)
class NccidUserAdmin(DataManagerAccess, UserAdmin):
    list_display = ("username", "role", "site", "is_active", "last_login")
    list_filter = ("role", "site", "is_active")
    fieldsets = UserAdmin.fieldsets + (("nccid", {"fields": ("role", "site", "research_sets")}),)
    formfield_overrides = {models.JSONField: {"form_class": ResearchSetsField}}  # research_sets

    def has_change_permission(self, request, obj=None):
        if obj is not None and not may_manage(request.user, obj):
            return False
        return super().has_change_permission(request, obj)

    def get_readonly_fields(self, request, obj=None):
        # Only superusers grant superuser, staff or Django permissions (no self-promotion).
        fields = list(super().get_readonly_fields(request, obj))
        if not request.user.is_superuser:
            fields += ["is_superuser", "is_staff", "groups", "user_permissions"]
        return fields

    def get_form(self, request, obj=None, change=False, **kwargs):
        # Offer only the roles this user may give; another one posted is a form error.
        form = super().get_form(request, obj, change=change, **kwargs)
        role = form.base_fields.get("role")
        if role is not None and not request.user.is_superuser:
            role.choices = [(value, label) for value, label in role.choices
                            if may_give_role(request.user, obj, value)]
            role.error_messages["invalid_choice"] = ONLY_SUPERUSERS_PROMOTE
        return form

    def save_model(self, request, obj, form, change):
        if not may_give_role(request.user, obj, obj.role):  # the form refuses it first
            from django.core.exceptions import PermissionDenied

            raise PermissionDenied(ONLY_SUPERUSERS_PROMOTE)
        obj.is_staff = obj.role in (Role.DATA_MANAGER, Role.ADMIN) or obj.is_superuser
        # What the account could do before: the form changed the object, not yet its row.
        obj._state_before = account_state(User.objects.get(pk=obj.pk)) if change else None
        with audited_by_caller():  # by save_related, with the groups and permissions
            super().save_model(request, obj, form, change)

    def save_related(self, request, form, formsets, change):
        # Audited once its groups and permissions are saved too, in the admin's transaction.
        with audited_by_caller():
            super().save_related(request, form, formsets, change)
        audit_account(request.user, form.instance._state_before, form.instance)

    def delete_model(self, request, obj):
        audit_account_deleted(request.user, obj)
        with audited_by_caller():
            super().delete_model(request, obj)

    def delete_queryset(self, request, queryset):
        with transaction.atomic():  # the admin's delete action is not in a transaction
            for account in queryset.select_related("site"):
                audit_account_deleted(request.user, account)
            with audited_by_caller():
                super().delete_queryset(request, queryset)

    def user_change_password(self, request, id, form_url=""):
        # Django's page sets (or removes) the password of the account it shows; audited, as a
        # data manager may set a site uploader's or researcher's there.
        account = self.get_object(request, unquote(id))
        before = account.password if account is not None else None
        with audited_by_caller():
            response = super().user_change_password(request, id, form_url)
        if account is not None and request.method == "POST":
            account.refresh_from_db(fields=["password"])
            if account.password != before:
                audit_password_set(request.user, account)
        return response


@admin.register(AuditEvent)
class AuditEventAdmin(admin.ModelAdmin):
    def has_module_permission(self, request):
        return getattr(request.user, "is_data_manager", False) or super().has_module_permission(request)

    def has_view_permission(self, request, obj=None):
        return getattr(request.user, "is_data_manager", False) or super().has_view_permission(request, obj)

    list_display = ("at", "username", "action", "pseudonym", "reason")
    list_filter = ("action",)
    readonly_fields = [f.name for f in AuditEvent._meta.fields]

    def has_add_permission(self, request):
        return False

    def has_change_permission(self, request, obj=None):
        return False

    def has_delete_permission(self, request, obj=None):
        return False


@admin.register(ApiToken)
class ApiTokenAdmin(DataManagerAccess, admin.ModelAdmin):
    """Tokens are issued on the server (``nccid user token``, shown once); here data managers
    see them (never the token: only its first characters) and revoke them by deleting,
    audited as ``token.revoke``, for the accounts they may manage."""

    list_display = ("user", "name", "begins", "created", "last_used")
    list_filter = ("user__role",)
    search_fields = ("user__username", "name", "prefix")
    fields = readonly_fields = ("user", "name", "begins", "created", "last_used")

    @admin.display(description="Begins")
    def begins(self, token: ApiToken) -> str:
        return f"{token.prefix}…" if token.prefix else "-"

    def has_add_permission(self, request):
        return False  # a token made here could never be shown to anyone: use the CLI

    def has_change_permission(self, request, obj=None):
        return False

    def has_delete_permission(self, request, obj=None):
        if obj is not None and not may_manage(request.user, obj.user):
            return False
        return self._manager(request) or super().has_delete_permission(request, obj)

    def delete_model(self, request, obj):
        revoke_token(obj, request.user)

    def delete_queryset(self, request, queryset):
        with transaction.atomic():
            for token in queryset.select_related("user"):
                revoke_token(token, request.user)
