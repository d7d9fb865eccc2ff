"""Loaded by the lab's moto server before it starts (infra/local/lab.ts). Test infrastructure only; AWS
is not involved. Each patch keeps moto's results and makes a per-call cost that grows with the table
(which DynamoDB does not have) grow with what the call touches.

1. moto 5.2's TransactWriteItems deep-copies every table the transaction names before applying it, to roll
back on failure: O(table) time and garbage per call. kdr writes one per mirrored transaction (the entry
and its writer item), so over a test run the offset table grows and moto's memory climbs by gigabytes.
Here only the items the transaction touches are saved and restored on failure: the same outcome, since
nothing else can change.

2. moto 5.2's Query on a table (not an index) lists and sorts every item of the table, then keeps those
with the queried partition key: O(table log table) per Query. The offset map is queried per partition on
every recovery, checkpoint and failover, so the lab's DynamoDB slowed with each test and benchmark run
(300 partitions mirrored in 54 s on a new table, 170 s four runs later, moto at one full core). Here such
a Query lists only the items of its partition key, in the same order.
"""

import copy
import inspect
import threading

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


_query_scope = threading.local()
_original_all_items = Table.all_items
_original_query = Table.query


def all_items(self):
    hash_key = getattr(_query_scope, "hash_key", None)
    if hash_key is None or getattr(_query_scope, "table", None) is not self:
        return _original_all_items(self)
    found = self.items.get(hash_key)
    if found is None:
        return []
    if not self.range_key_attr:
        return [found]
    return sorted(found.values(), key=lambda x: (x.hash_key, x.range_key) if x.range_key else x.hash_key)


_query_signature = inspect.signature(_original_query)


def query(self, hash_key, *args, **kwargs):
    # Only a query of the table itself keeps its partition key's items; an index query lists them all.
    called = _query_signature.bind(self, hash_key, *args, **kwargs).arguments
    if called.get("index_name") or hash_key is None:
        return _original_query(self, hash_key, *args, **kwargs)
    _query_scope.hash_key, _query_scope.table = hash_key, self
    try:
        return _original_query(self, hash_key, *args, **kwargs)
    finally:
        _query_scope.hash_key = _query_scope.table = None


Table.all_items = all_items
Table.query = query
