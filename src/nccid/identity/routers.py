"""Route the key vault's models to the separate 'vault' database and everything else away from it."""

VAULT_APP = "identity"


class VaultRouter:
    def db_for_read(self, model, **hints):
        return "vault" if model._meta.app_label == VAULT_APP else "default"

    db_for_write = db_for_read

    def allow_relation(self, obj1, obj2, **hints):
        return (obj1._meta.app_label == VAULT_APP) == (obj2._meta.app_label == VAULT_APP)

    def allow_migrate(self, db, app_label, model_name=None, **hints):
        if app_label == VAULT_APP:
            return db == "vault"
        return db == "default"
