"""``altiwatch notify``: the MQTT alert subscriber delivering alarm events to chat and e-mail."""
