from django.db import models

from heroshhi import crypto


class EncryptedTextField(models.TextField):
    """Text kept encrypted in the database and plain in Python.

    The stored value is a Fernet token (random IV), so the column can't be
    filtered or compared on: keep such fields out of lookups."""

    def from_db_value(self, value, expression, connection):
        if not value:
            return value
        return crypto.decrypt(value)

    def get_prep_value(self, value):
        value = super().get_prep_value(value)
        if not value:
            return value
        return crypto.encrypt(value)
