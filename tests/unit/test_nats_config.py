"""The NATS node configuration ioc writes, the accounts' rights, and the subject ↔ topic mapping of ingest."""

from __future__ import annotations

from pathlib import Path

import pytest

from embedded import nats as embedded_nats
from embedded.nats import cluster_specs, device_user, ingest_user, render_nats_config
from ingest import jetstream_source
from ingest.jetstream_source import subject_topic


def test_three_hosts_make_three_nodes_each_routing_to_the_two_others_with_three_replicas() -> None:
    specs = cluster_specs(["10.0.0.1", "10.0.0.2", "10.0.0.3"], client_port=4222, cluster_port=6222, mqtt_port=1883)
    assert [s.name for s in specs] == ["n1", "n2", "n3"]
    assert specs[1].routes == ("10.0.0.1:6222", "10.0.0.3:6222")
    assert {s.stream_replicas for s in specs} == {3}
    text = render_nats_config(specs[1], store_dir=Path("/data/js"), users=[ingest_user(name="ing", password="pw")])
    assert 'server_name: "n2"' in text
    assert 'routes: ["nats-route://10.0.0.1:6222", "nats-route://10.0.0.3:6222"]' in text
    assert "stream_replicas: 3" in text
    assert 'store_dir: "/data/js"' in text
    assert "port: 1883" in text


def test_a_single_node_has_no_cluster_block_and_one_replica() -> None:
    (spec,) = cluster_specs(["127.0.0.1"], client_port=1, cluster_port=2, mqtt_port=3)
    text = render_nats_config(spec, store_dir=Path("/js"), users=[ingest_user(name="ing", password="pw")])
    assert "cluster {" not in text
    assert "stream_replicas: 1" in text


def test_nobody_connects_anonymously() -> None:
    (spec,) = cluster_specs(["127.0.0.1"], client_port=1, cluster_port=2, mqtt_port=3)
    with pytest.raises(ValueError, match="at least one account"):
        render_nats_config(spec, store_dir=Path("/js"), users=[])


def test_a_device_may_publish_only_its_own_channels_and_read_only_its_own_commands() -> None:
    user = device_user(device_id="m-1", province="can-tho", sector="energy", password="s3cret")
    prefix = "ioc.v1.can-tho.energy.m-1"
    assert user.publish == (f"{prefix}.telemetry", f"{prefix}.telemetry.senml", f"{prefix}.status", f"{prefix}.cmd.ack")
    assert user.subscribe == (f"{prefix}.cmd",)
    assert user.connection_types == ("MQTT",)
    assert not any("*" in s or ">" in s or s.startswith("$") for s in (*user.publish, *user.subscribe))
    assert "s3cret" not in repr(user)


def test_ingest_may_only_use_its_consumer_on_the_mqtt_message_stream() -> None:
    user = ingest_user(name="ioc-ingest", password="pw")
    assert all(s == "$JS.API.INFO" or "$MQTT_msgs" in s for s in user.publish)
    assert not any(s.startswith("ioc.") for s in user.publish)
    assert user.subscribe == ("_INBOX.>",)


def test_ingest_and_the_node_configuration_agree_on_the_stream() -> None:
    assert jetstream_source.MQTT_STREAM == embedded_nats.MQTT_STREAM
    assert jetstream_source.MQTT_STREAM_SUBJECT_PREFIX == embedded_nats.MQTT_STREAM_SUBJECT_PREFIX
    assert jetstream_source.TELEMETRY_FILTER == embedded_nats.TELEMETRY_STREAM_FILTER


@pytest.mark.parametrize(
    ("subject", "topic"),
    [
        ("$MQTT.msgs.ioc.v1.can-tho.energy.m-1.telemetry", "ioc/v1/can-tho/energy/m-1/telemetry"),
        ("$MQTT.msgs.ioc.v1.can-tho.energy.m-1.telemetry.senml", "ioc/v1/can-tho/energy/m-1/telemetry/senml"),
        ("$MQTT.msgs.ioc.v1.can-tho.energy.m-1.status", None),
        ("$MQTT.msgs.ioc.v1.can-tho.energy.m-1.cmd.ack", None),
        ("ioc.v1.can-tho.energy.m-1.telemetry", None),
    ],
)
def test_stream_subjects_map_back_to_telemetry_topics_and_nothing_else(subject: str, topic: str | None) -> None:
    assert subject_topic(subject, "$MQTT.msgs.") == topic
