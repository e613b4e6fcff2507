from django.contrib import admin
from django.contrib.auth.admin import UserAdmin

from .models import ApiToken, AuditEvent, Site, User


@admin.register(Site)
class SiteAdmin(admin.ModelAdmin):
    list_display = ("code", "name", "ae_title", "split_rule", "created")
    search_fields = ("code", "name", "ae_title")


@admin.register(User)
class NccidUserAdmin(UserAdmin):
    list_display = ("username", "role", "site", "is_active", "last_login")
    list_filter = ("role", "site", "is_active")
    fieldsets = UserAdmin.fieldsets + (("nccid", {"fields": ("role", "site", "research_sets")}),)


@admin.register(AuditEvent)
class AuditEventAdmin(admin.ModelAdmin):
    list_display = ("at", "username", "action", "pseudonym", "reason")
    list_filter = ("action",)
    readonly_fields = [f.name for f in AuditEvent._meta.fields]

    def has_add_permission(self, request):
        return False

    def has_change_permission(self, request, obj=None):
        return False

    def has_delete_permission(self, request, obj=None):
        return False


admin.site.register(ApiToken)
