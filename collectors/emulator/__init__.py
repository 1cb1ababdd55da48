"""A protocol-faithful emulated mine site that unmodified pyasic cannot tell from hardware."""
