"""Detectors for personal data and leaked secrets, and the two-pass engine that runs them.

Each detector has three parts:
- a *hint*: a pattern without look-arounds that must match wherever the detector can (an '@' between
  word characters, thirteen digits, `eyJ...eyJ`), and may take in the character next to the value
  where the pattern requires one, so that near misses (a five-part version) are not even candidates.
  All hints run in one pass over the bytes with Hyperscan, which reports where they match; each
  report costs a call into Python, so a hint should match once per value, not at every character;
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
import functools
import ipaddress
import json
import re
import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, NamedTuple


class Match(NamedTuple):  # a tuple: a dense block holds tens of thousands, made and sorted cheaply
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
_CARD_PREFIX = re.compile(rb"4|5[1-5]|2(?:2[2-9]|[3-6]\d|7[01]|720)|3[47]|3(?:0[0-5]|[68])|6(?:011|5|4[4-9]|2)|35|5[06-8]|6\d")
# Validators run on every candidate: they work on bytes with translate tables (C loops, not Python ones).
_NOT_DIGITS = bytes(c for c in range(256) if not 48 <= c <= 57)
_DOUBLED = bytes.maketrans(b"0123456789", bytes([0, 2, 4, 6, 8, 1, 3, 5, 7, 9]))  # a Luhn digit doubled, digits summed


def _digits(value: str | bytes) -> bytes:
    data = value if isinstance(value, bytes) else value.encode("ascii", "replace")
    return data.translate(None, _NOT_DIGITS)


def card_number(value: str | bytes) -> bool:
    digits = _digits(value)
    return bool(_CARD_PREFIX.match(digits)) and luhn(digits)


def luhn(number: str | bytes) -> bool:
    digits = _digits(number)
    if not 13 <= len(digits) <= 19:
        return False
    kept, doubled = digits[-1::-2], digits[-2::-2]  # from the check digit leftwards
    return (sum(kept) - 48 * len(kept) + sum(doubled.translate(_DOUBLED))) % 10 == 0


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


_IBAN_DIGITS = {ord(c): str(int(c, 36)) for c in "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZ"}  # A=10 ... Z=35


def valid_iban(value: str | bytes) -> bool:
    text = value.decode("ascii", "replace") if isinstance(value, bytes) else value
    compact = text.replace(" ", "").upper()
    if _IBAN_LENGTHS.get(compact[:2]) != len(compact) or not (compact.isascii() and compact.isalnum()):
        return False
    return int((compact[4:] + compact[:4]).translate(_IBAN_DIGITS)) % 97 == 1


def valid_ipv4(value: bytes) -> bool:
    octets = value.split(b".")
    return len(octets) == 4 and all(o.isdigit() and int(o) <= 255 and (o == b"0" or not o.startswith(b"0")) for o in octets)


def valid_ipv6(value: bytes) -> bool:
    colons = value.count(b":")
    if colons < 2 or (colons != 7 and b"::" not in value):  # cheap: a time, a MAC address is no address
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
    return 10 <= len(value.translate(None, _NOT_DIGITS)) <= 15


# A value starts where no word character (nor one of `extra`) precedes it -- or right after a JSON escape
# such as \n. Python's look-behinds are fixed-width, hence the two alternatives.
def _start(extra: str = "", word: str = r"\w") -> str:
    return rf"(?:(?<![\\{word}{extra}])|(?<=\\[nrt]))"


# A value ends where no word character follows -- nor a dot and a word character (a sixth part of a
# dotted number); a dot then a space, a quote or the end is a sentence's full stop, not part of it.
_STOP = r"(?!\w|\.\w)"

_PHONE = (
    # North American: (415) 555-0132, 415-555-0132, 415.555.0132, +1 415 555 0132
    _start(".+/-") + r"(?:\+1[ .-]?)?(?:\(\d{3}\)[ .-]?|(?<!\d[ -])\d{3}[ .-])\d{3}[ .-]\d{4}(?!-)" + _STOP + r"(?![ -]\d)"
    # International with a country code: +44 20 7946 0958, +91 98014 73691, +33 1 1598 0595
    + "|" + _start(".+/-") + r"\+\d{1,3}(?:[ .-]?(?:\(\d{1,5}\)|\d{1,5})){2,5}(?!-)" + _STOP + r"(?![ -]\d)"
    # E.164 without separators: +14155550132
    + "|" + _start(".+/-") + r"\+\d{10,14}(?!-)" + _STOP
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
    # The hint stops 16 characters into the signature, so it ends at one place per token (a hint that
    # ran to the end would be reported at every character of it); the window's end is no limit (_confirm).
    Detector("JWT", "jwt", rb"eyJ[A-Za-z0-9_-]{8,}\.eyJ[A-Za-z0-9_-]{8,}\.[A-Za-z0-9_-]{16}", _re(
        _start("-") + r"eyJ[A-Za-z0-9_-]{8,}\.eyJ[A-Za-z0-9_-]{8,}\.[A-Za-z0-9_-]{16,}(?![\w-])"),
        before=1, after=32, validate=valid_jwt),
    Detector("AWS_ACCESS_KEY", "aws-access-key", rb"(?:AKIA|ASIA)[A-Z0-9]{16}",
             _re(r"(?<![A-Z0-9])(?:AKIA|ASIA)[A-Z0-9]{16}(?![A-Z0-9])"), before=1, after=1),
    Detector("IBAN_CODE", "iban-mod97", rb"[A-Z]{2}\d{2} ?[A-Z0-9]{4} ?[A-Z0-9]{4}", _re(
        _start(word="A-Za-z0-9") + r"[A-Z]{2}\d{2}(?: ?[A-Z0-9]{4}){2,7}(?: ?[A-Z0-9]{1,3})?(?![A-Za-z0-9])"),
        before=1, after=32, validate=valid_iban),
    # Hints below take the character before or after the value where the pattern requires one (not a
    # digit, not a dot and a digit): a five-part version or an id that runs on is then no candidate at all.
    Detector("CREDIT_CARD", "card-luhn", rb"(?:^|[^\w.@/+-]|\\[nrt])[2-6](?:[ -]?\d){12}",
             _re(_start(".@/+-") + r"(?:\d[ -]?){12,18}\d(?![\w@/-])"), before=2, after=16, validate=card_number),
    Detector("US_SSN", "ssn", rb"\d{3}-\d{2}-\d{4}", _re(_start(".@/+-") + r"\d{3}-\d{2}-\d{4}(?![\w@/-])"),
             before=2, after=2, validate=valid_ssn),
    Detector("IP_ADDRESS", "ipv4", rb"(?:^|[^\d.])\d{1,3}\.\d{1,3}\.\d{1,3}\.\d{1,3}(?:[^\w.]|\.[^\w]|\.?$)",
             _re(_start(".@/+-") + r"(?:\d{1,3}\.){3}\d{1,3}" + _STOP), before=4, after=4, validate=valid_ipv4),
    Detector("IP_ADDRESS", "ipv6",
             rb"::[0-9A-Fa-f]|[0-9A-Fa-f]::|(?:[0-9A-Fa-f]{1,4}:){6}[0-9A-Fa-f]", _re(
                 # After a colon only when a label ends there (`ip:fe80::1`), never inside an address; it
                 # starts with a digit or `::` and ends with a digit or `::`, so a colon on either side
                 # can be punctuation (`ip: ::1: ok`).
                 r"(?:" + _start(":.") + r"|(?<=[^0-9A-Fa-f:.\\]:))(?!:[^:])"
                 r"(?:[0-9A-Fa-f]{0,4}:){1,7}(?:[0-9A-Fa-f]{1,4}|:)(?!\w|:[\w:])"),
             before=42, after=42, validate=valid_ipv6),
    Detector("PHONE_NUMBER", "phone", rb"\+\d[\d .()-]{7,}\d(?:\D|$)|\(\d{3}\)[ .-]?\d{3}[ .-]\d{4}(?:[^\w.-]|\.[^\w]|\.?$)"
             rb"|(?:^|\D)\d{3}[ .-]\d{3}[ .-]\d{4}(?:[^\w.-]|\.[^\w]|\.?$)", _re(_PHONE),
             before=4, after=4, validate=valid_phone),
)

ENTITY_TYPES = tuple(sorted({d.entity_type for d in DETECTORS}))


# Windows of one detector closer than this are run as one: a regex over a few more bytes costs less than
# another call from Python (dense logs have a candidate every few dozen bytes).
WINDOW_GAP = 64


class _Hints:
    """Where each detector's pattern must run: the windows around its hints, one Hyperscan pass for all."""

    def __init__(self, detectors: tuple[Detector, ...], use_hyperscan: bool = True) -> None:
        self.detectors = detectors
        self._before = tuple(d.before for d in detectors)
        self._after = tuple(d.after for d in detectors)
        self._local = threading.local()  # Hyperscan scratch space is per thread
        self._database = _hyperscan_database(detectors) if use_hyperscan else None
        self._fallback = None if self._database is not None else [re.compile(d.hint) for d in detectors]
        self.engine = "hyperscan" if self._database is not None else "re"

    def windows(self, data: bytes) -> list[list[tuple[int, int]]]:
        """For each detector, sorted disjoint (start, end) windows of `data`: each hint widened by the
        detector's `before` and `after`, windows that overlap or nearly touch joined."""
        if self._database is None:
            assert self._fallback is not None
            return [_disjoint([(m.start() - self._before[i], m.end() + self._after[i]) for m in hint.finditer(data)],
                              len(data)) for i, hint in enumerate(self._fallback)]
        import hyperscan

        scratch = getattr(self._local, "scratch", None)
        if scratch is None:
            scratch = self._local.scratch = hyperscan.Scratch(self._database)
        before, after = self._before, self._after
        growing = [[0, -WINDOW_GAP - 1] for _ in self.detectors]  # each detector's latest window
        closed: list[list[tuple[int, int]]] = [[] for _ in self.detectors]

        # Called for every hint (a dense log has one every few dozen bytes): grow the latest window in
        # place, or close it and open the next. Hints come in order of their end, so closed windows are
        # sorted; a hint whose start reaches back past the latest window's is joined when it closes.
        def on_hint(index: int, start: int, end: int, _flags: int, _context: object) -> None:
            window = growing[index]
            a = start - before[index]
            if a <= window[1] + WINDOW_GAP:
                b = end + after[index]
                if b > window[1]:
                    window[1] = b
                if a < window[0]:
                    window[0] = a
            else:
                if window[1] >= 0:
                    _close(closed[index], window)
                growing[index] = [a, end + after[index]]

        self._database.scan(data, match_event_handler=on_hint, scratch=scratch)
        for index, window in enumerate(growing):
            if window[1] >= 0:
                _close(closed[index], window)
        return closed  # re's pos and endpos clip the windows to the buffer


def _close(windows: list[tuple[int, int]], window: list[int]) -> None:
    a, b = window
    while windows and a <= windows[-1][1] + WINDOW_GAP:  # rare: the window grew back over closed ones
        previous = windows.pop()
        a, b = min(a, previous[0]), max(b, previous[1])
    windows.append((a, b))


def _disjoint(spans: list[tuple[int, int]], size: int) -> list[tuple[int, int]]:
    """Spans clipped to the buffer, sorted, and those within WINDOW_GAP of each other joined."""
    joined: list[tuple[int, int]] = []
    for a, b in sorted(spans):
        a, b = max(0, a), min(size, b)
        if joined and a <= joined[-1][1] + WINDOW_GAP:
            if b > joined[-1][1]:
                joined[-1] = (joined[-1][0], b)
        else:
            joined.append((a, b))
    return joined


@functools.cache
def _hyperscan_database(detectors: tuple[Detector, ...]) -> Any:  # hyperscan.Database | None
    """Compiled once per process and set of detectors (about 0.1 s each time otherwise); scans allocate their own
    scratch space, so one database serves every engine."""
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
        found: list[Match] = []
        for detector, windows in zip(self.detectors, self._hints.windows(data), strict=True):
            if windows:
                found = _without_overlaps(found, _confirm(detector, data, windows))
        return found


def _without_overlaps(taken: list[Match], candidates: list[Match]) -> list[Match]:
    """`taken` plus the candidates that overlap none of it (both sorted by start, neither overlapping
    itself), sorted by start: one merge, linear in both -- a block may hold a million matches."""
    if not taken or not candidates:
        return taken or candidates
    kept, at, count = [], 0, len(taken)
    for match in candidates:
        while at < count and taken[at].end <= match.start:
            at += 1
        if at == count or taken[at].start >= match.end:
            kept.append(match)
    return sorted(taken + kept) if kept else taken  # by start: matches are tuples, starts distinct


def _confirm(detector: Detector, data: bytes, windows: list[tuple[int, int]]) -> list[Match]:
    """The detector's validated matches in the windows, sorted by start, none overlapping another. A
    match that reaches its window's end may go on past it: it is matched again from its start, unbounded."""
    found: list[Match] = []
    last, size = -1, len(data)
    pattern, validate, entity_type, name = detector.pattern, detector.validate, detector.entity_type, detector.name
    for a, b in windows:
        for candidate in pattern.finditer(data, a, b):
            start, end = candidate.span()
            if end == b < size:
                again = pattern.match(data, start)
                if again is None:
                    continue
                candidate, end = again, again.end()
            if start >= last and validate(candidate.group()):
                last = end
                found.append(Match(start, end, entity_type, name))
    return found


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
