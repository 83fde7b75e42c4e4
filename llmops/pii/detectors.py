"""Detectors for personal data and leaked secrets: a compiled pattern that finds candidates cheaply,
then a validator that rejects what only looks like one (Luhn for cards, mod-97 for IBANs, SSN
area/group/serial rules, IPv4 octets, a JWT header that decodes to JSON with an `alg`).

Entity types are named as Presidio names them. Offsets are character offsets in the text given.
"""

from __future__ import annotations

import base64
import binascii
import bisect
import ipaddress
import json
import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass


@dataclass(frozen=True)
class Match:
    start: int
    end: int  # exclusive
    entity_type: str
    detector: str


@dataclass(frozen=True)
class Detector:
    entity_type: str
    name: str
    pattern: re.Pattern[str]
    validate: Callable[[str], bool] = lambda text: True
    # A cheap pattern for where a match can be (an '@', a run of digits): the full pattern runs only in
    # windows around it, `margin` characters wide on each side. Most of a log line is never looked at twice.
    prefilter: re.Pattern[str] | None = None
    margin: int = 0

    def _windows(self, text: str) -> Iterator[tuple[int, int]]:
        if self.prefilter is None:
            yield 0, len(text)
            return
        start = end = -1
        for hit in self.prefilter.finditer(text):
            a, b = max(0, hit.start() - self.margin), min(len(text), hit.end() + self.margin)
            if a <= end:
                end = max(end, b)
                continue
            if end >= 0:
                yield start, end
            start, end = a, b
        if end >= 0:
            yield start, end

    def find(self, text: str) -> Iterator[Match]:
        last = -1
        for a, b in self._windows(text):
            for found in self.pattern.finditer(text, a, b):
                if found.start() < last:
                    continue
                if self.validate(found.group()):
                    last = found.end()
                    yield Match(found.start(), found.end(), self.entity_type, self.name)


def luhn(number: str) -> bool:
    digits = [int(c) for c in number if c.isdigit()]
    if not 13 <= len(digits) <= 19:
        return False
    total = 0
    for index, digit in enumerate(reversed(digits)):
        if index % 2:
            digit *= 2
            if digit > 9:
                digit -= 9
        total += digit
    return total % 10 == 0


def valid_ssn(value: str) -> bool:
    area, group, serial = value[0:3], value[4:6], value[7:11]
    return area not in ("000", "666") and not area.startswith("9") and group != "00" and serial != "0000"


_IBAN_LENGTHS = {
    "AD": 24, "AE": 23, "AT": 20, "BE": 16, "BG": 22, "CH": 21, "CY": 28, "CZ": 24, "DE": 22, "DK": 18, "EE": 20,
    "ES": 24, "FI": 18, "FR": 27, "GB": 22, "GI": 23, "GR": 27, "HR": 21, "HU": 28, "IE": 22, "IL": 23, "IS": 26,
    "IT": 27, "LI": 21, "LT": 20, "LU": 20, "LV": 21, "MC": 27, "MT": 31, "NL": 18, "NO": 15, "PL": 28, "PT": 25,
    "RO": 24, "SA": 24, "SE": 24, "SI": 19, "SK": 24, "SM": 27, "TR": 26,
}


def valid_iban(value: str) -> bool:
    compact = value.replace(" ", "").upper()
    if _IBAN_LENGTHS.get(compact[:2]) != len(compact):
        return False
    rearranged = compact[4:] + compact[:4]
    return int("".join(str(int(c, 36)) for c in rearranged)) % 97 == 1


def valid_ipv4(value: str) -> bool:
    octets = value.split(".")
    return len(octets) == 4 and all(o.isdigit() and int(o) <= 255 and (o == "0" or not o.startswith("0")) for o in octets)


def valid_ipv6(value: str) -> bool:
    if value.count(":") < 2:
        return False
    try:
        ipaddress.IPv6Address(value)
    except ValueError:
        return False
    return True


def valid_jwt(value: str) -> bool:
    header = value.split(".", 1)[0]
    try:
        decoded = json.loads(base64.urlsafe_b64decode(header + "=" * (-len(header) % 4)))
    except (ValueError, binascii.Error, UnicodeDecodeError):
        return False
    return isinstance(decoded, dict) and "alg" in decoded


def valid_phone(value: str) -> bool:
    digits = sum(c.isdigit() for c in value)
    return 10 <= digits <= 15


_NOT_WORD = r"(?<![\w.@/+-])"
_END = r"(?![\w@/-])"

_DIGITS = re.compile(r"[+(]?\d[\d .()-]{5,}\d")  # where numbers, cards, phones, addresses can be
_PHONE = (
    # North American: (415) 555-0132, 415-555-0132, 415.555.0132
    r"(?<![\w.+/-])(?<!\d[ -])(?:\+1[ .-]?)?(?:\(\d{3}\)[ .-]?|\d{3}[ .-])\d{3}[ .-]\d{4}(?![\w.-])(?![ -]\d)"
    # International with a country code: +44 20 7946 0958, +91 98014 73691, +33 1 1598 0595
    r"|(?<![\w.+/-])\+\d{1,3}(?:[ .-]?\(?\d{1,5}\)?){2,5}(?![\w.-])(?![ -]\d)"
    # E.164 without separators: +14155550132
    r"|(?<![\w.+/-])\+\d{10,14}(?![\w.-])"
)

DETECTORS: tuple[Detector, ...] = (
    Detector("EMAIL_ADDRESS", "email", re.compile(
        r"(?<![\w.+-])[A-Za-z0-9][A-Za-z0-9._%+-]{0,63}@[A-Za-z0-9](?:[A-Za-z0-9-]{0,62}[A-Za-z0-9])?"
        r"(?:\.[A-Za-z0-9](?:[A-Za-z0-9-]{0,62}[A-Za-z0-9])?)*\.[A-Za-z]{2,24}(?![\w-])"),
        prefilter=re.compile("@"), margin=256),
    Detector("JWT", "jwt", re.compile(
        r"(?<![\w-])eyJ[A-Za-z0-9_-]{8,}\.eyJ[A-Za-z0-9_-]{8,}\.[A-Za-z0-9_-]{16,}(?![\w-])"), validate=valid_jwt,
        prefilter=re.compile(r"eyJ[A-Za-z0-9_-]{8,}\.eyJ"), margin=8192),
    Detector("AWS_ACCESS_KEY", "aws-access-key", re.compile(r"(?<![A-Z0-9])(?:AKIA|ASIA)[A-Z0-9]{16}(?![A-Z0-9])"),
             prefilter=re.compile("A[KS]IA"), margin=24),
    # Before cards: a mod-97-valid IBAN's digit groups must not be reported as a card.
    Detector("IBAN_CODE", "iban-mod97", re.compile(
        r"(?<![A-Za-z0-9])[A-Z]{2}\d{2}(?: ?[A-Z0-9]{4}){2,7}(?: ?[A-Z0-9]{1,3})?(?![A-Za-z0-9])"), validate=valid_iban,
        prefilter=re.compile(r"[A-Z]{2}\d{2}"), margin=48),
    Detector("CREDIT_CARD", "card-luhn", re.compile(_NOT_WORD + r"(?:\d[ -]?){12,18}\d" + _END), validate=luhn,
             prefilter=_DIGITS, margin=2),
    Detector("US_SSN", "ssn", re.compile(_NOT_WORD + r"\d{3}-\d{2}-\d{4}" + _END), validate=valid_ssn,
             prefilter=_DIGITS, margin=2),
    Detector("IP_ADDRESS", "ipv4", re.compile(_NOT_WORD + r"(?:\d{1,3}\.){3}\d{1,3}(?![\w.])"), validate=valid_ipv4,
             prefilter=_DIGITS, margin=2),
    Detector("IP_ADDRESS", "ipv6", re.compile(
        r"(?<![\w:.])(?:[0-9A-Fa-f]{1,4}:){2,7}[0-9A-Fa-f]{0,4}(?::[0-9A-Fa-f]{1,4})*(?![\w:])"), validate=valid_ipv6,
        prefilter=re.compile(r"[0-9A-Fa-f]{0,4}::?[0-9A-Fa-f]{1,4}:"), margin=48),
    Detector("PHONE_NUMBER", "phone", re.compile(_PHONE), validate=valid_phone, prefilter=_DIGITS, margin=2),
)

ENTITY_TYPES = tuple(sorted({d.entity_type for d in DETECTORS}))


def detect(text: str, detectors: tuple[Detector, ...] = DETECTORS) -> list[Match]:
    """Every finding in `text`, overlaps resolved in favour of the earlier detector in DETECTORS
    (an IBAN's digits are not also a card; a card is not also a phone number)."""
    starts: list[int] = []  # sorted, non-overlapping spans already taken
    ends: list[int] = []
    found: list[Match] = []
    for detector in detectors:
        for match in detector.find(text):
            index = bisect.bisect_right(starts, match.start)
            if (index and ends[index - 1] > match.start) or (index < len(starts) and starts[index] < match.end):
                continue
            starts.insert(index, match.start)
            ends.insert(index, match.end)
            found.append(match)
    return sorted(found, key=lambda m: (m.start, m.end))
