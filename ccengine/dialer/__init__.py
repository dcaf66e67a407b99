"""Outbound dialer domain: pacing, estimators, abandonment rules, simulator.

Pure code, no PBX I/O: the campaign runner feeds it snapshots and obeys its
decisions; the simulator drives the same objects against a modelled world.
"""
