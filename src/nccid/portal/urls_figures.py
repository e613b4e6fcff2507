"""URLs of the summary, dashboard, review-queue and vault pages."""

from django.urls import path

from . import dashboard

app_name = "figures"
urlpatterns = [
    path("summary/", dashboard.summary_page, name="summary"),
    path("dashboard/", dashboard.dashboard_page, name="dashboard"),
    path("dashboard/charts/<slug:name>.svg", dashboard.chart_svg, name="chart"),
    path("review/", dashboard.review_page, name="review"),
    path("review/<int:pk>/image.png", dashboard.review_image, name="review_image"),
    path("review/<int:pk>/<str:action>/", dashboard.review_decide, name="review_decide"),
    path("vault/", dashboard.vault_page, name="vault"),
    path("withdraw/", dashboard.withdraw_page, name="withdraw"),
    path("audit/", dashboard.audit_page, name="audit"),
    path("remove-study/", dashboard.remove_study_page, name="remove_study"),
]
