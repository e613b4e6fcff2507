from django.apps import AppConfig


class PortalConfig(AppConfig):
    name = "nccid.portal"
    label = "portal"
