from django.contrib import admin
from django.templatetags.static import static
from django.urls import include, path, re_path
from django.views.generic.base import RedirectView

from nccid.portal.api import api, bad_request, not_found

from .health import healthz

handler400 = bad_request  # Django's request limits: JSON under /api/ too
handler403 = "nccid.portal.views.permission_denied"  # with a refusal's own reason

urlpatterns = [
    # Browsers ask for /favicon.ico on pages that name no icon (the admin, the JSON views).
    path("favicon.ico", RedirectView.as_view(url=static("nhsuk/assets/images/favicon.ico"),
                                             permanent=True)),
    path("healthz", healthz, name="healthz"),  # load balancers and monitoring
    # The admin's own page checks the old password without django-axes (no limit on guesses
    # from a signed-in session): the portal's page counts each wrong one as a failed sign-in.
    path("admin/password_change/", RedirectView.as_view(pattern_name="portal:password_change")),
    path("admin/", admin.site.urls),
    path("api/", api.urls),
    re_path(r"^api/(?P<address>.*)$", not_found),  # JSON, as every answer under /api/
    path("", include("nccid.portal.urls_figures")),
    path("", include("nccid.portal.urls")),
]
