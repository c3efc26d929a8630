"""SMS segments as the gateways bill them (GSM 03.38 / UCS-2), and trimming to fit.

GSM-7: 160 septets in one part, 153 a part beyond; the extension characters take an escape
septet (count 2) and an escape pair never splits across parts. A single character outside
the GSM alphabet (any Bengali letter, an emoji, `ç`) makes the whole message UCS-2: 70
UTF-16 code units in one part, 67 a part beyond (a surrogate pair never splits).
"""

from __future__ import annotations

import unicodedata
from dataclasses import dataclass
from functools import lru_cache

GSM7_BASIC = frozenset(
    "@£$¥èéùìòÇ\nØø\rÅåΔ_ΦΓΛΩΠΨΣΘΞÆæßÉ !\"#¤%&'()*+,-./0123456789:;<=>?"
    "¡ABCDEFGHIJKLMNOPQRSTUVWXYZÄÖÑÜ§¿abcdefghijklmnopqrstuvwxyzäöñüà"
)
GSM7_EXTENSION = frozenset("\f^{}\\[~]|€")

GSM7 = "GSM-7"
UCS2 = "UCS-2"
SINGLE = {GSM7: 160, UCS2: 70}
MULTI = {GSM7: 153, UCS2: 67}
BENGALI_VIRAMA = "\u09cd"


@dataclass(frozen=True)
class SmsInfo:
    encoding: str
    characters: int
    segments: int
    units: int  # septets (GSM-7) or UTF-16 code units (UCS-2)

    def as_dict(self) -> dict[str, object]:
        """The `stormd sms-info --json` output."""
        return {"encoding": self.encoding, "characters": self.characters,
                "segments": self.segments}


def encoding_of(text: str) -> str:
    return GSM7 if all(c in GSM7_BASIC or c in GSM7_EXTENSION for c in text) else UCS2


def _unit_sizes(text: str, encoding: str) -> list[int]:
    """Each character's size in the encoding's units; kept whole when parts are cut."""
    if encoding == GSM7:
        return [2 if c in GSM7_EXTENSION else 1 for c in text]
    return [2 if ord(c) > 0xFFFF else 1 for c in text]


def _count_parts(sizes: list[int], encoding: str) -> int:
    total = sum(sizes)
    if total == 0:
        return 0
    if total <= SINGLE[encoding]:
        return 1
    limit, parts, used = MULTI[encoding], 1, 0
    for size in sizes:
        if used + size > limit:
            parts, used = parts + 1, 0
        used += size
    return parts


@lru_cache(maxsize=4096)  # a campaign sends the same text many times; priced twice a send
def sms_info(text: str) -> SmsInfo:
    """Encoding, character count and billed segments of `text`."""
    encoding = encoding_of(text)
    sizes = _unit_sizes(text, encoding)
    return SmsInfo(encoding=encoding, characters=len(text),
                   segments=_count_parts(sizes, encoding), units=sum(sizes))


def sms_segments(text: str) -> int:
    """How many parts the gateways bill for `text`."""
    return sms_info(text).segments


def trim_to_fit(head: str, tail: str = "", *, max_segments: int = 1,
                ellipsis: str = "…") -> str:
    """`head + tail` cut down to `max_segments`, shortening only `head` (a product name, a
    greeting) and keeping `tail` (the link, the code) whole.

    Cuts at a word boundary when one is near, never inside a Bengali conjunct (no dangling
    vowel sign or virama). Raises ValueError if `tail` alone does not fit."""
    if sms_segments(head + tail) <= max_segments:
        return head + tail
    if sms_segments(ellipsis + tail) > max_segments:
        raise ValueError(f"the fixed part alone needs {sms_segments(tail)} segments")
    low, high = 0, len(head)  # longest prefix that fits, by bisection
    while low < high:
        mid = (low + high + 1) // 2
        if sms_segments(head[:mid].rstrip() + ellipsis + tail) <= max_segments:
            low = mid
        else:
            high = mid - 1
    cut = _clean_cut(head, low)
    return head[:cut].rstrip() + ellipsis + tail


def _clean_cut(text: str, cut: int) -> int:
    """Move `cut` back so it does not split a grapheme cluster, preferring a space."""
    while 0 < cut < len(text) and (
        unicodedata.category(text[cut]) in ("Mn", "Mc") or text[cut - 1] == BENGALI_VIRAMA
    ):
        cut -= 1
    space = text.rfind(" ", 0, cut)
    if cut < len(text) and space > cut * 0.6:
        return space
    return cut
