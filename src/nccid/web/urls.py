from django.contrib import admin
from django.urls import include, path

from nccid.portal.api import api

urlpatterns = [
    path("admin/", admin.site.urls),
    path("api/", api.urls),
    path("", include("nccid.portal.urls_figures")),
    path("", include("nccid.portal.urls")),
]
