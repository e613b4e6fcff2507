from django.apps import AppConfig


class WithdrawalConfig(AppConfig):
    name = "nccid.withdrawal"
    label = "withdrawal"
