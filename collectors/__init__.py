"""How telemetry is read from miners: the snapshot model, the pyasic source and the emulator."""
