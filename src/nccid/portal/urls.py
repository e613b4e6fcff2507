"""URLs of the site portal pages (summary, dashboard and review live in urls_figures)."""

from django.urls import path

from . import session_ended, views

app_name = "portal"
urlpatterns = [
    path("", views.home, name="home"),
    path("login/", views.LoginView.as_view(), name="login"),
    path("logout/", views.LogoutView.as_view(), name="logout"),
    path("password/", views.PasswordChangeView.as_view(), name="password_change"),
    path("session/left/", session_ended.session_left, name="session_left"),  # read only
    path("guidance/", views.guidance, name="guidance"),
    path("faq/", views.faq, name="faq"),
    path("research/", views.research, name="research"),
    path("upload/positive/", views.upload, {"kind": "positive"}, name="upload_positive"),
    path("upload/negative/", views.upload, {"kind": "negative"}, name="upload_negative"),
    path("upload/isaric/", views.upload, {"kind": "isaric"}, name="upload_isaric"),
    path("templates/<str:kind>.xlsx", views.template_download, name="template_download"),
    path("uploads/", views.my_uploads, name="my_uploads"),
    path("uploads/<int:pk>/", views.upload_preview, name="upload_preview"),
    path("uploads/<int:pk>/confirm/", views.upload_confirm, name="upload_confirm"),
    path("uploads/<int:pk>/cancel/", views.upload_cancel, name="upload_cancel"),
    path("uploads/<int:pk>/errors.csv", views.upload_errors_csv, name="upload_errors_csv"),
]
