"""A protocol-faithful emulated mine site that unmodified pyasic cannot tell from hardware.

Modules, each owning one concern:

- ``profiles``: model profiles (nameplate, layout, firmware thermal limits).
- ``physics``: airflow at altitude, fan controller, throttle and trip (pure).
- ``scenario``: strict scenario models and YAML loading.
- ``miner``: one emulated miner (identity, physics, faults, render cache, truth).
- ``wire``: the 4028 RPC and HTTP/1.1 server protocols and wire-level faults.
- ``families``: what each firmware answers (Antminer, Whatsminer, Avalon, Bitaxe, BOS+, VNish).
- ``fleet``: every miner's listeners, the simulated clock, the site and the physics tick.
- ``control``: the HTTP control API (truth, faults, site, clock, stats).
- ``server``: ``EmulatorServer``, the in-process entry point; ``__main__``: the CLI.
"""
