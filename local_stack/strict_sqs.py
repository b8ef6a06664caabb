"""moto's SQS, made to refuse what Amazon SQS refuses.

moto accepts messages and requests that the real service refuses: it measures a message by the characters of its
body alone (SQS counts the UTF-8 bytes of the body plus every message attribute's name, data type and value),
takes any number of message attributes with any name, type or value, lets a visibility timeout run 12 hours from
when the message was *sent* (SQS: from when it was received) and takes negative timeouts and delays. Every process
that runs moto for this project (the local stack, the component tests, the benchmark's endpoint) calls::

    make_strict()      # idempotent: patches moto's SQS backend class once

after which, through boto3, in-process (``mock_aws``) or in server mode alike::

    sqs.send_message(QueueUrl=url, MessageBody="x" * 1_048_577)
    # ClientError InvalidParameterValue: One or more parameters are invalid. Reason: Message must be shorter
    # than 1048576 bytes.       (the queue's MaximumMessageSize; body and attributes counted as SQS counts them)
    sqs.send_message(QueueUrl=url, MessageBody="x", MessageAttributes=eleven_attributes)
    # ClientError InvalidParameterValue: Number of message attributes [11] exceeds the allowed maximum [10].
    sqs.send_message_batch(QueueUrl=url, Entries=eleven_entries)       # TooManyEntriesInBatchRequest
    sqs.change_message_visibility(QueueUrl=url, ReceiptHandle=handle, VisibilityTimeout=43_200)
    # 12 h after the receive: ClientError InvalidParameterValue: Value 43200 for parameter VisibilityTimeout is
    # invalid. Reason: Total VisibilityTimeout for the message is beyond the limit [43200 seconds]

The rules, with the error each one answers (code as boto3 reports it in ``Error.Code``):

* a message larger than its queue's ``MaximumMessageSize`` (``message_size``): ``InvalidParameterValue``; a
  ``SendMessageBatch`` whose messages add up to more than 1 MiB (``MAX_BATCH_BYTES``, checked before the
  per-message size, as SQS does): ``AWS.SimpleQueueService.BatchRequestTooLong``; a batch of no entry, more than
  10, or with an Id twice: ``...EmptyBatchRequest``, ``...TooManyEntriesInBatchRequest``,
  ``...BatchEntryIdsNotDistinct`` (also for ``ChangeMessageVisibilityBatch`` and ``DeleteMessageBatch``);
* message attributes (``attribute_error``): at most 10; a name of 1 to 255 bytes of ``A-Za-z0-9_-.``, not starting
  or ending with a period, without two periods in a row, not starting with ``AWS.`` or ``Amazon.`` in any case; a
  data type ``String``, ``Number`` or ``Binary``, optionally followed by ``.`` and a custom name, under 256 bytes;
  a ``String`` value not empty; a ``Number`` value a decimal number. ``SendMessage`` answers
  ``InvalidParameterValue``; ``SendMessageBatch`` lists the entry in ``Failed`` (``SenderFault``) and sends the
  others;
* ``DelaySeconds`` from 0 to 900 and ``VisibilityTimeout`` from 0 to 43,200 (``ChangeMessageVisibility`` and
  ``ReceiveMessage``); a visibility that would end more than 12 hours after the receive that returned the message:
  ``InvalidParameterValue`` (per entry in ``ChangeMessageVisibilityBatch``);
* text SQS takes (``text_error``): a body of at least one character, and a body and ``String``/``Number``
  attribute values only of the characters ``#x9 | #xA | #xD | #x20-#xD7FF | #xE000-#xFFFD | #x10000-#x10FFFF``
  (XML's). An empty body: ``MissingParameter``; another character in the body: ``InvalidMessageContents``, in an
  attribute value: ``InvalidParameterValue`` (per entry in ``SendMessageBatch``);
* receipt handles as SQS holds them: each receive hands out a new handle and the older ones go stale.
  ``ChangeMessageVisibility`` with a stale handle (the message was received again since) or the handle of a
  deleted message: ``InvalidParameterValue`` "...Message does not exist or is not available for visibility
  timeout change." (moto changes the visibility of the newer receive, or answers ``ReceiptHandleIsInvalid``); with
  the newest handle of a message whose visibility has already run out: success, and nothing changes (moto hides
  the message again). ``DeleteMessage`` with a stale handle succeeds and deletes nothing: SQS documents that
  without the most recent receipt handle "the request will still succeed, but the message might not be deleted";
  this world takes the "not" (moto deletes the message under its newer receive).

Message sizes: ``Message must be shorter than N bytes`` means at most N bytes (a message of exactly N is taken).
"""

from __future__ import annotations

import functools
import re
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import moto.sqs.responses
from moto.core.utils import unix_time_millis
from moto.sqs.exceptions import (
    BatchEntryIdsNotDistinct,
    InvalidBatchEntryId,
    InvalidParameterValue,
    ReceiptHandleIsInvalid,
    SQSException,
    TooManyEntriesInBatchRequest,
)
from moto.sqs.models import Message, Queue, SQSBackend

MAX_ATTRIBUTES = 10
MAX_BATCH_ENTRIES = 10
MAX_BATCH_BYTES = 1_048_576  # SendMessageBatch: the sum of its messages' sizes
MAX_DELAY_S = 900
MAX_VISIBILITY_S = 43_200
MAX_NAME_BYTES = 255  # SQS: "must be shorter than 256 Bytes"
MAX_TYPE_BYTES = 255

_NAME = re.compile(r"[A-Za-z0-9_.\-]+")
_TYPE = re.compile(r"(String|Number|Binary)(\..*)?", re.DOTALL)
_NUMBER = re.compile(r"[+-]?(\d+\.?\d*|\.\d+)([eE][+-]?\d+)?")
_BATCH_ID = re.compile(r"[A-Za-z0-9_-]{1,80}")
# XML's characters, which SQS allows in bodies and attribute values; anything else is refused
_NOT_SQS_TEXT = re.compile("[^\t\n\r\x20-\ud7ff\ue000-\ufffd\U00010000-\U0010ffff]")
_ALLOWED_TEXT = "#x9 | #xA | #xD | #x20-#xD7FF | #xE000-#xFFFD | #x10000-#x10FFFF"
_RECEIVED_AT = "_strict_received_ms"  # set on a moto Message at each receive
_MARK = "_strict_sqs"


class BatchRequestTooLong(SQSException):
    """A SendMessageBatch over ``MAX_BATCH_BYTES``, as SQS words it."""

    def __init__(self, sent: int) -> None:
        super().__init__(
            "AWS.SimpleQueueService.BatchRequestTooLong",
            f"Batch requests cannot be longer than {MAX_BATCH_BYTES} bytes. You have sent {sent} bytes.",
        )


class InvalidMessageContents(SQSException):
    """A body with a character SQS does not take."""

    def __init__(self, message: str) -> None:
        super().__init__("InvalidMessageContents", message)


class MissingParameter(SQSException):
    """A required parameter sent empty (SQS reads an empty MessageBody as none)."""

    def __init__(self, name: str) -> None:
        super().__init__("MissingParameter", f"The request must contain the parameter {name}.")


def _not_available(receipt_handle: str) -> InvalidParameterValue:
    return InvalidParameterValue(
        f"Value {receipt_handle} for parameter ReceiptHandle is invalid. Reason: Message does not exist or is not "
        "available for visibility timeout change."
    )


def _bad_character(text: str) -> str | None:
    """The first character of ``text`` SQS refuses, as SQS names it (``#x1B``), or None."""
    found = _NOT_SQS_TEXT.search(text)
    return None if found is None else f"#x{ord(found.group()):X}"


def text_error(body: Any, attributes: Mapping[str, Mapping[str, Any]] | None) -> SQSException | None:
    """Why SQS refuses this body or these attribute values as text (its error), or None when it takes them."""
    if body is None or str(body) == "":
        return MissingParameter("MessageBody")
    character = _bad_character(str(body))
    if character is not None:
        return InvalidMessageContents(
            f"Invalid binary character '{character}' was found in the message body, the set of allowed characters "
            f"is {_ALLOWED_TEXT}"
        )
    for name in sorted(attributes or {}):
        value = (attributes or {})[name].get("StringValue")
        character = _bad_character(value) if isinstance(value, str) else None
        if character is not None:
            return InvalidParameterValue(
                f"Invalid binary character '{character}' was found in the value of message (user) attribute "
                f"'{name}', the set of allowed characters is {_ALLOWED_TEXT}"
            )
    return None


def _utf8(value: Any) -> bytes:
    if value is None:
        return b""
    return bytes(value) if isinstance(value, bytes | bytearray) else str(value).encode("utf-8")


def message_size(body: str, attributes: Mapping[str, Mapping[str, Any]] | None) -> int:
    """The size SQS holds against ``MaximumMessageSize``: the body's UTF-8 bytes plus, for each message
    attribute, the bytes of its name, its data type and its value (a binary value counts its raw bytes)."""
    size = len(_utf8(body))
    for name, value in (attributes or {}).items():
        size += len(_utf8(name)) + len(_utf8(value.get("DataType")))
        size += len(_utf8(value.get("StringValue"))) + len(_utf8(value.get("BinaryValue")))
    return size


def _too_long(limit: int) -> InvalidParameterValue:
    return InvalidParameterValue(
        f"One or more parameters are invalid. Reason: Message must be shorter than {limit} bytes."
    )


def _name_error(name: str) -> str | None:
    if len(_utf8(name)) > MAX_NAME_BYTES:
        return "Message (user) attribute names must be shorter than 256 Bytes"
    if not _NAME.fullmatch(name):
        return (
            "Message (user) attributes name can only contain upper and lower score characters, digits, periods, "
            "hyphens and underscores. "
        )
    lower = name.lower()
    if lower.startswith(("aws.", "amazon.", ".")) or lower.endswith("."):
        return (
            "You can't use message attribute names beginning with 'AWS.' or 'Amazon.'. These strings are reserved "
            "for internal use. Additionally, they cannot start or end with '.'."
        )
    if ".." in name:
        return "Message (user) attribute name must not have successive '.' characters."
    return None


def _value_error(name: str, value: Mapping[str, Any]) -> str | None:
    data_type = str(value.get("DataType") or "")
    if not _TYPE.fullmatch(data_type):
        return (
            'Type for parameter MessageAttributes.Attribute_name.DataType must be prefixed with "String", "Binary", '
            f'or "Number", but was: {data_type}'
        )
    if len(_utf8(data_type)) > MAX_TYPE_BYTES:
        return "Message (user) attribute types must be shorter than 256 Bytes"
    base = data_type.split(".", 1)[0]
    text = value.get("StringValue")
    if base == "String" and not text:
        return f"Message (user) attribute '{name}' must contain a non-empty value of type 'String'."
    if base == "Number" and not (isinstance(text, str) and _NUMBER.fullmatch(text)):
        return f"Can't cast the value of message (user) attribute '{name}' to a number."
    if base == "Binary" and not value.get("BinaryValue"):
        return f"Message (user) attribute '{name}' must contain a non-empty value of type 'Binary'."
    return None


def attribute_error(attributes: Mapping[str, Mapping[str, Any]] | None) -> str | None:
    """Why SQS refuses these message attributes (its message), or None when it takes them."""
    attributes = attributes or {}
    if len(attributes) > MAX_ATTRIBUTES:
        return f"Number of message attributes [{len(attributes)}] exceeds the allowed maximum [{MAX_ATTRIBUTES}]."
    for name in sorted(attributes):
        problem = _name_error(name) or _value_error(name, attributes[name])
        if problem:
            return problem
    return None


def _delay_error(delay: Any) -> str | None:
    if delay is None:
        return None
    seconds = int(delay)
    if 0 <= seconds <= MAX_DELAY_S:
        return None
    return f"Value {seconds} for parameter DelaySeconds is invalid. Reason: DelaySeconds must be >= 0 and <= 900."


def _visibility_range_error(seconds: int) -> str | None:
    if 0 <= seconds <= MAX_VISIBILITY_S:
        return None
    return (
        f"Value {seconds} for parameter VisibilityTimeout is invalid. Reason: Must be >= 0 and <= 43200, if provided."
    )


def _check_batch_shape(entries: Sequence[Mapping[str, Any]], action: str) -> None:
    if not entries:
        raise SQSException(
            "AWS.SimpleQueueService.EmptyBatchRequest",
            f"There should be at least one {action}BatchRequestEntry in the request.",
        )
    if len(entries) > MAX_BATCH_ENTRIES:
        raise TooManyEntriesInBatchRequest(len(entries))
    seen: set[str] = set()
    for entry in entries:
        identifier = str(entry.get("Id", ""))
        if identifier in seen:
            raise BatchEntryIdsNotDistinct(identifier)
        seen.add(identifier)
    if any(not _BATCH_ID.fullmatch(str(entry.get("Id", ""))) for entry in entries):
        raise InvalidBatchEntryId()


def _failure(entry_id: str, message: str, code: str = "InvalidParameterValue") -> dict[str, Any]:
    return {"Id": entry_id, "SenderFault": True, "Code": code, "Message": message}


# -- the patched backend methods ----------------------------------------------------------------------------------


def _send_message(original: Callable[..., Any]) -> Callable[..., Any]:
    @functools.wraps(original)
    def send_message(
        self: SQSBackend,
        queue_name: str,
        message_body: str,
        message_attributes: dict[str, Any] | None = None,
        delay_seconds: int | None = None,
        *args: Any,
        **kwargs: Any,
    ) -> Any:
        queue: Queue = self.get_queue(queue_name)
        problem = attribute_error(message_attributes) or _delay_error(delay_seconds)
        if problem:
            raise InvalidParameterValue(problem)
        refusal = text_error(message_body, message_attributes)
        if refusal is not None:
            raise refusal
        limit = int(queue.maximum_message_size)  # type: ignore[attr-defined]
        if message_size(message_body, message_attributes) > limit:
            raise _too_long(limit)
        return original(self, queue_name, message_body, message_attributes, delay_seconds, *args, **kwargs)

    return send_message


def _send_message_batch(original: Callable[..., Any]) -> Callable[..., Any]:
    @functools.wraps(original)
    def send_message_batch(
        self: SQSBackend, queue_name: str, entries: dict[str, dict[str, Any]]
    ) -> tuple[list[Message], list[dict[str, Any]]]:
        queue: Queue = self.get_queue(queue_name)
        _check_batch_shape(list(entries.values()), "SendMessage")
        sizes = [message_size(e.get("MessageBody", ""), e.get("MessageAttributes")) for e in entries.values()]
        if sum(sizes) > MAX_BATCH_BYTES:
            raise BatchRequestTooLong(sum(sizes))
        limit = int(queue.maximum_message_size)  # type: ignore[attr-defined]
        if any(size > limit for size in sizes):
            raise _too_long(limit)
        failed: list[dict[str, Any]] = []
        good: dict[str, dict[str, Any]] = {}
        for key, entry in entries.items():
            problem = attribute_error(entry.get("MessageAttributes")) or _delay_error(entry.get("DelaySeconds"))
            refusal = text_error(entry.get("MessageBody"), entry.get("MessageAttributes"))
            if problem:
                failed.append(_failure(entry["Id"], problem))
            elif refusal is not None:
                failed.append(_failure(entry["Id"], refusal.message, code=refusal.code))
            else:
                good[key] = entry
        if not good:
            return [], failed
        messages, more = original(self, queue_name, good)
        return messages, failed + list(more)

    return send_message_batch


def _visible(message: Message) -> bool:
    """Whether the message can be received now (read afresh each call: a change of visibility changes it)."""
    return message.visible


def _change_message_visibility(self: SQSBackend, queue_name: str, receipt_handle: str, visibility_timeout: int) -> None:
    """moto's, with the 12 hours counted from the receive (moto counts them from the send), the range checked, and
    stale, deleted and run-out handles answered as SQS answers them."""
    seconds = int(visibility_timeout)
    problem = _visibility_range_error(seconds)
    if problem:
        raise InvalidParameterValue(problem)
    queue = self.get_queue(queue_name)
    for message in queue._messages:  # moto's own list of the queue's messages
        if not message.had_receipt_handle(receipt_handle):
            continue
        if receipt_handle != message.receipt_handle:  # received again since: this handle is stale
            raise _not_available(receipt_handle)
        if _visible(message):  # its visibility ran out: SQS answers success and changes nothing
            return
        received_ms = getattr(message, _RECEIVED_AT, None) or unix_time_millis()
        elapsed_s = int(unix_time_millis() - received_ms) // 1000  # whole seconds, as SQS counts the 12 hours
        if elapsed_s + seconds > MAX_VISIBILITY_S:
            raise InvalidParameterValue(
                f"Value {seconds} for parameter VisibilityTimeout is invalid. Reason: Total VisibilityTimeout for "
                f"the message is beyond the limit [{MAX_VISIBILITY_S} seconds]"
            )
        message.change_visibility(seconds)
        if _visible(message) and message in queue.pending_messages:  # 0 seconds: visible again at once
            queue.pending_messages.remove(message)
        return
    if receipt_handle in queue.deleted_messages:
        raise _not_available(receipt_handle)
    raise ReceiptHandleIsInvalid()


def _change_message_visibility_batch(
    self: SQSBackend, queue_name: str, entries: list[dict[str, Any]]
) -> tuple[list[str], list[dict[str, Any]]]:
    _check_batch_shape(entries, "ChangeMessageVisibility")
    success: list[str] = []
    failed: list[dict[str, Any]] = []
    for entry in entries:
        try:
            self.change_message_visibility(queue_name, entry["ReceiptHandle"], int(entry["VisibilityTimeout"]))
        except InvalidParameterValue as exc:
            failed.append(_failure(entry["Id"], exc.message))
        except ReceiptHandleIsInvalid as exc:
            failed.append(
                {"Id": entry["Id"], "SenderFault": True, "Code": "ReceiptHandleIsInvalid", "Message": exc.message}
            )
        else:
            success.append(entry["Id"])
    return success, failed


def _delete_message(original: Callable[..., Any]) -> Callable[..., Any]:
    @functools.wraps(original)
    def delete_message(self: SQSBackend, queue_name: str, receipt_handle: str) -> None:
        queue = self.get_queue(queue_name)
        for message in queue._messages:
            if message.had_receipt_handle(receipt_handle) and receipt_handle != message.receipt_handle:
                return  # a stale handle: the request succeeds, the message stays (its newer receive holds it)
        original(self, queue_name, receipt_handle)

    return delete_message


def _receive_message(original: Callable[..., Any]) -> Callable[..., Any]:
    @functools.wraps(original)
    def receive_message(
        self: SQSBackend, queue_name: str, count: int, wait_seconds_timeout: int, visibility_timeout: int, *args: Any
    ) -> Any:
        if visibility_timeout is not None:
            problem = _visibility_range_error(int(visibility_timeout))
            if problem:
                raise InvalidParameterValue(problem)
        return original(self, queue_name, count, wait_seconds_timeout, visibility_timeout, *args)

    return receive_message


def _delete_message_batch(original: Callable[..., Any]) -> Callable[..., Any]:
    @functools.wraps(original)
    def delete_message_batch(self: SQSBackend, queue_name: str, receipts: list[dict[str, Any]]) -> Any:
        _check_batch_shape(receipts, "DeleteMessage")
        return original(self, queue_name, receipts)

    return delete_message_batch


def _mark_received(original: Callable[..., Any]) -> Callable[..., Any]:
    @functools.wraps(original)
    def mark_received(self: Message, visibility_timeout: int | None = None) -> None:
        setattr(self, _RECEIVED_AT, unix_time_millis())
        original(self, visibility_timeout)

    return mark_received


def _response_attribute_check(original: Callable[[Any], None]) -> Callable[[Any], None]:
    """moto's response layer checks attributes before the backend, with wording of its own: leave to the backend
    (SQS's wording; per entry in a batch) what the strict rules refuse."""

    @functools.wraps(original)
    def validate_message_attributes(message_attributes: Any) -> None:
        if attribute_error(message_attributes) is None:
            original(message_attributes)

    return validate_message_attributes


def make_strict() -> None:
    """Make moto's SQS refuse what SQS refuses, in this process (patches its backend class once)."""
    if getattr(SQSBackend, _MARK, False):
        return
    SQSBackend.send_message = _send_message(SQSBackend.send_message)  # type: ignore[method-assign]
    SQSBackend.send_message_batch = _send_message_batch(SQSBackend.send_message_batch)  # type: ignore[method-assign]
    SQSBackend.change_message_visibility = _change_message_visibility  # type: ignore[method-assign]
    SQSBackend.change_message_visibility_batch = _change_message_visibility_batch  # type: ignore[method-assign]
    SQSBackend.delete_message_batch = _delete_message_batch(SQSBackend.delete_message_batch)  # type: ignore[method-assign]
    SQSBackend.delete_message = _delete_message(SQSBackend.delete_message)  # type: ignore[method-assign]
    SQSBackend.receive_message = _receive_message(SQSBackend.receive_message)  # type: ignore[method-assign]
    Message.mark_received = _mark_received(Message.mark_received)  # type: ignore[method-assign]
    responses: Any = moto.sqs.responses
    responses.validate_message_attributes = _response_attribute_check(responses.validate_message_attributes)
    setattr(SQSBackend, _MARK, True)
