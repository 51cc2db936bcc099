"""The few panel shapes the center's dashboards use, built with the SDK's typed builders in one house style:
every panel reads the `ioc-timescaledb` datasource with one or more raw-SQL targets."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Final

from grafana_foundation_sdk.builders import common as common_b
from grafana_foundation_sdk.builders import dashboard as dashboard_b
from grafana_foundation_sdk.builders import geomap as geomap_b
from grafana_foundation_sdk.builders import stat as stat_b
from grafana_foundation_sdk.builders import table as table_b
from grafana_foundation_sdk.builders import timeseries as timeseries_b
from grafana_foundation_sdk.models import common
from grafana_foundation_sdk.models import dashboard as dashboard_m
from grafana_foundation_sdk.models import geomap as geomap_m

from dashboards.sql import Sql, datasource_ref

# Operations centers run on Vietnam's time; Grafana takes an IANA zone as a dashboard's timezone.
TIMEZONE: Final = "Asia/Ho_Chi_Minh"
DEFAULT_FROM: Final = "now-6h"
REFRESH: Final = "1m"
# The tag every dashboard of ours carries: the dashboards' link bar lists them, provisioning finds strays by it.
IOC_TAG: Final = "ioc"
GRID_WIDTH: Final = 24
# The device drill-down, opened from a table row with its province and device (Grafana data link variables).
DRILLDOWN_UID: Final = "ioc-device-drilldown"
DEVICE_COLUMN: Final = "device_id"
PROVINCE_CODE_COLUMN: Final = "province_code"
DRILLDOWN_LINK: Final = (
    f"/d/{DRILLDOWN_UID}?var-province=${{__data.fields.{PROVINCE_CODE_COLUMN}}}"
    "&var-device=${__value.raw}&${__url_time_range}"
)
# Vietnam's mainland and islands fit in this view at zoom 5.
VIETNAM_CENTER_LAT: Final = 16
VIETNAM_CENTER_LON: Final = 106
VIETNAM_ZOOM: Final = 5


@dataclass(frozen=True, slots=True)
class Step:
    """A threshold: from `value` up, the field is drawn in `color`."""

    value: float
    color: str


def _thresholds(base: str, steps: Sequence[Step]) -> dashboard_b.ThresholdsConfig:
    return (
        dashboard_b.ThresholdsConfig()
        .mode(dashboard_m.ThresholdsMode.ABSOLUTE)
        .steps(
            [dashboard_m.Threshold(value=None, color=base), *(dashboard_m.Threshold(s.value, s.color) for s in steps)]
        )
    )


def time_series(
    *,
    title: str,
    targets: Sequence[Sql],
    unit: str,
    description: str,
    steps: Sequence[Step] = (),
    base_color: str = "green",
    bars: bool = False,
    stacked: bool = False,
    width: int = 12,
    height: int = 8,
) -> timeseries_b.Panel:
    """A time series panel: each target returns a `time` column, optionally a `metric` column naming the series,
    and numeric value columns."""
    panel = (
        timeseries_b.Panel()
        .title(title)
        .description(description)
        .datasource(datasource_ref())
        .targets([t.time_series() for t in targets])
        .unit(unit)
        .span(width)
        .height(height)
        .legend(
            common_b.VizLegendOptions()
            .display_mode(common.LegendDisplayMode.LIST)
            .placement(common.LegendPlacement.BOTTOM)
            .show_legend(True)
        )
        .tooltip(common_b.VizTooltipOptions().mode(common.TooltipDisplayMode.MULTI).sort(common.SortOrder.DESCENDING))
        .fill_opacity(60 if bars else 10)
    )
    if bars:
        panel = panel.draw_style(common.GraphDrawStyle.BARS)
    if stacked:
        panel = panel.stacking(common_b.StackingConfig().mode(common.StackingMode.NORMAL))
    if steps:
        panel = panel.thresholds(_thresholds(base_color, steps)).thresholds_style(
            common_b.GraphThresholdsStyleConfig().mode(common.GraphThresholdsStyleMode.DASHED)
        )
    return panel


def stat(
    *,
    title: str,
    target: Sql,
    unit: str,
    description: str,
    steps: Sequence[Step] = (),
    base_color: str = "green",
    decimals: int | None = None,
    width: int = 4,
    height: int = 4,
) -> stat_b.Panel:
    """A big number: the target returns one row with one numeric column."""
    panel = (
        stat_b.Panel()
        .title(title)
        .description(description)
        .datasource(datasource_ref())
        .with_target(target.table())
        .unit(unit)
        .span(width)
        .height(height)
        .graph_mode(common.BigValueGraphMode.NONE)
        .color_mode(common.BigValueColorMode.BACKGROUND)
        .text_mode(common.BigValueTextMode.VALUE)
        .reduce_options(common_b.ReduceDataOptions().calcs(["lastNotNull"]).values(False))
        .thresholds(_thresholds(base_color, steps))
    )
    if decimals is not None:
        panel = panel.decimals(decimals)
    return panel


def table(
    *,
    title: str,
    target: Sql,
    description: str,
    device_links: bool = False,
    width: int = 12,
    height: int = 8,
) -> table_b.Panel:
    """Rows as the query returns them, sorted by the query. `device_links`: the query returns `device_id` and
    `province_code`; each device id opens the device drill-down (the province code column is hidden)."""
    panel = (
        table_b.Panel()
        .title(title)
        .description(description)
        .datasource(datasource_ref())
        .with_target(target.table())
        .span(width)
        .height(height)
        .filterable(True)
    )
    if device_links:
        link = {"title": "Chi tiết thiết bị / Device drill-down", "url": DRILLDOWN_LINK}
        panel = panel.override_by_name(
            DEVICE_COLUMN, [dashboard_m.DynamicConfigValue(id_val="links", value=[link])]
        ).override_by_name(PROVINCE_CODE_COLUMN, [dashboard_m.DynamicConfigValue(id_val="custom.hidden", value=True)])
    return panel


@dataclass(frozen=True, slots=True)
class MapLayer:
    """Markers from the target `ref_id`, placed by its `latitude` and `longitude` columns."""

    name: str
    ref_id: str
    color: str
    size_field: str | None = None


def _marker_layer(layer: MapLayer) -> common_b.MapLayerOptions:
    size: dict[str, object] = {"fixed": 6, "min": 4, "max": 18}
    if layer.size_field is not None:
        size["field"] = layer.size_field
    return (
        common_b.MapLayerOptions()
        .type("markers")
        .name(layer.name)
        .location(
            common_b.FrameGeometrySource()
            .mode(common.FrameGeometrySourceMode.COORDS)
            .latitude("latitude")
            .longitude("longitude")
        )
        .filter_data({"id": "byRefId", "options": layer.ref_id})
        .config(
            {
                "showLegend": True,
                "style": {
                    "color": {"fixed": layer.color},
                    "opacity": 0.7,
                    "size": size,
                    "symbol": {"fixed": "img/icons/marker/circle.svg", "mode": "fixed"},
                },
            }
        )
        .tooltip(True)
    )


def geomap(
    *,
    title: str,
    targets: Sequence[Sql],
    layers: Sequence[MapLayer],
    description: str,
    width: int = 12,
    height: int = 12,
) -> geomap_b.Panel:
    """A map of Vietnam with one marker layer per target; every target returns `latitude` and `longitude`."""
    return (
        geomap_b.Panel()
        .title(title)
        .description(description)
        .datasource(datasource_ref())
        .targets([t.table() for t in targets])
        .span(width)
        .height(height)
        .view(geomap_b.MapViewConfig().id("coords").lat(VIETNAM_CENTER_LAT).lon(VIETNAM_CENTER_LON).zoom(VIETNAM_ZOOM))
        .controls(geomap_b.ControlsOptions().show_zoom(True).mouse_wheel_zoom(True).show_scale(True))
        .layers([_marker_layer(layer) for layer in layers])
        .tooltip(geomap_b.TooltipOptions().mode(geomap_m.TooltipMode.DETAILS))
    )
