from django.apps import AppConfig


class AccountsConfig(AppConfig):
    name = "nccid.accounts"
    label = "accounts"
    verbose_name = "Sites and accounts"

    def ready(self) -> None:
        from .signals import connect

        connect()  # every change to an account's password or access is audited
