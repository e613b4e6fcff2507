from django.apps import AppConfig


class WarehouseConfig(AppConfig):
    name = "nccid.warehouse"
    label = "warehouse"
    verbose_name = "Warehouse"

    def ready(self) -> None:
        from nccid.clinical.signals import records_accepted

        from .service import on_records_accepted

        records_accepted.connect(on_records_accepted, dispatch_uid="warehouse-clinical-json")
