"""Vietnam's 34 provincial-level units in force since 1 July 2025 (Resolution 202/2025/QH15), loaded from
`devices/data/provinces.json`. The `code` slug is what MQTT topics carry: `ioc/v1/{code}/…`.
"""

from __future__ import annotations

import json
import re
import unicodedata
from collections.abc import Mapping
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from types import MappingProxyType
from typing import Final, Literal, cast

from core.errors import IocError

ProvinceKind = Literal["city", "province"]

PROVINCE_COUNT: Final = 34
CITY_COUNT: Final = 6
PROVINCES_RESOURCE: Final = "provinces.json"
PROVINCES_SCHEMA_VERSION: Final = 1

# A topic level: lowercase ASCII words joined by single hyphens.
CODE_PATTERN: Final = re.compile(r"[a-z0-9]+(?:-[a-z0-9]+)*")
# The national statistical code of a province: two digits.
ADMIN_CODE_PATTERN: Final = re.compile(r"[0-9]{2}")

_TITLE_PREFIXES: Final = ("thanh pho ", "tp ", "tinh ")

_TOP_KEYS: Final = frozenset({"schema_version", "source", "provinces"})
_PROVINCE_KEYS: Final = frozenset({"code", "name", "name_ascii", "kind", "merged_from"})
_PROVINCE_OPTIONAL_KEYS: Final = frozenset({"admin_code", "center", "name_en", "aliases"})


class ProvinceError(IocError):
    """The provinces file is missing, not JSON, or breaks a rule; the message names the province and field."""


@dataclass(frozen=True, slots=True)
class Province:
    code: str
    name: str
    name_ascii: str
    kind: ProvinceKind
    # The pre-July-2025 units it was formed from, the one that kept its name first;
    # an unchanged unit lists only itself.
    merged_from: tuple[str, ...]
    admin_code: str | None = None
    # (latitude, longitude) of the administrative seat, WGS 84: where a map puts the province.
    center: tuple[float, float] | None = None
    # The English name ("Hanoi", "Ho Chi Minh City"); None = the name without diacritics.
    name_en: str | None = None
    # Other names people type for it: a former name ("Thừa Thiên Huế"), a nickname ("Sài Gòn", "HCMC").
    aliases: tuple[str, ...] = ()

    @property
    def is_city(self) -> bool:
        return self.kind == "city"

    @property
    def english_name(self) -> str:
        return self.name_en or self.name_ascii

    @property
    def names(self) -> tuple[str, ...]:
        """Every name it answers to: code, admin code, names, aliases and the units merged into it."""
        own = (self.code, self.admin_code or "", self.name, self.name_ascii, self.english_name)
        return tuple(n for n in (*own, *self.aliases, *self.merged_from) if n)


def load_provinces(path: Path | None = None) -> Mapping[str, Province]:
    """Read and validate the provinces; keyed by `code`, in file order. `path` defaults to the packaged file."""
    where = str(path) if path is not None else f"devices/data/{PROVINCES_RESOURCE}"
    try:
        if path is None:
            text = (resources.files("devices") / "data" / PROVINCES_RESOURCE).read_text(encoding="utf-8")
        else:
            text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ProvinceError(f"{where}: cannot read: {exc}") from exc
    try:
        document = json.loads(text)
    except json.JSONDecodeError as exc:
        raise ProvinceError(f"{where}: not valid JSON: {exc}") from exc
    return parse_provinces(document, source=where)


def parse_provinces(document: object, *, source: str = "provinces") -> Mapping[str, Province]:
    """Validate an already-decoded provinces document and build the mapping."""
    top = _as_object(document, source)
    _check_keys(top, required=_TOP_KEYS - {"source"}, optional=frozenset({"source"}), where=source)
    version = top["schema_version"]
    if version != PROVINCES_SCHEMA_VERSION or isinstance(version, bool):
        raise ProvinceError(f"{source}: schema_version {version!r} is not supported")
    raw_list = top["provinces"]
    if not isinstance(raw_list, list):
        raise ProvinceError(f"{source}: field 'provinces' must be a list")

    provinces: dict[str, Province] = {}
    names: set[str] = set()
    admin_codes: set[str] = set()
    predecessors: dict[str, str] = {}
    for index, raw in enumerate(raw_list):
        province = _parse_province(raw, source=source, index=index)
        where = f"{source}: province {province.code!r}"
        if province.code in provinces:
            raise ProvinceError(f"{where}: code is used twice")
        if province.name in names:
            raise ProvinceError(f"{where}: name {province.name!r} is used twice")
        if province.admin_code is not None:
            if province.admin_code in admin_codes:
                raise ProvinceError(f"{where}: admin_code {province.admin_code!r} is used twice")
            admin_codes.add(province.admin_code)
        for old in province.merged_from:
            if old in predecessors:
                raise ProvinceError(f"{where}: {old!r} is already merged into {predecessors[old]!r}")
            predecessors[old] = province.code
        provinces[province.code] = province
        names.add(province.name)

    if len(provinces) != PROVINCE_COUNT:
        raise ProvinceError(f"{source}: expected {PROVINCE_COUNT} provinces, found {len(provinces)}")
    cities = sum(p.is_city for p in provinces.values())
    if cities != CITY_COUNT:
        raise ProvinceError(f"{source}: expected {CITY_COUNT} centrally-run cities, found {cities}")
    return MappingProxyType(provinces)


def resolve_province(provinces: Mapping[str, Province], text: str) -> Province | None:
    """Find a province by code, admin code, name or English name, alias or any pre-2025 unit's name
    (with or without diacritics, any case). Registrations and imports still carry old names such as "Bình Dương"."""
    key = _fold(text)
    for province in provinces.values():
        if any(key == _fold(name) for name in province.names):
            return province
    return None


def ascii_fold(text: str) -> str:
    """Vietnamese text without diacritics: "Đắk Lắk" -> "Dak Lak"."""
    # đ/Đ is a letter of its own, not d plus a combining mark, so NFD leaves it alone.
    decomposed = unicodedata.normalize("NFD", text.replace("đ", "d").replace("Đ", "D"))
    return "".join(ch for ch in decomposed if not unicodedata.combining(ch))


def _fold(text: str) -> str:
    folded = " ".join(ascii_fold(text).replace("-", " ").replace(".", " ").casefold().split())
    # "Thành phố Hồ Chí Minh", "TP. Hồ Chí Minh" and "Hồ Chí Minh" name the same unit.
    for prefix in _TITLE_PREFIXES:
        if folded.startswith(prefix):
            return folded.removeprefix(prefix)
    return folded


def _parse_province(raw: object, *, source: str, index: int) -> Province:
    where = f"{source}: provinces[{index}]"
    obj = _as_object(raw, where)
    if isinstance(obj.get("code"), str):
        where = f"{source}: province {obj['code']!r}"
    _check_keys(obj, required=_PROVINCE_KEYS, optional=_PROVINCE_OPTIONAL_KEYS, where=where)
    code = _text(obj, "code", where)
    if not CODE_PATTERN.fullmatch(code):
        raise ProvinceError(f"{where}: field 'code' must match {CODE_PATTERN.pattern}")
    name = _text(obj, "name", where)
    name_ascii = _text(obj, "name_ascii", where)
    if name_ascii != ascii_fold(name):
        raise ProvinceError(f"{where}: field 'name_ascii' {name_ascii!r} does not match name {name!r}")
    kind = obj["kind"]
    if kind not in ("city", "province"):
        raise ProvinceError(f"{where}: field 'kind' must be 'city' or 'province', got {kind!r}")
    raw_merged = obj["merged_from"]
    if (
        not isinstance(raw_merged, list)
        or not raw_merged
        or not all(isinstance(item, str) and item.strip() for item in raw_merged)
    ):
        raise ProvinceError(f"{where}: field 'merged_from' must be a non-empty list of names")
    merged_from = tuple(cast(list[str], raw_merged))
    if len(set(merged_from)) != len(merged_from):
        raise ProvinceError(f"{where}: field 'merged_from' repeats a name")
    if merged_from[0] != name:
        raise ProvinceError(f"{where}: field 'merged_from' must start with the unit that kept the name {name!r}")
    admin_code: str | None = None
    if "admin_code" in obj:
        admin_code = _text(obj, "admin_code", where)
        if not ADMIN_CODE_PATTERN.fullmatch(admin_code):
            raise ProvinceError(f"{where}: field 'admin_code' must be two digits, got {admin_code!r}")
    return Province(
        code=code,
        name=name,
        name_ascii=name_ascii,
        kind=kind,
        merged_from=merged_from,
        admin_code=admin_code,
        center=_center(obj, where) if "center" in obj else None,
        name_en=_text(obj, "name_en", where) if "name_en" in obj else None,
        aliases=_aliases(obj, where) if "aliases" in obj else (),
    )


def _aliases(obj: Mapping[str, object], where: str) -> tuple[str, ...]:
    raw = obj["aliases"]
    if not isinstance(raw, list) or not all(isinstance(item, str) and item.strip() for item in raw):
        raise ProvinceError(f"{where}: field 'aliases' must be a list of names")
    return tuple(cast(list[str], raw))


def _center(obj: Mapping[str, object], where: str) -> tuple[float, float]:
    """[latitude, longitude] inside Vietnam's bounding box."""
    raw = obj["center"]
    if (
        not isinstance(raw, list)
        or len(raw) != 2
        or not all(isinstance(v, int | float) and not isinstance(v, bool) for v in raw)
    ):
        raise ProvinceError(f"{where}: field 'center' must be [latitude, longitude]")
    lat, lon = float(raw[0]), float(raw[1])
    if not (8.0 <= lat <= 23.5 and 102.0 <= lon <= 110.0):
        raise ProvinceError(f"{where}: field 'center' {raw} is not in Vietnam")
    return lat, lon


def _as_object(raw: object, where: str) -> dict[str, object]:
    if not isinstance(raw, dict):
        raise ProvinceError(f"{where}: expected a JSON object, got {type(raw).__name__}")
    return cast(dict[str, object], raw)


def _check_keys(obj: Mapping[str, object], *, required: frozenset[str], optional: frozenset[str], where: str) -> None:
    unknown = sorted(set(obj) - required - optional)
    if unknown:
        raise ProvinceError(f"{where}: unknown field(s) {', '.join(map(repr, unknown))}")
    missing = sorted(required - set(obj))
    if missing:
        raise ProvinceError(f"{where}: missing field(s) {', '.join(map(repr, missing))}")


def _text(obj: Mapping[str, object], key: str, where: str) -> str:
    value = obj[key]
    if not isinstance(value, str) or not value.strip():
        raise ProvinceError(f"{where}: field {key!r} must be a non-empty string, got {value!r}")
    return value
