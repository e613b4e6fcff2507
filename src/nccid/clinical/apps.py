from django.apps import AppConfig


class ClinicalConfig(AppConfig):
    name = "nccid.clinical"
    label = "clinical"
