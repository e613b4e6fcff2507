from django.contrib import admin
from django.templatetags.static import static
from django.urls import include, path
from django.views.generic.base import RedirectView

from nccid.portal.api import api

from .health import healthz

urlpatterns = [
    # Browsers ask for /favicon.ico on pages that name no icon (the admin, the JSON views).
    path("favicon.ico", RedirectView.as_view(url=static("nhsuk/assets/images/favicon.ico"),
                                             permanent=True)),
    path("healthz", healthz, name="healthz"),  # load balancers and monitoring
    path("admin/", admin.site.urls),
    path("api/", api.urls),
    path("", include("nccid.portal.urls_figures")),
    path("", include("nccid.portal.urls")),
]
