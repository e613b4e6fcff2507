from django.apps import AppConfig


class IdentityConfig(AppConfig):
    name = "nccid.identity"
    label = "identity"
    verbose_name = "Key vault"
