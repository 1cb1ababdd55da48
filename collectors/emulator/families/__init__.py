"""Firmware families: what each firmware answers on 4028, HTTP and gRPC."""
