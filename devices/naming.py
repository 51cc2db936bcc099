"""Forgiving names: a province or a device type found by any name people type for it (code, English or
Vietnamese name, with or without diacritics, any case, an alias), and an error that suggests the closest valid
names when nothing matches. The command line and the API resolve what they are given here, before the registry.
"""

from __future__ import annotations

import difflib
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Final

from core.errors import InvalidRequest
from devices.catalog import Catalog, DeviceType
from devices.provinces import Province, ascii_fold

SUGGESTIONS_MAX: Final = 3
# difflib's ratio a name needs to be suggested (its own default): "Hue2" for "hue" is 0.86, "atlantis" for "gialai" 0.57.
SUGGESTION_CUTOFF: Final = 0.6
# Longer input is no typo of a name; comparing it would only cost time (difflib is quadratic in the worst case).
SUGGEST_MAX_CHARS: Final = 100
# Suggestions within this much of the best ratio are shown with it; further ones would only add noise.
NEAR_BEST: Final = 0.1
_TITLE_PREFIXES: Final = ("thanh pho ", "tp ", "tinh ")


class UnknownName(InvalidRequest):
    """No province or device type answers to the name; `suggestions` are the closest valid codes (maybe none)."""

    def __init__(self, kind: str, given: str, suggestions: Sequence[tuple[str, str]]) -> None:
        self.kind = kind
        self.given = given
        self.suggestions = tuple(code for code, _ in suggestions)
        hint = " or ".join(
            f"{code!r} ({label})" if label and label != code else repr(code) for code, label in suggestions
        )
        message = f"unknown {kind} {given[:80]!r}"
        super().__init__(f"{message} — did you mean {hint}?" if hint else message)


@dataclass(frozen=True, slots=True)
class _Entry:
    code: str
    label: str  # shown beside the code in a suggestion: the Vietnamese name of a province, a type's English name
    names: tuple[str, ...]


def fold_name(text: str) -> str:
    """The form names are compared in: no diacritics, case folded, no separators or title words ("Thành phố")."""
    words = ascii_fold(text).casefold()
    for separator in "-_.,/()":
        words = words.replace(separator, " ")
    folded = " ".join(words.split())
    for prefix in _TITLE_PREFIXES:
        if folded.startswith(prefix):
            folded = folded.removeprefix(prefix)
            break
    return folded.replace(" ", "")


def _resolve(entries: Iterable[_Entry], text: str, *, kind: str) -> str:
    """The code of the one entry answering to `text`, else UnknownName with the closest entries."""
    entries = tuple(entries)
    key = fold_name(text)
    owners: dict[str, _Entry] = {}
    for entry in entries:
        for name in entry.names:
            owners.setdefault(fold_name(name), entry)
    if key and key in owners:
        return owners[key].code
    raise UnknownName(kind, text, _closest(entries, owners, key))


def _closest(entries: Sequence[_Entry], owners: Mapping[str, _Entry], key: str) -> list[tuple[str, str]]:
    """Entries whose names read most like `key` (difflib's ratio; only those near the best, so that a clear
    winner comes alone), then entries with a name containing it."""
    if not key or len(key) > SUGGEST_MAX_CHARS:
        return []
    ratios: dict[str, float] = {}
    by_code = {entry.code: entry for entry in entries}
    for name, entry in owners.items():
        ratio = difflib.SequenceMatcher(None, key, name).ratio()
        if ratio >= SUGGESTION_CUTOFF and ratio > ratios.get(entry.code, 0.0):
            ratios[entry.code] = ratio
    best = max(ratios.values(), default=0.0)
    found = [code for code, ratio in sorted(ratios.items(), key=lambda item: -item[1]) if ratio >= best - NEAR_BEST]
    if len(key) >= 3:
        found += [e.code for e in entries if e.code not in found and any(key in fold_name(n) for n in e.names)]
    return [(code, by_code[code].label) for code in found[:SUGGESTIONS_MAX]]


def resolve_province_code(provinces: Mapping[str, Province], text: str) -> str:
    """The code of the province `text` names ('Huế', 'hue', 'Thua Thien Hue', '46', 'Bình Dương' …);
    UnknownName suggesting the closest ones otherwise."""
    entries = (_Entry(p.code, p.name, p.names) for p in provinces.values())
    return _resolve(entries, text, kind="province")


def resolve_type_code(catalog: Catalog, text: str) -> str:
    """The code of the device type `text` names ('vaccine_fridge', 'Vaccine refrigerator', 'fridge' …);
    UnknownName suggesting the closest ones otherwise."""
    return _resolve((_type_entry(t) for t in catalog), text, kind="device type")


def _type_entry(device_type: DeviceType) -> _Entry:
    return _Entry(device_type.code, device_type.name, device_type.names)
