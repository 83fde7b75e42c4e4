"""Detectors for personal data and leaked secrets, and the two-pass engine that runs them.

Each detector has three parts:
- a *hint*: a pattern without look-arounds that must match wherever the detector can (an '@' between
  word characters, thirteen digits, `eyJ...eyJ`). All hints run in one pass over the bytes with
  Hyperscan, which reports where they match at hundreds of MB/s;
- a *pattern* with the exact boundaries (Python `re`, on bytes), run only in a small window around each hint;
- a *validator* that rejects what only looks like one: Luhn for cards, mod-97 for IBANs, SSN
  area/group/serial rules, IPv4 octets, a JWT header that decodes to JSON with an `alg`.

So most of a log line is looked at once, by Hyperscan, and Python only sees the candidates. Without
Hyperscan (a platform with no wheel), the hints run as one Python alternation: same findings, slower.

Entity types are named as Presidio names them. Patterns work on bytes (ASCII classes: `\\d` is 0-9);
offsets are byte offsets into the buffer given. Inside JSON strings, the escapes `\\n`, `\\t` and `\\r`
count as whitespace, so a value right after an escaped newline is found without the escape's `n`.
"""

from __future__ import annotations

import base64
import binascii
import bisect
import ipaddress
import json
import re
import threading
from collections.abc import Callable, Iterable
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
    hint: bytes  # no look-arounds: Hyperscan syntax and Python's alike
    pattern: re.Pattern[bytes]
    # How far before a hint's start and after its end a full match can reach (plus its look-arounds).
    before: int
    after: int
    validate: Callable[[bytes], bool] = lambda value: True


# Issuer prefixes of the card schemes in use (Visa, Mastercard, Amex, Discover, Diners, JCB, UnionPay, Maestro):
# a Luhn-valid run of digits that no scheme issues -- an epoch in milliseconds, an id -- is not a card.
_CARD_PREFIX = re.compile(r"4|5[1-5]|2(?:2[2-9]|[3-6]\d|7[01]|720)|3[47]|3(?:0[0-5]|[68])|6(?:011|5|4[4-9]|2)|35|5[06-8]|6\d")


def card_number(value: str | bytes) -> bool:
    text = value.decode("ascii", "replace") if isinstance(value, bytes) else value
    digits = "".join(c for c in text if c.isdigit())
    return bool(_CARD_PREFIX.match(digits)) and luhn(digits)


def luhn(number: str | bytes) -> bool:
    text = number.decode("ascii", "replace") if isinstance(number, bytes) else number
    digits = [int(c) for c in text if c.isdigit()]
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


def valid_ssn(value: str | bytes) -> bool:
    text = value.decode("ascii", "replace") if isinstance(value, bytes) else value
    area, group, serial = text[0:3], text[4:6], text[7:11]
    return area not in ("000", "666") and not area.startswith("9") and group != "00" and serial != "0000"


_IBAN_LENGTHS = {
    "AD": 24, "AE": 23, "AT": 20, "BE": 16, "BG": 22, "CH": 21, "CY": 28, "CZ": 24, "DE": 22, "DK": 18, "EE": 20,
    "ES": 24, "FI": 18, "FR": 27, "GB": 22, "GI": 23, "GR": 27, "HR": 21, "HU": 28, "IE": 22, "IL": 23, "IS": 26,
    "IT": 27, "LI": 21, "LT": 20, "LU": 20, "LV": 21, "MC": 27, "MT": 31, "NL": 18, "NO": 15, "PL": 28, "PT": 25,
    "RO": 24, "SA": 24, "SE": 24, "SI": 19, "SK": 24, "SM": 27, "TR": 26,
}


def valid_iban(value: str | bytes) -> bool:
    text = value.decode("ascii", "replace") if isinstance(value, bytes) else value
    compact = text.replace(" ", "").upper()
    if _IBAN_LENGTHS.get(compact[:2]) != len(compact) or not compact.isalnum():
        return False
    rearranged = compact[4:] + compact[:4]
    return int("".join(str(int(c, 36)) for c in rearranged)) % 97 == 1


def valid_ipv4(value: bytes) -> bool:
    octets = value.split(b".")
    return len(octets) == 4 and all(o.isdigit() and int(o) <= 255 and (o == b"0" or not o.startswith(b"0")) for o in octets)


def valid_ipv6(value: bytes) -> bool:
    if value.count(b":") < 2:
        return False
    try:
        ipaddress.IPv6Address(value.decode("ascii"))
    except (ValueError, UnicodeDecodeError):
        return False
    return True


def valid_jwt(value: bytes) -> bool:
    header = value.split(b".", 1)[0]
    try:
        decoded = json.loads(base64.urlsafe_b64decode(header + b"=" * (-len(header) % 4)))
    except (ValueError, binascii.Error, UnicodeDecodeError):
        return False
    return isinstance(decoded, dict) and "alg" in decoded


def valid_phone(value: bytes) -> bool:
    digits = sum(48 <= c <= 57 for c in value)
    return 10 <= digits <= 15


# A value starts where no word character (nor one of `extra`) precedes it -- or right after a JSON escape
# such as \n. Python's look-behinds are fixed-width, hence the two alternatives.
def _start(extra: str = "", word: str = r"\w") -> str:
    return rf"(?:(?<![\\{word}{extra}])|(?<=\\[nrt]))"


_END = rb"(?![\w@/-])"

_PHONE = (
    # North American: (415) 555-0132, 415-555-0132, 415.555.0132, +1 415 555 0132
    _start(".+/-") + r"(?:\+1[ .-]?)?(?:\(\d{3}\)[ .-]?|(?<!\d[ -])\d{3}[ .-])\d{3}[ .-]\d{4}(?![\w.-])(?![ -]\d)"
    # International with a country code: +44 20 7946 0958, +91 98014 73691, +33 1 1598 0595
    + "|" + _start(".+/-") + r"\+\d{1,3}(?:[ .-]?(?:\(\d{1,5}\)|\d{1,5})){2,5}(?![\w.-])(?![ -]\d)"
    # E.164 without separators: +14155550132
    + "|" + _start(".+/-") + r"\+\d{10,14}(?![\w.-])"
)


def _re(pattern: str) -> re.Pattern[bytes]:
    return re.compile(pattern.encode())


# In priority order: where two findings overlap, the earlier detector's wins (an IBAN's digit groups
# are not also a card; a card is not also a phone number).
DETECTORS: tuple[Detector, ...] = (
    Detector("EMAIL_ADDRESS", "email", rb"[A-Za-z0-9._%+-]@[A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)*\.[A-Za-z]{2}", _re(
        _start(".+-") + r"[A-Za-z0-9][A-Za-z0-9._%+-]{0,63}@[A-Za-z0-9](?:[A-Za-z0-9-]{0,62}[A-Za-z0-9])?"
        r"(?:\.[A-Za-z0-9](?:[A-Za-z0-9-]{0,62}[A-Za-z0-9])?)*\.[A-Za-z]{2,24}(?![\w-])"),
        before=66, after=28),
    Detector("JWT", "jwt", rb"eyJ[A-Za-z0-9_-]{8,}\.eyJ[A-Za-z0-9_-]{8,}\.[A-Za-z0-9_-]{16,}", _re(
        _start("-") + r"eyJ[A-Za-z0-9_-]{8,}\.eyJ[A-Za-z0-9_-]{8,}\.[A-Za-z0-9_-]{16,}(?![\w-])"),
        before=1, after=2, validate=valid_jwt),
    Detector("AWS_ACCESS_KEY", "aws-access-key", rb"(?:AKIA|ASIA)[A-Z0-9]{16}",
             _re(r"(?<![A-Z0-9])(?:AKIA|ASIA)[A-Z0-9]{16}(?![A-Z0-9])"), before=1, after=1),
    Detector("IBAN_CODE", "iban-mod97", rb"[A-Z]{2}\d{2} ?[A-Z0-9]{4} ?[A-Z0-9]{4}", _re(
        _start(word="A-Za-z0-9") + r"[A-Z]{2}\d{2}(?: ?[A-Z0-9]{4}){2,7}(?: ?[A-Z0-9]{1,3})?(?![A-Za-z0-9])"),
        before=1, after=32, validate=valid_iban),
    Detector("CREDIT_CARD", "card-luhn", rb"[2-6](?:[ -]?\d){12}",
             _re(_start(".@/+-") + r"(?:\d[ -]?){12,18}\d(?![\w@/-])"), before=2, after=16, validate=card_number),
    Detector("US_SSN", "ssn", rb"\d{3}-\d{2}-\d{4}", _re(_start(".@/+-") + r"\d{3}-\d{2}-\d{4}(?![\w@/-])"),
             before=2, after=2, validate=valid_ssn),
    Detector("IP_ADDRESS", "ipv4", rb"\d{1,3}\.\d{1,3}\.\d{1,3}\.\d",
             _re(_start(".@/+-") + r"(?:\d{1,3}\.){3}\d{1,3}(?![\w.])"), before=4, after=4, validate=valid_ipv4),
    Detector("IP_ADDRESS", "ipv6",
             rb"::[0-9A-Fa-f]|[0-9A-Fa-f]::|(?:[0-9A-Fa-f]{1,4}:){6}[0-9A-Fa-f]", _re(
                 _start(":.") + r"(?:[0-9A-Fa-f]{0,4}:){2,7}[0-9A-Fa-f]{0,4}(?![\w:])"),
             before=42, after=42, validate=valid_ipv6),
    Detector("PHONE_NUMBER", "phone", rb"\+\d[\d .()-]{7,}\d|\(\d{3}\)[ .-]?\d{3}[ .-]\d{4}|\d{3}[ .-]\d{3}[ .-]\d{4}", _re(_PHONE),
             before=4, after=4, validate=valid_phone),
)

ENTITY_TYPES = tuple(sorted({d.entity_type for d in DETECTORS}))


class _Hints:
    """Where each detector's hint matches in a buffer: (detector index, start, end) triples."""

    def __init__(self, detectors: tuple[Detector, ...], use_hyperscan: bool = True) -> None:
        self.detectors = detectors
        self._local = threading.local()  # Hyperscan scratch space is per thread
        self._database = _hyperscan_database(detectors) if use_hyperscan else None
        self._fallback = None if self._database is not None else [re.compile(d.hint) for d in detectors]
        self.engine = "hyperscan" if self._database is not None else "re"

    def find(self, data: bytes) -> list[tuple[int, int, int]]:
        hits: list[tuple[int, int, int]] = []
        if self._database is not None:
            import hyperscan

            scratch = getattr(self._local, "scratch", None)
            if scratch is None:
                scratch = self._local.scratch = hyperscan.Scratch(self._database)
            self._database.scan(data, match_event_handler=lambda i, a, b, _f, _c: hits.append((i, a, b)),
                                scratch=scratch)
            return hits
        assert self._fallback is not None
        for index, hint in enumerate(self._fallback):  # one pass per detector: the same hints, slower
            hits.extend((index, found.start(), found.end()) for found in hint.finditer(data))
        return hits


def _hyperscan_database(detectors: tuple[Detector, ...]):  # -> hyperscan.Database | None
    try:
        import hyperscan
    except ImportError:
        return None
    database = hyperscan.Database(mode=hyperscan.HS_MODE_BLOCK)
    database.compile(expressions=[d.hint for d in detectors], ids=list(range(len(detectors))),
                     elements=len(detectors), flags=[hyperscan.HS_FLAG_SOM_LEFTMOST] * len(detectors))
    return database


class Engine:
    """The detectors compiled once; `find` returns non-overlapping, validated matches in a buffer."""

    def __init__(self, detectors: tuple[Detector, ...] = DETECTORS, use_hyperscan: bool = True) -> None:
        self.detectors = detectors
        self._hints = _Hints(detectors, use_hyperscan)
        self.engine = self._hints.engine

    def find(self, data: bytes) -> list[Match]:
        by_detector: dict[int, list[tuple[int, int]]] = {}
        for index, start, end in self._hints.find(data):
            by_detector.setdefault(index, []).append((start, end))
        taken_starts: list[int] = []
        taken_ends: list[int] = []
        found: list[Match] = []
        for index in sorted(by_detector):
            detector = self.detectors[index]
            for match in _confirm(detector, data, by_detector[index]):
                at = bisect.bisect_right(taken_starts, match.start)
                if (at and taken_ends[at - 1] > match.start) or (at < len(taken_starts) and taken_starts[at] < match.end):
                    continue
                taken_starts.insert(at, match.start)
                taken_ends.insert(at, match.end)
                found.append(match)
        found.sort(key=lambda m: m.start)
        return found


def _windows(spans: Iterable[tuple[int, int]], before: int, after: int, size: int) -> list[tuple[int, int]]:
    windows: list[tuple[int, int]] = []
    for start, end in sorted(spans):
        a, b = max(0, start - before), min(size, end + after)
        if windows and a <= windows[-1][1]:
            windows[-1] = (windows[-1][0], max(windows[-1][1], b))
        else:
            windows.append((a, b))
    return windows


def _confirm(detector: Detector, data: bytes, spans: list[tuple[int, int]]) -> Iterable[Match]:
    last = -1
    for a, b in _windows(spans, detector.before, detector.after, len(data)):
        for found in detector.pattern.finditer(data, a, b):
            start, end = found.span()
            if start < last:
                continue
            if detector.validate(found.group()):
                last = end
                yield Match(start, end, detector.entity_type, detector.name)


_DEFAULT: Engine | None = None


def default_engine() -> Engine:
    global _DEFAULT
    if _DEFAULT is None:
        _DEFAULT = Engine()
    return _DEFAULT


def detect(text: str | bytes, engine: Engine | None = None) -> list[Match]:
    """Findings in one piece of text (offsets into its UTF-8 bytes; equal to characters for ASCII)."""
    data = text.encode("utf-8", "surrogateescape") if isinstance(text, str) else text
    return (engine or default_engine()).find(data)
