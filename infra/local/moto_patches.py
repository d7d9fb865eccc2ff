"""Loaded by the lab's moto server before it starts (infra/local/lab.ts).

moto 5.2's TransactWriteItems deep-copies every table the transaction names before applying it, to roll
back on failure: O(table) time and garbage per call. kdr writes one per mirrored transaction (the entry
and its writer item), so over a test run the offset table grows and moto's memory climbs by gigabytes.
Here only the items the transaction touches are saved and restored on failure: the same outcome, since
nothing else can change. Test infrastructure only; AWS is not involved.
"""

import copy

import moto.dynamodb.models as models
from moto.dynamodb.models import DynamoDBBackend
from moto.dynamodb.models.dynamo_type import DynamoType
from moto.dynamodb.models.table import Table

_original = DynamoDBBackend.transact_write_items


class _TablesUncopied:
    """The copy module, except that a Table is not deep-copied (its touched items are saved instead)."""

    def __getattr__(self, name):
        return getattr(copy, name)

    @staticmethod
    def deepcopy(value, memo=None):
        return value if isinstance(value, Table) else copy.deepcopy(value, memo)


def _key(table, op):
    attrs = op.get("Key") or op.get("Item") or {}
    hash_value = attrs.get(table.hash_key_attr)
    range_value = attrs.get(table.range_key_attr) if table.range_key_attr else None
    return (
        DynamoType(hash_value) if hash_value is not None else None,
        DynamoType(range_value) if range_value is not None else None,
    )


def _current(table, hash_value, range_value):
    found = table.items.get(hash_value)
    if range_value is None or found is None:
        return found
    return found.get(range_value)


def _restore(table, hash_value, range_value, item):
    if range_value is None:
        if item is None:
            table.items.pop(hash_value, None)
        else:
            table.items[hash_value] = item
        return
    if item is None:
        table.items.get(hash_value, {}).pop(range_value, None)
    else:
        table.items[hash_value][range_value] = item


def transact_write_items(self, transact_items):
    saved = []
    for entry in transact_items:
        _, op = next(iter(entry.items()))
        table = self.tables.get(op.get("TableName"))
        if table is None:
            continue
        hash_value, range_value = _key(table, op)
        if hash_value is not None:
            saved.append((table, hash_value, range_value, copy.deepcopy(_current(table, hash_value, range_value))))
    models.copy = _TablesUncopied()
    try:
        return _original(self, transact_items)
    except Exception:
        for table, hash_value, range_value, item in reversed(saved):
            _restore(table, hash_value, range_value, item)
        raise
    finally:
        models.copy = copy


DynamoDBBackend.transact_write_items = transact_write_items
