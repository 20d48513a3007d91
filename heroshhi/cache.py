"""A database cache whose ``incr`` is atomic, for rate limits without Redis.

Django's DatabaseCache inherits ``incr`` from BaseCache: a read, then a ``set``
that also resets the entry's expiry to the default timeout. Two processes can
read the same count and both write count + 1, and a 15-minute window can lose
its count after 5 minutes. Here the increment reads the row under a lock inside
one transaction (``SELECT … FOR UPDATE`` on PostgreSQL; SQLite's IMMEDIATE
transactions take the write lock up front) and keeps the row's expiry.

The embedded default uses it; production uses Redis, whose INCR is exact.
"""

import base64
import pickle

from django.core.cache.backends.db import DatabaseCache
from django.db import connections, models, router, transaction
from django.utils.timezone import now


class AtomicDatabaseCache(DatabaseCache):
    def incr(self, key, delta=1, version=None):
        key = self.make_and_validate_key(key, version=version)
        db = router.db_for_write(self.cache_model_class)
        connection = connections[db]
        quote_name = connection.ops.quote_name
        table = quote_name(self._table)
        lock = " FOR UPDATE" if connection.features.has_select_for_update else ""
        # Identifiers are quoted by the backend; values are bound parameters.
        select = f"SELECT {quote_name('value')}, {quote_name('expires')} FROM {table} WHERE {quote_name('cache_key')} = %s{lock}"  # noqa: E501, S608
        update = f"UPDATE {table} SET {quote_name('value')} = %s WHERE {quote_name('cache_key')} = %s"  # noqa: S608
        with transaction.atomic(using=db), connection.cursor() as cursor:
            cursor.execute(select, [key])
            row = cursor.fetchone()
            if row is None or _as_aware(row[1], connection) < now():
                raise ValueError(f"Key '{key}' not found")
            # Only this cache writes the table, as Django's DatabaseCache does.
            value = pickle.loads(  # noqa: S301
                base64.b64decode(connection.ops.process_clob(row[0]).encode())
            )
            new_value = value + delta
            pickled = base64.b64encode(pickle.dumps(new_value, self.pickle_protocol)).decode("latin1")
            cursor.execute(update, [pickled, key])
        return new_value


def _as_aware(expires, connection):
    expression = models.Expression(output_field=models.DateTimeField())
    converters = connection.ops.get_db_converters(expression) + expression.get_db_converters(connection)
    for converter in converters:
        expires = converter(expires, expression, connection)
    return expires
