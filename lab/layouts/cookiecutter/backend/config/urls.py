"""URLs: only what the lab needs (a health check that touches the database)."""
from django.db import connection
from django.http import JsonResponse
from django.urls import path


def health(request):
    """200 when Django serves and the database answers."""
    with connection.cursor() as cursor:
        cursor.execute("SELECT 1")
    return JsonResponse({"status": "ok"})


urlpatterns = [path("health/", health)]
