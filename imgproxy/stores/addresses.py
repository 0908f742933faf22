"""Which resolved IP addresses an `http` store may connect to (SPEC §7): public unicast
only, unless the config allows private networks or names exact networks to allow.

Judged on the address itself, after unwrapping IPv4 hidden in IPv6 (mapped, compatible,
6to4, NAT64), so no spelling of a host reaches loopback or the metadata service.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable

from imgproxy.errors import ConfigError

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
Network = ipaddress.IPv4Network | ipaddress.IPv6Network

CGNAT = ipaddress.ip_network("100.64.0.0/10")
NAT64 = ipaddress.ip_network("64:ff9b::/96")


def unwrap(address: IPAddress) -> IPAddress:
    """The IPv4 address an IPv6 one carries, if any."""
    if isinstance(address, ipaddress.IPv6Address):
        if address.ipv4_mapped is not None:
            return address.ipv4_mapped
        if address.sixtofour is not None:
            return address.sixtofour
        if address in NAT64:
            return ipaddress.IPv4Address(int(address) & 0xFFFFFFFF)
        packed = int(address)
        if packed >> 32 == 0 and packed > 1:  # deprecated IPv4-compatible ::a.b.c.d
            return ipaddress.IPv4Address(packed)
    return address


def is_public(address: IPAddress) -> bool:
    inner = unwrap(address)
    return not (
        inner.is_private
        or inner.is_loopback
        or inner.is_link_local
        or inner.is_multicast
        or inner.is_unspecified
        or inner.is_reserved
        or (isinstance(inner, ipaddress.IPv4Address) and inner in CGNAT)
        or (isinstance(inner, ipaddress.IPv6Address) and inner.is_site_local)
    )


class AddressPolicy:
    def __init__(self, *, allow_private: bool = False, allowed: Iterable[str] = ()) -> None:
        self.allow_private = allow_private
        self.allowed: tuple[Network, ...] = tuple(_network(text) for text in allowed)

    def permits(self, text: str) -> bool:
        address = ipaddress.ip_address(text.split("%", 1)[0])  # drop an IPv6 zone id
        if self.allow_private:
            return True
        inner = unwrap(address)
        if any(inner in network or address in network for network in self.allowed):
            return True
        return is_public(address)


def _network(text: str) -> Network:
    try:
        return ipaddress.ip_network(text, strict=False)
    except ValueError:
        raise ConfigError(f"allowed_networks: {text!r} is not an IP network") from None
