"""The test helper that expands Grafana's PostgreSQL macros and variables (tests/grafana_sql.py), against the
examples of Grafana's documentation and the rules of its source."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from tests.grafana_sql import (
    MacroError,
    TimeRange,
    Variable,
    expand,
    expand_macros,
    interpolate_globals,
    interpolate_variables,
    parse_interval,
    rfc3339,
)

# The range of Grafana's PostgreSQL documentation examples.
DOCS_RANGE = TimeRange(
    start=datetime(2017, 4, 21, 5, 1, 17, tzinfo=UTC), end=datetime(2017, 4, 21, 5, 6, 17, tzinfo=UTC), interval="5m"
)


def test_time_filter_becomes_a_between_of_rfc3339_utc_literals() -> None:
    assert expand_macros("WHERE $__timeFilter(time_column)", DOCS_RANGE) == (
        "WHERE time_column BETWEEN '2017-04-21T05:01:17Z' AND '2017-04-21T05:06:17Z'"
    )


def test_time_from_and_to_are_quoted_literals_and_time_aliases_a_column() -> None:
    assert expand_macros("$__timeFrom() $__timeTo()", DOCS_RANGE) == "'2017-04-21T05:01:17Z' '2017-04-21T05:06:17Z'"
    assert expand_macros("SELECT $__time(ts)", DOCS_RANGE) == 'SELECT ts AS "time"'
    assert expand_macros("$__timeEpoch(ts)", DOCS_RANGE) == 'extract(epoch from ts) as "time"'


def test_time_group_is_a_time_bucket_with_timescaledb_and_a_floor_without() -> None:
    assert expand_macros("$__timeGroup(dateColumn,'5m')", DOCS_RANGE) == "time_bucket('300.000s',dateColumn)"
    assert expand_macros("$__timeGroupAlias(dateColumn, 5m)", DOCS_RANGE) == (
        "time_bucket('300.000s',dateColumn) AS \"time\""
    )
    assert expand_macros("$__timeGroup(dateColumn,'5m')", DOCS_RANGE, timescaledb=False) == (
        "floor(extract(epoch from dateColumn)/300)*300"
    )


def test_time_group_followed_by_a_comma_is_taken_as_the_alias_form() -> None:
    assert expand_macros("SELECT $__timeGroup(ts, 1m), v", DOCS_RANGE) == (
        "SELECT time_bucket('60.000s',ts) AS \"time\", v"
    )


def test_unix_epoch_macros_use_seconds_and_nanoseconds() -> None:
    assert expand_macros("$__unixEpochFilter(t)", DOCS_RANGE) == "t >= 1492750877 AND t <= 1492751177"
    assert expand_macros("$__unixEpochNanoFrom()", DOCS_RANGE) == "1492750877000000000"
    assert expand_macros("$__unixEpochGroupAlias(t, 1h)", DOCS_RANGE) == 'floor((t)/3600)*3600 AS "time"'


def test_an_unknown_macro_or_interval_fails_as_grafana_fails_the_query() -> None:
    with pytest.raises(MacroError, match="unknown macro"):
        expand_macros("$__timeBucket(ts)", DOCS_RANGE)
    with pytest.raises(MacroError, match="error parsing interval"):
        expand_macros("$__timeGroup(ts, soon)", DOCS_RANGE)
    with pytest.raises(MacroError, match="missing time column"):
        expand_macros("$__timeFilter()", DOCS_RANGE)


def test_interval_globals_are_replaced_longest_name_first() -> None:
    assert interpolate_globals("$__interval_ms / $__interval", DOCS_RANGE) == "300000 / 5m"
    assert interpolate_globals("$__unixEpochFrom()-$__unixEpochTo()", DOCS_RANGE) == "1492750877-1492751177"
    assert parse_interval("'30s'") == 30.0 and parse_interval("100ms") == 0.1 and parse_interval("1w") == 604800.0


def test_single_values_are_inserted_bare_and_multi_values_as_a_quoted_list() -> None:
    variables = {
        "device": Variable(("o'brien-1",), quoted=False),
        "province": Variable(("can-tho", "ha-noi"), quoted=True),
    }
    sql = "WHERE device_id = '$device' AND province IN ($province) AND x = '${device}' OR [[device]]"
    assert interpolate_variables(sql, variables) == (
        "WHERE device_id = 'o''brien-1' AND province IN ('can-tho','ha-noi') AND x = 'o''brien-1' OR o''brien-1"
    )
    # Names that are no variable (macros, globals) are left for the later steps.
    assert interpolate_variables("$__timeFilter(ts) $__interval $other", variables) == (
        "$__timeFilter(ts) $__interval $other"
    )


def test_expand_runs_variables_then_globals_then_macros() -> None:
    sql = "SELECT $__timeGroupAlias(ts, $__interval), count(*) FROM r WHERE $__timeFilter(ts) AND p IN ($p)"
    assert expand(sql, time_range=DOCS_RANGE, variables={"p": Variable(("a",), quoted=True)}) == (
        "SELECT time_bucket('300.000s',ts) AS \"time\", count(*) FROM r "
        "WHERE ts BETWEEN '2017-04-21T05:01:17Z' AND '2017-04-21T05:06:17Z' AND p IN ('a')"
    )


def test_fractional_seconds_are_written_as_go_writes_rfc3339nano() -> None:
    assert rfc3339(datetime(2026, 11, 22, 8, 0, 0, 250000, tzinfo=UTC)) == "2026-11-22T08:00:00.25Z"
