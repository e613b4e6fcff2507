"""URLs of the summary, dashboard and review pages."""

app_name = "figures"
urlpatterns: list = []
