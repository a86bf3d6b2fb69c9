"""Where webhooks may go (the SSRF guard): public addresses only, unless
`WEBHOOKS_ALLOW_PRIVATE` is set.

A URL names a host; the host is resolved when a request is about to be sent, every address
it resolves to is checked, and the request connects to a checked address itself (never
resolving the name a second time), so a DNS answer that changes between the check and the
connection (DNS rebinding) cannot send it elsewhere. One non-public address among the
answers refuses the host: an attacker who controls the zone chooses which answer a client
would use.
"""

import ipaddress
import socket
from dataclasses import dataclass
from urllib.parse import SplitResult, urlsplit

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address

SCHEMES = ("http", "https")
DEFAULT_PORTS = {"http": 80, "https": 443}


class AddressRefused(Exception):
    """The host is, or resolves to, an address webhooks may not reach."""


class InvalidWebhookUrl(ValueError):
    """A URL no endpoint may have; the message says why, for the caller to show."""


def address_refusal(address: IPAddress) -> str | None:
    """Why webhooks may not reach `address`, or None if they may: loopback, private,
    link-local, shared (CGNAT), multicast, reserved, unspecified and documentation ranges
    are all refused, and so is any IPv4 address inside an IPv6 one that would be."""
    if isinstance(address, ipaddress.IPv6Address):
        embedded = address.ipv4_mapped or (address.sixtofour if address.sixtofour else None)
        if address.teredo:
            embedded = address.teredo[1]
        if embedded is not None:
            reason = address_refusal(embedded)
            return f"{address} embeds {embedded}: {reason}" if reason else None
    if address.is_loopback:
        return f"{address} is a loopback address"
    if address.is_link_local:
        return f"{address} is a link-local address"
    if address.is_multicast:
        return f"{address} is a multicast address"
    if not address.is_global:
        return f"{address} is not a public address"
    return None


@dataclass(frozen=True)
class Target:
    """Where one request goes: the URL's parts and the addresses it may connect to."""

    scheme: str
    host: str
    port: int
    path: str  # with the query
    addresses: tuple[str, ...]


def url_parse(url: str) -> SplitResult:
    """The URL's parts, or InvalidWebhookUrl saying what is wrong with it."""
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError as exc:
        raise InvalidWebhookUrl(f"Not a valid URL: {exc}.") from None
    if parts.scheme not in SCHEMES:
        raise InvalidWebhookUrl("Only http:// and https:// URLs are allowed.")
    if not parts.hostname:
        raise InvalidWebhookUrl("The URL has no host.")
    if parts.username is not None or parts.password is not None:
        raise InvalidWebhookUrl("Credentials in the URL are not allowed.")
    if parts.fragment:
        raise InvalidWebhookUrl("The URL may not have a fragment (#...).")
    if port == 0:
        raise InvalidWebhookUrl("Port 0 is not a port.")
    return parts


def url_check(url: str, *, allow_private: bool) -> None:
    """What registration checks: an http(s) URL with a host; https unless private
    addresses are allowed; a host written as an address must be public. (Names are
    checked when a request is sent: their addresses can change.)"""
    parts = url_parse(url)
    if allow_private:
        return
    if parts.scheme != "https":
        raise InvalidWebhookUrl("The URL must use https://.")
    host = parts.hostname or ""
    if host.rstrip(".").lower() == "localhost" or host.lower().endswith(".localhost"):
        raise InvalidWebhookUrl("localhost is not a public host.")
    try:
        literal = ipaddress.ip_address(host)
    except ValueError:
        return
    reason = address_refusal(literal)
    if reason:
        raise InvalidWebhookUrl(f"Refused: {reason}.")


def target_resolve(url: str, *, allow_private: bool) -> Target:
    """Resolve the URL's host and check every address (unless private ones are allowed);
    AddressRefused if any is refused, OSError if the name does not resolve."""
    try:
        parts = url_parse(url)
    except InvalidWebhookUrl as exc:
        raise AddressRefused(str(exc)) from None
    host = parts.hostname or ""
    port = parts.port or DEFAULT_PORTS[parts.scheme]
    answers = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    addresses: list[str] = []
    for _family, _type, _proto, _name, sockaddr in answers:
        text = str(sockaddr[0]).split("%")[0]  # an IPv6 zone (fe80::1%eth0) is no address
        if not allow_private:
            reason = address_refusal(ipaddress.ip_address(text))
            if reason:
                raise AddressRefused(f"{host} resolves to a refused address: {reason}")
        if text not in addresses:
            addresses.append(text)
    if not addresses:
        raise AddressRefused(f"{host} resolves to no address")
    path = parts.path or "/"
    if parts.query:
        path = f"{path}?{parts.query}"
    return Target(scheme=parts.scheme, host=host, port=port, path=path, addresses=tuple(addresses))
