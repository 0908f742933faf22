# mypy: disallow-untyped-decorators=False
# (Django ships no type information: require_POST is untyped to mypy.)
"""Upload, fetch from a URL, replace and delete photos; each error shows imgproxy's code."""

from django.conf import settings
from django.forms import Form
from django.http import HttpRequest, HttpResponse, HttpResponseRedirect
from django.shortcuts import get_object_or_404, render
from django.views.decorators.http import require_POST

from gallery.forms import FetchForm, PhotoForm, ReplaceForm
from gallery.models import Album, Photo
from imgproxy import ImageProxyError, fetch
from imgproxy.contrib.django.conf import imgproxy_settings


def home(request: HttpRequest, errors: list[tuple[str, str]] | None = None) -> HttpResponse:
    context = {"albums": Album.objects.prefetch_related("photos"), "errors": errors or []}
    return render(request, "gallery/home.html", context, status=400 if errors else 200)


def _errors(form: Form) -> list[tuple[str, str]]:
    """(code, message) of every error: imgproxy's validator gives its own codes."""
    return [
        (error.code or "invalid", message)
        for errors in form.errors.as_data().values()
        for error in errors
        for message in error.messages
    ]


def _done() -> HttpResponse:
    return HttpResponseRedirect("/", status=303)


@require_POST
def create_album(request: HttpRequest) -> HttpResponse:
    Album.objects.create(name=request.POST.get("name", "")[:100] or "Untitled")
    return _done()


@require_POST
def upload(request: HttpRequest) -> HttpResponse:
    form = PhotoForm(request.POST, request.FILES)
    if not form.is_valid():
        return home(request, _errors(form))
    form.save()
    return _done()


@require_POST
def replace(request: HttpRequest, pk: int) -> HttpResponse:
    photo = get_object_or_404(Photo, pk=pk)
    form = ReplaceForm(request.POST, request.FILES, instance=photo)
    if not form.is_valid():
        return home(request, _errors(form))
    form.save()
    return _done()


@require_POST
def fetch_url(request: HttpRequest) -> HttpResponse:
    """imgproxy.fetch: the server's SSRF checks, caps and policy, then a safe file name."""
    form = FetchForm(request.POST)
    if not form.is_valid():
        return home(request, _errors(form))
    album = get_object_or_404(Album, pk=form.cleaned_data["album"])
    try:
        fetched = fetch(
            form.cleaned_data["url"],
            settings=imgproxy_settings(),
            store=settings.GALLERY_FETCH_STORE,
        )
    except ImageProxyError as error:
        return home(request, [(error.code, error.detail)])
    photo = Photo(album=album, title=fetched.filename)
    photo.image.save(fetched.filename, fetched.content_file())  # saves the photo too
    return _done()


@require_POST
def delete_photo(request: HttpRequest, pk: int) -> HttpResponse:
    get_object_or_404(Photo, pk=pk).delete()
    return _done()


@require_POST
def clear_album(request: HttpRequest, pk: int) -> HttpResponse:
    Photo.objects.filter(album_id=pk).delete()  # a queryset: renditions go all the same
    return _done()


@require_POST
def delete_album(request: HttpRequest, pk: int) -> HttpResponse:
    get_object_or_404(Album, pk=pk).delete()  # its photos go by cascade, renditions too
    return _done()
