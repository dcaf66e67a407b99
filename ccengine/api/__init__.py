"""The engine's network API: REST, event stream (WebSocket/SSE), webhooks, wallboard, metrics.

Everything here sits at the edge: requests are authenticated, authorised per route and per
event type, validated with pydantic, and privileged actions are written to the audit chain.
"""
