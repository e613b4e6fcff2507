from django.apps import AppConfig


class ResearchConfig(AppConfig):
    name = "nccid.research"
    label = "research"
