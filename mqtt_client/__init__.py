"""The center's MQTT client: connecting, subscribing, the fast QoS 1 receive path and batched acknowledgements."""
