"""MQTT events: payloads, topics, the durable outbox and the aiomqtt publisher."""
