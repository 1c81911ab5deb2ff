"""The DynamoDB conversation store: one item per message, appends that never race each other.

One table (``TWIN_DYNAMODB_TABLE``, default ``twin-conversations``), string
keys ``pk`` (partition) and ``sk`` (sort), a single-table layout::

    pk             sk                              item
    <session_id>   m#<stamp>-<token>#<nnnnn>       message nnnnn of one append: role, content, timestamp
    <session_id>   e#<kind>#<id>                   an owner event of the session (leads, questions)
    <session_id>   summary                         the session's rolling summary
    #<anything>    ...                             owner-wide items (a session id never holds "#")

``<stamp>-<token>`` is the append's name (``twin_aws.keys``): past every
message the writer saw, unique, so one append's messages sort together after
what it read, and two machines appending at once both succeed without either
re-reading. Each message put carries ``attribute_not_exists(sk)``, in one
``TransactWriteItems``: all or nothing, never an overwrite. Items carry
``expires_at`` (epoch seconds) when ``TWIN_SESSION_TTL`` is set. A turn costs
two requests: the window's ``Query`` (which also tells the append the newest
stamp) and the transaction.
"""

from __future__ import annotations

import hashlib
import logging
import random as _random
import re
import threading
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import Any

from twin_aws import dynamodb_items as items_of
from twin_aws.clients import make_client, operation_timeout, require_boto3, translated
from twin_aws.dynamodb_items import MESSAGE_PREFIX, TTL_ATTRIBUTE, table_definition
from twin_aws.dynamodb_events import DynamoDBEvents
from twin_aws.dynamodb_summaries import DynamoDBSummaries
from twin_aws.keys import TurnNamer, check_session_id
from twin_server import ConflictPauses, Message, Settings
from twin_server.errors import BackendError, BackendUnavailable, ConfigurationError, RateLimited, TwinError

__all__ = ["DynamoDBConversationStore"]

log = logging.getLogger("twin_aws.dynamodb")

DEFAULT_TABLE = "twin-conversations"
TABLE_NAME = re.compile(r"[A-Za-z0-9_.-]{3,255}")
BATCH_ITEMS = 25
#: Name collisions (a 32-bit token in the same microsecond) tolerated per append, then the core's retry.
MAX_CONFLICTS = 10
CONFLICT_BASE_DELAY, CONFLICT_MAX_DELAY = 0.01, 0.5
_OFF = {"off", "none", "false", "no", ""}
_THROTTLED = {"ThrottlingError", "ProvisionedThroughputExceeded", "RequestLimitExceeded"}
_REFUSED = {"ValidationError", "ItemCollectionSizeLimitExceeded"}


class _Conflict(Exception):
    """The transaction found one of its sort keys already taken by another message."""


class DynamoDBConversationStore(DynamoDBSummaries, DynamoDBEvents):
    """A ConversationStore keeping each message of a session as one DynamoDB item."""

    def __init__(
        self,
        client: Any,
        table: str = DEFAULT_TABLE,
        *,
        ttl: int | None = None,
        page_size: int | None = None,
        max_conflicts: int = MAX_CONFLICTS,
        clock: Callable[[], float] = time.time,
        sleep: Callable[[float], None] = time.sleep,
        random: _random.Random | None = None,
    ) -> None:
        self.client, self.table, self.ttl = client, table, ttl
        self.page_size, self.max_conflicts = page_size, max_conflicts  # page_size: None is DynamoDB's 1 MB pages
        self._clock, self._random = clock, random or _random.Random()
        self._namer = TurnNamer(clock, self._random)
        self._pauses = ConflictPauses(CONFLICT_BASE_DELAY, CONFLICT_MAX_DELAY, sleep=sleep, random=self._random)
        # Per thread: the newest stamp the last load saw, and the append being written (for the
        # core's retry of a timed-out one to send the very same request). A turn's load and append
        # run on one thread; without them, an append costs one Query more, never correctness.
        self._local = threading.local()

    @classmethod
    def from_config(cls, config: Mapping[str, Any]) -> "DynamoDBConversationStore":
        settings = Settings(config)
        require_boto3("storage backend 'dynamodb'")
        table = (settings.get_str("DYNAMODB_TABLE", DEFAULT_TABLE) or "").strip()
        if not TABLE_NAME.fullmatch(table):
            raise ConfigurationError(f"TWIN_DYNAMODB_TABLE must be 3-255 of A-Z a-z 0-9 _ . -, not {table!r}")
        ttl_value = config.get("SESSION_TTL")
        ttl = None if ttl_value is None or str(ttl_value).strip().lower() in _OFF else settings.get_int(
            "SESSION_TTL", minimum=1)
        client = make_client("dynamodb", operation_timeout(config, "storage"), what="storage backend 'dynamodb'")
        return cls(client, table, ttl=ttl)

    def __repr__(self) -> str:
        return f"DynamoDBConversationStore(table={self.table!r})"

    # -- the ConversationStore protocol --------------------------------------

    def load(self, session_id: str, limit: int | None = None) -> list[Message]:
        """The session's messages, oldest first; the last ``limit`` are one Query, newest first."""
        check_session_id(session_id)
        if limit is not None and limit < 0:
            raise ValueError("limit must not be negative")
        if limit == 0:
            return []
        self._local.seen = None  # a load that fails must not leave an older load's tail for the append
        with self._translated(f"DynamoDB Query of session {session_id}"):
            if limit is None:
                items = list(self._query(session_id, forward=True))
            else:
                items = [item for _, item in zip(range(limit), self._query(session_id, forward=False, limit=limit))]
                items.reverse()
        self._local.seen = (session_id, items_of.newest_stamp(items[-1] if items else None))
        now = self._clock()
        return [m for m in (items_of.parse(item, session_id, now) for item in items) if m is not None]

    def append(self, session_id: str, messages: Sequence[Message]) -> None:
        """Append all of ``messages`` or none of them, whatever other machines append meanwhile."""
        check_session_id(session_id)
        items_of.check(session_id, messages)
        if not messages:
            return
        lines = [message.to_json_line() for message in messages]
        digest = hashlib.sha256(session_id.encode() + b"\n" + b"\n".join(lines)).hexdigest()
        attempt = getattr(self._local, "attempt", None)
        if attempt is not None and attempt[:2] == (session_id, digest):
            name, items = attempt[2], attempt[3]  # the core retrying a failed try: the same request again
        else:
            name = self._namer.name(self._seen(session_id))
            items = self._items(session_id, name, messages)
        for lost in self._pauses.tries(self.max_conflicts):
            if lost:  # the name was taken meanwhile: a new one past the session's tail
                name = self._namer.name(self._tail_stamp(session_id))
                items = self._items(session_id, name, messages)
            self._local.attempt = (session_id, digest, name, items)
            try:
                self._write(items, digest + name)
            except _Conflict:
                log.debug("append name taken in session %s; renaming it", session_id)
                continue
            self._local.attempt = None
            return
        self._local.attempt = None
        raise BackendUnavailable(f"DynamoDB store could not append to session {session_id}: "
                                 f"{self.max_conflicts} name collisions in a row")

    def delete(self, session_id: str) -> bool:
        """Erase every item of the session (messages, events, summary); True when there was one."""
        check_session_id(session_id)
        with self._translated(f"DynamoDB delete of session {session_id}"):
            keys = [{"pk": item["pk"], "sk": item["sk"]}
                    for item in self._query(session_id, forward=True, prefix=None, keys_only=True)]
            self._delete_keys([key for key in keys if key != self._summary_key(session_id)])
        # Last, whether the Query saw one or not: a summary saved while the messages went is removed here,
        # or by its own writer, which finds them gone (save_summary).
        self._erase_summary(session_id)
        return bool(keys)

    def provision(self) -> list[str]:
        """Create the table (on-demand billing) and turn on its TTL, unless they exist; what was done."""
        done: list[str] = []
        with self._translated(f"DynamoDB provisioning of table {self.table!r}"):
            try:
                self.client.describe_table(TableName=self.table)
            except self.client.exceptions.ResourceNotFoundException:
                try:
                    self.client.create_table(**table_definition(self.table))
                    done.append(f"created table {self.table} (on-demand billing)")
                except self.client.exceptions.ResourceInUseException:
                    pass  # created meanwhile by another `init`
                self.client.get_waiter("table_exists").wait(
                    TableName=self.table, WaiterConfig={"Delay": 1, "MaxAttempts": 120})
            ttl = self.client.describe_time_to_live(TableName=self.table)["TimeToLiveDescription"]
            if ttl.get("TimeToLiveStatus") not in ("ENABLED", "ENABLING"):
                self.client.update_time_to_live(
                    TableName=self.table, TimeToLiveSpecification={"Enabled": True, "AttributeName": TTL_ATTRIBUTE})
                done.append(f"enabled TTL on {TTL_ATTRIBUTE}")
            elif ttl.get("AttributeName") != TTL_ATTRIBUTE:
                raise ConfigurationError(f"table {self.table!r} already expires items by "
                                         f"{ttl.get('AttributeName')!r}; twin-server writes {TTL_ATTRIBUTE!r}")
        return done

    # -- DynamoDB calls ----------------------------------------------------------

    def _query(self, session_id: str, *, forward: bool, limit: int | None = None,
               prefix: str | None = MESSAGE_PREFIX, keys_only: bool = False) -> Iterator[dict]:
        """The session's items in sort-key order, page after page (a page ends at 1 MB or ``limit``)."""
        params: dict[str, Any] = {
            "TableName": self.table, "ScanIndexForward": forward, "ConsistentRead": True,
            "KeyConditionExpression": "pk = :pk", "ExpressionAttributeValues": {":pk": {"S": session_id}},
        }
        if prefix is not None:
            params["KeyConditionExpression"] += " AND begins_with(sk, :prefix)"
            params["ExpressionAttributeValues"][":prefix"] = {"S": prefix}
        if keys_only:
            params["ProjectionExpression"] = "pk, sk"
        if limit is not None or self.page_size is not None:
            params["Limit"] = min(n for n in (limit, self.page_size) if n is not None)
        while True:
            page = self.client.query(**params)
            yield from page.get("Items", ())
            if "LastEvaluatedKey" not in page:
                return
            params["ExclusiveStartKey"] = page["LastEvaluatedKey"]

    def _seen(self, session_id: str) -> int:
        """The newest stamp in the session: what this thread's load saw, else one Query."""
        seen = getattr(self._local, "seen", None)
        self._local.seen = None
        if seen is not None and seen[0] == session_id:
            return seen[1]
        return self._tail_stamp(session_id)

    def _tail_stamp(self, session_id: str) -> int:
        with self._translated(f"DynamoDB Query of session {session_id}"):
            newest = next(self._query(session_id, forward=False, limit=1, keys_only=True), None)
        return items_of.newest_stamp(newest)

    def _items(self, session_id: str, name: str, messages: Sequence[Message]) -> list[dict]:
        expires_at = int(self._clock()) + self.ttl if self.ttl else None
        return items_of.message_items(session_id, name, messages, expires_at)

    def _write(self, items: list[dict], token: str) -> None:
        """Put every item, each only where no item is; raises _Conflict when one was taken."""
        batches = list(items_of.transactions(items))
        try:
            for number, batch in enumerate(batches):
                self._transact(batch, hashlib.sha256(f"{token}#{number}".encode()).hexdigest()[:36])
        except BaseException:
            if len(batches) > 1:  # more than one transaction: take back what the others wrote
                self._roll_back(items)
            raise

    def _transact(self, items: list[dict], token: str) -> None:
        puts = [{"Put": {"TableName": self.table, "Item": item, "ConditionExpression": "attribute_not_exists(sk)",
                         "ReturnValuesOnConditionCheckFailure": "ALL_OLD"}} for item in items]
        with self._translated(f"DynamoDB TransactWriteItems on session {items[0]['pk']['S']}"):
            try:
                self.client.transact_write_items(TransactItems=puts, ClientRequestToken=token)
            except self.client.exceptions.TransactionCanceledException as exc:
                reasons = exc.response.get("CancellationReasons") or []
                taken = [(r, i) for r, i in zip(reasons, items) if r.get("Code") == "ConditionalCheckFailed"]
                if not taken:
                    raise
                if len(taken) == len(items) and all(r.get("Item") == i for r, i in taken):
                    return  # a retry of a transaction whose first try was applied: already stored
                raise _Conflict() from None

    def _roll_back(self, items: list[dict]) -> None:
        try:
            with self._translated(f"DynamoDB roll-back on session {items[0]['pk']['S']}"):
                self._delete_keys([{"pk": item["pk"], "sk": item["sk"]} for item in items])
        except TwinError:
            log.error("could not take back a partly written append of %d messages", len(items))

    def _delete_keys(self, keys: list[dict]) -> None:
        """BatchWriteItem deletes, 25 at a time; what DynamoDB leaves unprocessed goes in a later batch."""
        queue = [{"DeleteRequest": {"Key": key}} for key in keys]
        while queue:
            batch, queue = queue[:BATCH_ITEMS], queue[BATCH_ITEMS:]
            response = self.client.batch_write_item(RequestItems={self.table: batch})
            left = (response.get("UnprocessedItems") or {}).get(self.table, [])
            if len(left) == len(batch):  # no progress at all: let the core back off and retry the delete
                raise BackendUnavailable(f"DynamoDB processed none of {len(batch)} deletes in {self.table!r}")
            queue.extend(left)

    def _translated(self, action: str):
        return translated(action, self._special)

    def _special(self, code: str, exc: Any) -> TwinError | None:
        said = str((exc.response.get("Error") or {}).get("Message") or "")[:300]
        if code == "resourcenotfoundexception":
            region = getattr(self.client.meta, "region_name", "?")
            return BackendError(f"DynamoDB table {self.table!r} does not exist in {region}: "
                                "create it with `twin-server init` (see docs/aws.md)")
        if code == "accessdeniedexception":
            return BackendError(f"DynamoDB refused access to table {self.table!r} ({said}); "
                                "docs/aws.md lists the IAM permissions the server needs")
        if code == "transactioncanceledexception":
            return _cancelled({r.get("Code") for r in exc.response.get("CancellationReasons") or []}, said)
        return None


def _cancelled(codes: set[str], said: str) -> TwinError:
    where = f"DynamoDB cancelled the transaction ({', '.join(sorted(codes - {'None'})) or 'no reason'})"
    if codes & _THROTTLED:
        return RateLimited(where)
    if codes & _REFUSED:
        return BackendError(f"{where}: {said}")
    return BackendUnavailable(where)  # TransactionConflict: another transaction held an item
