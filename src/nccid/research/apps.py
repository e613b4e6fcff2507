from django.apps import AppConfig


class ResearchConfig(AppConfig):
    name = "nccid.research"
    label = "research"

    def ready(self) -> None:
        # A portal worker replacing one killed mid-export, a restarted portal, any command:
        # the staging folders of exports no live process holds go (nccid.research.staging).
        from .staging import sweep_at_start

        sweep_at_start()
