"""Automatic call distribution: queue definitions, the router and the service around it."""

from .native import select

ROUTER = select()  # compiled or pure router, and why (logged by the engine at start)
