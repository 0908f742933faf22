from django.urls import path
from gallery import views

urlpatterns = [
    path("", views.home),
    path("albums", views.create_album),
    path("albums/<int:pk>/clear", views.clear_album),
    path("albums/<int:pk>/delete", views.delete_album),
    path("photos", views.upload),
    path("photos/fetch", views.fetch_url),
    path("photos/<int:pk>/replace", views.replace),
    path("photos/<int:pk>/delete", views.delete_photo),
]
