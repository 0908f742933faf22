# mypy: disallow-subclassing-any=False
# (Django ships no type information: its base classes are Any to mypy.)
from django.db import models

from imgproxy.contrib.django.validators import ImageValidator


class Album(models.Model):
    name = models.CharField(max_length=100)
    # A FileField, not an ImageField: Django would have Pillow open any format first.
    cover = models.FileField(upload_to="covers/", blank=True, validators=[ImageValidator()])


class Photo(models.Model):
    album = models.ForeignKey(Album, on_delete=models.CASCADE, related_name="photos")
    title = models.CharField(max_length=100, blank=True)
    image = models.FileField(upload_to="photos/", validators=[ImageValidator()])
