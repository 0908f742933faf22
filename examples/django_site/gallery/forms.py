# mypy: disallow-subclassing-any=False
# ruff: noqa: RUF012 - Django reads Meta.fields as a plain list
from django import forms

from gallery.models import Photo


class PhotoForm(forms.ModelForm):
    class Meta:
        model = Photo
        fields = ["album", "title", "image"]


class FetchForm(forms.Form):
    album = forms.IntegerField()
    url = forms.CharField(max_length=2000)  # fetch() itself takes http(s) URLs only


class ReplaceForm(forms.ModelForm):
    class Meta:
        model = Photo
        fields = ["image"]
