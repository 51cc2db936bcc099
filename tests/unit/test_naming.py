"""Forgiving names (devices.naming): a province or device type by any name people type, and errors that suggest
the closest valid ones."""

from __future__ import annotations

from collections.abc import Mapping

import pytest

from core.errors import InvalidRequest
from devices.catalog import Catalog, load_catalog
from devices.naming import UnknownName, fold_name, resolve_province_code, resolve_type_code
from devices.provinces import Province, load_provinces


@pytest.fixture(scope="module")
def provinces() -> Mapping[str, Province]:
    return load_provinces()


@pytest.fixture(scope="module")
def catalog() -> Catalog:
    return load_catalog()


@pytest.mark.parametrize(
    ("typed", "code"),
    [
        ("hue", "hue"),
        ("Huế", "hue"),
        ("HUẾ", "hue"),
        ("Thua Thien Hue", "hue"),
        ("Thừa Thiên Huế", "hue"),
        ("46", "hue"),
        ("Hanoi", "ha-noi"),
        ("ha noi", "ha-noi"),
        ("Hà Nội", "ha-noi"),
        ("ha_noi", "ha-noi"),
        ("Ho Chi Minh City", "ho-chi-minh"),
        ("TP. Hồ Chí Minh", "ho-chi-minh"),
        ("Sài Gòn", "ho-chi-minh"),
        ("Bình Dương", "ho-chi-minh"),  # merged into it in 2025
        ("  can-tho ", "can-tho"),
    ],
)
def test_a_province_is_found_by_code_vietnamese_or_english_name_with_or_without_diacritics(
    provinces: Mapping[str, Province], typed: str, code: str
) -> None:
    assert resolve_province_code(provinces, typed) == code


def test_an_unknown_province_suggests_the_closest_with_its_vietnamese_name(provinces: Mapping[str, Province]) -> None:
    with pytest.raises(UnknownName) as caught:
        resolve_province_code(provinces, "Hue2")
    assert str(caught.value) == "unknown province 'Hue2' — did you mean 'hue' (Huế)?"
    assert caught.value.suggestions == ("hue",)
    assert isinstance(caught.value, InvalidRequest)  # the API answers it with 422


def test_a_province_typo_suggests_it_alone_when_it_is_a_clear_winner(provinces: Mapping[str, Province]) -> None:
    with pytest.raises(UnknownName) as caught:
        resolve_province_code(provinces, "Da Nan")
    assert caught.value.suggestions == ("da-nang",)


def test_a_part_of_a_name_suggests_the_provinces_containing_it(provinces: Mapping[str, Province]) -> None:
    with pytest.raises(UnknownName) as caught:
        resolve_province_code(provinces, "quang")
    assert {"quang-tri", "quang-ninh"} <= set(caught.value.suggestions)
    assert len(caught.value.suggestions) <= 3


def test_nonsense_has_no_suggestion_and_says_so_plainly(provinces: Mapping[str, Province]) -> None:
    with pytest.raises(UnknownName) as caught:
        resolve_province_code(provinces, "xyz")
    assert str(caught.value) == "unknown province 'xyz'"
    assert caught.value.suggestions == ()


@pytest.mark.parametrize(
    ("typed", "code"),
    [
        ("vaccine_fridge", "vaccine_fridge"),
        ("fridge", "vaccine_fridge"),
        ("Vaccine refrigerator", "vaccine_fridge"),
        ("cold-chain fridge", "vaccine_fridge"),
        ("Tủ lạnh bảo quản vắc-xin", "vaccine_fridge"),
        ("tu lanh", "vaccine_fridge"),
        ("Soil Probe", "soil_probe"),
        ("soil-probe", "soil_probe"),
        ("meter", "smart_meter"),
    ],
)
def test_a_device_type_is_found_by_code_name_or_alias(catalog: Catalog, typed: str, code: str) -> None:
    assert resolve_type_code(catalog, typed) == code


def test_an_unknown_device_type_suggests_the_closest(catalog: Catalog) -> None:
    with pytest.raises(UnknownName) as caught:
        resolve_type_code(catalog, "fridge2")
    assert str(caught.value) == "unknown device type 'fridge2' — did you mean 'vaccine_fridge' (Vaccine refrigerator)?"


def test_an_ambiguous_word_is_refused_with_every_type_it_could_mean(catalog: Catalog) -> None:
    with pytest.raises(UnknownName) as caught:
        resolve_type_code(catalog, "sensor")
    assert set(caught.value.suggestions) == {"soil_probe", "salinity_sensor", "parking_sensor"}


def test_every_name_of_every_type_and_province_resolves_to_its_owner(
    catalog: Catalog, provinces: Mapping[str, Province]
) -> None:
    for device_type in catalog:
        assert {resolve_type_code(catalog, name) for name in device_type.names} == {device_type.code}
    for province in provinces.values():
        assert {resolve_province_code(provinces, name) for name in province.names} == {province.code}


def test_folding_ignores_case_diacritics_separators_and_title_words() -> None:
    assert fold_name("Thành phố Hồ Chí Minh") == fold_name("ho-chi-minh") == "hochiminh"
    assert fold_name("Đắk Lắk") == "daklak"


def test_an_alias_may_name_only_one_device_type() -> None:
    import json
    from pathlib import Path

    from devices.catalog import CatalogError, parse_catalog

    document = json.loads((Path(__file__).resolve().parents[2] / "devices/data/device_types.json").read_text())
    document["device_types"][0]["aliases"] = ["fridge"]
    with pytest.raises(CatalogError, match="alias 'fridge' already names"):
        parse_catalog(document)


def test_a_huge_name_is_refused_at_once_without_suggestions(provinces: Mapping[str, Province]) -> None:
    with pytest.raises(UnknownName) as caught:
        resolve_province_code(provinces, "hue" * 100_000)
    assert caught.value.suggestions == ()
    assert len(str(caught.value)) < 120  # the name is cut in the message
