from django.http import HttpRequest, HttpResponse
from django.urls import path


def home(request: HttpRequest) -> HttpResponse:
    return HttpResponse(
        "<!doctype html><title>Django + imgproxy</title>"
        '<img src="/media/photos/chelsea.png?p=thumb" alt="Chelsea the cat">'
    )


urlpatterns = [path("", home)]
