"""Vietnam's 34 provincial-level units since 1 July 2025."""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

import pytest

from core.errors import IocError
from devices.provinces import (
    CODE_PATTERN,
    Province,
    ProvinceError,
    ascii_fold,
    load_provinces,
    resolve_province,
)

DATA_FILE = Path(__file__).resolve().parents[2] / "devices" / "data" / "provinces.json"

CITIES = {"ha-noi", "hue", "hai-phong", "da-nang", "ho-chi-minh", "can-tho"}
UNCHANGED = {
    "Hà Nội", "Huế", "Lai Châu", "Điện Biên", "Sơn La", "Lạng Sơn",
    "Quảng Ninh", "Thanh Hóa", "Nghệ An", "Hà Tĩnh", "Cao Bằng",
}  # fmt: skip


@pytest.fixture(scope="module")
def provinces() -> dict[str, Province]:
    return dict(load_provinces())


def _raw() -> dict[str, Any]:
    document: dict[str, Any] = json.loads(DATA_FILE.read_text(encoding="utf-8"))
    return document


def test_34_units_with_6_cities(provinces: dict[str, Province]) -> None:
    assert len(provinces) == 34
    assert {code for code, p in provinces.items() if p.kind == "city"} == CITIES
    assert sum(p.kind == "province" for p in provinces.values()) == 28
    assert provinces["ho-chi-minh"].is_city
    assert not provinces["an-giang"].is_city


def test_codes_are_topic_safe_and_unique(provinces: dict[str, Province]) -> None:
    for code, province in provinces.items():
        assert province.code == code
        assert CODE_PATTERN.fullmatch(code)
        assert "/" not in code
        assert "+" not in code
        assert "#" not in code
    admin_codes = [p.admin_code for p in provinces.values()]
    assert len(set(admin_codes)) == 34


def test_names_keep_diacritics(provinces: dict[str, Province]) -> None:
    assert provinces["dak-lak"].name == "Đắk Lắk"
    assert provinces["dak-lak"].name_ascii == "Dak Lak"
    assert provinces["ha-noi"].name == "Hà Nội"
    assert provinces["khanh-hoa"].name == "Khánh Hòa"
    assert provinces["lam-dong"].admin_code == "68"
    assert provinces["ha-noi"].admin_code == "01"
    assert provinces["ca-mau"].admin_code == "96"


def test_mergers_follow_resolution_202(provinces: dict[str, Province]) -> None:
    assert provinces["ho-chi-minh"].merged_from == ("Thành phố Hồ Chí Minh", "Bình Dương", "Bà Rịa - Vũng Tàu")
    assert set(provinces["ninh-binh"].merged_from) == {"Ninh Bình", "Hà Nam", "Nam Định"}
    assert set(provinces["phu-tho"].merged_from) == {"Phú Thọ", "Vĩnh Phúc", "Hòa Bình"}
    assert set(provinces["can-tho"].merged_from) == {"Cần Thơ", "Sóc Trăng", "Hậu Giang"}
    assert set(provinces["tuyen-quang"].merged_from) == {"Tuyên Quang", "Hà Giang"}
    assert set(provinces["an-giang"].merged_from) == {"An Giang", "Kiên Giang"}
    assert {p.name for p in provinces.values() if len(p.merged_from) == 1} == UNCHANGED


def test_every_pre_2025_unit_appears_once(provinces: dict[str, Province]) -> None:
    old = [name for p in provinces.values() for name in p.merged_from]
    assert len(old) == 63
    assert len(set(old)) == 63


def test_resolve_province_by_code_name_and_old_name(provinces: dict[str, Province]) -> None:
    assert resolve_province(provinces, "ho-chi-minh") == provinces["ho-chi-minh"]
    assert resolve_province(provinces, "TP. Hồ Chí Minh") == provinces["ho-chi-minh"]
    assert resolve_province(provinces, "Tỉnh Bình Dương") == provinces["ho-chi-minh"]
    assert resolve_province(provinces, "bac lieu") == provinces["ca-mau"]
    assert resolve_province(provinces, "92") == provinces["can-tho"]
    assert resolve_province(provinces, "Atlantis") is None


def test_ascii_fold_handles_d_stroke() -> None:
    assert ascii_fold("Đồng Tháp") == "Dong Thap"
    assert ascii_fold("Quảng Ngãi") == "Quang Ngai"


def _write(tmp_path: Path, document: object) -> Path:
    path = tmp_path / "provinces.json"
    path.write_text(json.dumps(document, ensure_ascii=False), encoding="utf-8")
    return path


def test_missing_province_is_refused(tmp_path: Path) -> None:
    document = copy.deepcopy(_raw())
    document["provinces"].pop()
    with pytest.raises(ProvinceError, match="expected 34 provinces, found 33") as caught:
        load_provinces(_write(tmp_path, document))
    assert isinstance(caught.value, IocError)


def test_duplicate_code_is_refused(tmp_path: Path) -> None:
    document = copy.deepcopy(_raw())
    document["provinces"][1]["code"] = "ha-noi"
    with pytest.raises(ProvinceError, match="province 'ha-noi': code is used twice"):
        load_provinces(_write(tmp_path, document))


@pytest.mark.parametrize(
    ("field", "value", "message"),
    [
        ("code", "Ha Noi", "field 'code' must match"),
        ("kind", "municipality", "field 'kind' must be 'city' or 'province'"),
        ("name_ascii", "Hanoi", "'name_ascii' 'Hanoi' does not match name 'Hà Nội'"),
        ("admin_code", "1", "field 'admin_code' must be two digits"),
        ("merged_from", [], "field 'merged_from' must be a non-empty list"),
        ("population", 8_000_000, r"unknown field\(s\) 'population'"),
    ],
)
def test_bad_field_is_refused(tmp_path: Path, field: str, value: object, message: str) -> None:
    document = copy.deepcopy(_raw())
    document["provinces"][0][field] = value
    with pytest.raises(ProvinceError, match=message):
        load_provinces(_write(tmp_path, document))


def test_old_unit_merged_twice_is_refused(tmp_path: Path) -> None:
    document = copy.deepcopy(_raw())
    document["provinces"][1]["merged_from"].append("Hà Giang")
    with pytest.raises(ProvinceError, match="'Hà Giang' is already merged into"):
        load_provinces(_write(tmp_path, document))
