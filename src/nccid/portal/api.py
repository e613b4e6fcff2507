"""The JSON API (django-ninja) with its OpenAPI schema at /api/docs and /api/openapi.json."""

from ninja import NinjaAPI

api = NinjaAPI(title="nccid API", version="1", urls_namespace="api")
