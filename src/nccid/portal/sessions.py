"""The portal's session store: Django's database sessions, except that a session saved again
keeps the end it was given when it was made (at signing in, when the key is cycled). Django
moves the end to SESSION_COOKIE_AGE after every save, so a page that stores something in the
session (a withdrawal's result, a message) gave the user another 8 hours, and the end the
header had shown was not the end. Set as SESSION_ENGINE."""

from __future__ import annotations

from django.contrib.sessions.backends import db


class SessionStore(db.SessionStore):
    def create_model_instance(self, data):
        instance = super().create_model_instance(data)
        given = (self.model.objects.filter(session_key=instance.session_key)
                 .values_list("expire_date", flat=True).first())
        if given is not None:
            instance.expire_date = min(given, instance.expire_date)
        return instance

    async def acreate_model_instance(self, data):
        instance = await super().acreate_model_instance(data)
        given = await (self.model.objects.filter(session_key=instance.session_key)
                       .values_list("expire_date", flat=True).afirst())
        if given is not None:
            instance.expire_date = min(given, instance.expire_date)
        return instance
