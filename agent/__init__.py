"""The altiwatch daemon: config, polling, fleet state, alarms, exporters and CLI."""
