from django.apps import AppConfig


class ImagingConfig(AppConfig):
    name = "nccid.imaging"
    label = "imaging"

    def ready(self) -> None:
        from nccid.clinical.signals import records_accepted

        from .linking import on_records_accepted

        records_accepted.connect(on_records_accepted, dispatch_uid="imaging-link-pending")
