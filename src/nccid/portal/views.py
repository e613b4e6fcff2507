"""The site portal pages. Business rules live in the parts' services; views only route."""

from django.contrib.auth import views as auth_views
from django.contrib.auth.decorators import login_required
from django.http import HttpResponse
from django.shortcuts import render
from django.urls import reverse_lazy


class LoginView(auth_views.LoginView):
    template_name = "portal/login.html"
    redirect_authenticated_user = True


class LogoutView(auth_views.LogoutView):
    pass


class PasswordChangeView(auth_views.PasswordChangeView):
    template_name = "portal/password_change.html"
    success_url = reverse_lazy("portal:home")


@login_required
def home(request):
    return render(request, "portal/home.html")


@login_required
def guidance(request):
    return render(request, "portal/home.html")


faq = guidance
upload = my_uploads = upload_preview = upload_confirm = upload_cancel = upload_errors_csv = guidance


def template_download(request, kind):
    return HttpResponse(kind)
