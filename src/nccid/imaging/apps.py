from django.apps import AppConfig


class ImagingConfig(AppConfig):
    name = "nccid.imaging"
    label = "imaging"
