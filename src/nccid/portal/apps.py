from django.apps import AppConfig


class PortalConfig(AppConfig):
    name = "nccid.portal"
    label = "portal"

    def ready(self) -> None:
        from . import summary

        summary.connect_signals()
