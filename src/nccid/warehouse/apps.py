from django.apps import AppConfig


class WarehouseConfig(AppConfig):
    name = "nccid.warehouse"
    label = "warehouse"
