from django.http import HttpResponse


def home(request):
    return HttpResponse("nccid")


def login_view(request):
    return HttpResponse("login")
