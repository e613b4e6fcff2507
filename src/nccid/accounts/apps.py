from django.apps import AppConfig


class AccountsConfig(AppConfig):
    name = "nccid.accounts"
    label = "accounts"
    verbose_name = "Sites and accounts"
