"""A workspace's settings: identity bridging and privacy controls (pure: no I/O, no clock).

Stored with the workspace's connection (``settings`` in its secret, set by the connection ``PUT``) and cached
with it; a connection without settings has the defaults, which are the forwarder's behaviour before settings
existed::

    settings = WorkspaceSettings.from_dict({"ip": "truncate", "consent_category": "Analytics"})
    settings.forwards("assignment")                    # True: Experiment Viewed is forwarded
    settings.grants({"consent": {"categoryPreferences": {"Analytics": True}}})   # True
    settings.shape_context({"ip": "203.0.113.7", "userAgent": "Mozilla/5.0"})
    # {"ip": "203.0.113.0", "userAgent": "Mozilla/5.0"}
    settings.as_dict()                                 # the effective settings, defaults filled in

=====================  ====================================  ===================================================
setting                values (default first)                effect
=====================  ====================================  ===================================================
``anonymous_id``       ``visitor_id`` | ``segment``          ``segment``: an event's ``segment_anonymous_id``
                                                             becomes ``anonymousId``, the visitor id a trait /
                                                             property ``visitor_id`` (content)
``ip``                 ``pass`` | ``truncate`` | ``drop``    ``context.ip``: as given, IPv4 /24 or IPv6 /48 (an
                                                             IPv4 address inside an IPv6 one: its /24), or
                                                             removed (context)
``user_agent``         ``pass`` | ``drop``                   ``context.userAgent`` (and ``userAgentData``) kept
                                                             or removed (context)
``consent_category``   none | a category id                  an event whose ``context.consent``
                                                             ``.categoryPreferences`` does not grant it is
                                                             skipped (``no_consent``)
``events``             all of ``identify``,                  the kinds of message forwarded; an event whose own
                       ``experiment_viewed``,                kind is not forwarded is skipped (``not_forwarded``)
                       ``conversion_triggered``
``spec_names``         ``true`` | ``false``                  Segment's A/B spec names on Experiment Viewed
=====================  ====================================  ===================================================

Settings never change a dedup key or a messageId: those are per workspace, platform visitor id and fact.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Final, Literal, cast

from .errors import RequestError
from .messages import usable_id

AnonymousIdSource = Literal["visitor_id", "segment"]
IpPolicy = Literal["pass", "truncate", "drop"]
UserAgentPolicy = Literal["pass", "drop"]
MessageKind = Literal["identify", "experiment_viewed", "conversion_triggered"]

ANONYMOUS_ID_SOURCES: Final[tuple[AnonymousIdSource, ...]] = ("visitor_id", "segment")
IP_POLICIES: Final[tuple[IpPolicy, ...]] = ("pass", "truncate", "drop")
USER_AGENT_POLICIES: Final[tuple[UserAgentPolicy, ...]] = ("pass", "drop")
MESSAGE_KINDS: Final[tuple[MessageKind, ...]] = ("identify", "experiment_viewed", "conversion_triggered")
# The message kind each ingest route exists for (its event's "own" message).
KIND_OF_EVENT: Final[dict[str, MessageKind]] = {
    "identify": "identify",
    "assignment": "experiment_viewed",
    "conversion": "conversion_triggered",
}
MAX_CONSENT_CATEGORY_CHARS: Final = 100
IPV4_PREFIX: Final = 24
IPV6_PREFIX: Final = 48
_PRINTABLE = re.compile("^[^\x00-\x1f\x7f-\x9f]+$")
# context keys that carry the browser's identity: the user agent string and its client hints (analytics.js)
USER_AGENT_KEYS: Final = ("userAgent", "userAgentData")


class SettingsError(RequestError):
    """Settings that cannot be used (code ``invalid_value``); ``field`` names the offending one (``settings.ip``).
    The message names the field and the rule, never the value."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__("invalid_value", f"{field} {message}", field)


@dataclass(frozen=True, slots=True)
class WorkspaceSettings:
    """One workspace's settings; the defaults reproduce the forwarder's behaviour without settings.

    ``events`` is kept in the canonical order of ``MESSAGE_KINDS`` whatever order it was given in.
    """

    anonymous_id: AnonymousIdSource = "visitor_id"
    ip: IpPolicy = "pass"
    user_agent: UserAgentPolicy = "pass"
    consent_category: str | None = None
    events: tuple[MessageKind, ...] = MESSAGE_KINDS
    spec_names: bool = True

    def __post_init__(self) -> None:
        object.__setattr__(self, "events", tuple(kind for kind in MESSAGE_KINDS if kind in self.events))

    @classmethod
    def from_dict(cls, data: Any) -> WorkspaceSettings:
        """Settings from their JSON object (the connection ``PUT``'s ``settings``, or the secret's); a missing
        setting takes its default. Raises SettingsError naming the first offending field::

            WorkspaceSettings.from_dict({"ip": "drop"}).ip          # "drop"
            WorkspaceSettings.from_dict({"ip": "mask"})             # SettingsError: settings.ip must be one of ...
        """
        if not isinstance(data, Mapping):
            raise SettingsError("settings", "must be an object")
        unknown = sorted(set(data) - set(cls.__dataclass_fields__))
        if unknown:
            raise SettingsError(f"settings.{unknown[0]}", "is not a known setting")
        consent = data.get("consent_category")
        if consent is not None and not _is_category(consent):
            raise SettingsError(
                "settings.consent_category",
                f"must be 1-{MAX_CONSENT_CATEGORY_CHARS} printable characters, not blank",
            )
        spec_names = data.get("spec_names", True)
        if not isinstance(spec_names, bool):
            raise SettingsError("settings.spec_names", "must be true or false")
        return cls(
            anonymous_id=_choice(data, "anonymous_id", ANONYMOUS_ID_SOURCES),
            ip=_choice(data, "ip", IP_POLICIES),
            user_agent=_choice(data, "user_agent", USER_AGENT_POLICIES),
            consent_category=consent,
            events=_events(data.get("events", MESSAGE_KINDS)),
            spec_names=spec_names,
        )

    def as_dict(self) -> dict[str, Any]:
        """The effective settings as JSON (what the connection ``GET`` shows); ``consent_category`` only when set.

        ``WorkspaceSettings.from_dict(settings.as_dict()) == settings`` always holds.
        """
        data: dict[str, Any] = {
            "anonymous_id": self.anonymous_id,
            "ip": self.ip,
            "user_agent": self.user_agent,
            "events": list(self.events),
            "spec_names": self.spec_names,
        }
        if self.consent_category is not None:
            data["consent_category"] = self.consent_category
        return data

    def forwards(self, event_kind: str) -> bool:
        """Whether the message an ingest event exists for (``identify`` → Identify, ``assignment`` → Experiment
        Viewed, ``conversion`` → Conversion Triggered) is forwarded."""
        return KIND_OF_EVENT[event_kind] in self.events

    @property
    def identifies(self) -> bool:
        """Whether Identify messages (the first-seen Identify and the user links) are forwarded."""
        return "identify" in self.events

    def grants(self, context: Mapping[str, Any]) -> bool:
        """Whether an event with this ``context`` may be forwarded: always without a ``consent_category``, else
        only when ``context.consent.categoryPreferences[consent_category]`` is ``true`` (Segment's consent object;
        a category that is missing, not a boolean or ``false`` is not granted)."""
        if self.consent_category is None:
            return True
        consent = context.get("consent")
        preferences = consent.get("categoryPreferences") if isinstance(consent, Mapping) else None
        return isinstance(preferences, Mapping) and preferences.get(self.consent_category) is True

    def shape_context(self, context: Mapping[str, Any]) -> dict[str, Any]:
        """The context to send for an event's ``context``: ``ip`` and the user agent kept, truncated or removed as
        set; everything else (``consent`` included) as given. The caller's mapping is not changed."""
        shaped = dict(context)
        if self.ip != "pass" and "ip" in shaped:
            truncated = truncate_ip(shaped["ip"]) if self.ip == "truncate" else None
            if truncated is None:
                del shaped["ip"]
            else:
                shaped["ip"] = truncated  # in its place: the context keeps its order
        if self.user_agent == "drop":
            for key in USER_AGENT_KEYS:
                shaped.pop(key, None)
        return shaped


DEFAULT_SETTINGS: Final = WorkspaceSettings()


def truncate_ip(value: Any) -> str | None:
    """An IP address with its host part zeroed: IPv4 to its /24, IPv6 to its /48; None for anything that is not
    an IP address (it is then dropped)::

        truncate_ip("203.0.113.7")           # "203.0.113.0"
        truncate_ip("2001:db8:abcd:12::1")   # "2001:db8:abcd::"
        truncate_ip("2002:cb00:7107::1")     # "203.0.113.0": 6to4, the IPv4 address 203.0.113.7 inside
        truncate_ip("not an ip")             # None

    An IPv6 address that carries an IPv4 address where its /48 would keep some of it is truncated as that IPv4
    address and sent as its /24 (``embedded_ipv4``): IPv4-mapped, 6to4 and NAT64 (``64:ff9b::/96``). A Teredo
    address (``2001::/32``) goes as its client's /24: its server's address is dropped with everything else. What
    is sent never tells more about the visitor's IPv4 address than that address's /24. Other forms need nothing
    more: an IPv4-compatible address (``::a.b.c.d``), the NAT64 local-use prefix ``64:ff9b:1::/48`` and ISATAP
    carry the IPv4 address outside the /48, so their truncation keeps none of it.
    """
    if not isinstance(value, str):
        return None
    try:
        address = ipaddress.ip_address(value.strip())
    except ValueError:
        return None
    if isinstance(address, ipaddress.IPv6Address):
        address = embedded_ipv4(address) or address
    if isinstance(address, ipaddress.IPv4Address):
        return str(ipaddress.IPv4Address(int(address) & _mask(32, IPV4_PREFIX)))
    return str(ipaddress.IPv6Address(int(address) & _mask(128, IPV6_PREFIX)))  # a zone (%eth0) goes too


NAT64_PREFIX: Final = ipaddress.IPv6Network("64:ff9b::/96")  # the well-known prefix (RFC 6052)


def embedded_ipv4(address: ipaddress.IPv6Address) -> ipaddress.IPv4Address | None:
    """The visitor's IPv4 address inside an IPv6 address whose /48 would reveal some of it, else None
    (Teredo's client address, its obfuscation undone; never its server's)::

        embedded_ipv4(IPv6Address("::ffff:203.0.113.7"))                    # 203.0.113.7 (IPv4-mapped)
        embedded_ipv4(IPv6Address("2002:cb00:7107::1"))                     # 203.0.113.7 (6to4)
        embedded_ipv4(IPv6Address("2001:0:4136:e378:8000:63bf:3fff:fdd2"))  # 192.0.2.45 (Teredo)
        embedded_ipv4(IPv6Address("64:ff9b::cb00:7107"))                    # 203.0.113.7 (NAT64)
        embedded_ipv4(IPv6Address("2001:db8::1"))                           # None
    """
    if address.ipv4_mapped is not None:
        return address.ipv4_mapped
    if address.sixtofour is not None:
        return address.sixtofour
    if address.teredo is not None:
        return address.teredo[1]  # (server, client): the client, its obfuscation (xor 0xffffffff) undone
    if address in NAT64_PREFIX:
        return ipaddress.IPv4Address(int(address) & 0xFFFFFFFF)
    return None


def _mask(bits: int, prefix: int) -> int:
    return ((1 << prefix) - 1) << (bits - prefix)


def _is_category(value: Any) -> bool:
    return (
        isinstance(value, str)
        and 1 <= len(value) <= MAX_CONSENT_CATEGORY_CHARS
        and bool(_PRINTABLE.match(value))
        and usable_id(value)
    )


def _choice[T: str](data: Mapping[str, Any], name: str, allowed: tuple[T, ...]) -> T:
    value = data.get(name, allowed[0])
    if value not in allowed:
        raise SettingsError(f"settings.{name}", f"must be one of {', '.join(allowed)}")
    return cast(T, value)


def _events(value: Any) -> tuple[MessageKind, ...]:
    if not isinstance(value, list | tuple) or not value:
        raise SettingsError("settings.events", f"must be a non-empty list of {', '.join(MESSAGE_KINDS)}")
    for index, kind in enumerate(value):
        if kind not in MESSAGE_KINDS:
            raise SettingsError(f"settings.events.{index}", f"must be one of {', '.join(MESSAGE_KINDS)}")
        if kind in value[:index]:
            raise SettingsError(f"settings.events.{index}", "repeats an earlier kind")
    return tuple(value)
