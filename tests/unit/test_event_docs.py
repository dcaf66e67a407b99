"""docs/events.md documents every event type at its current version."""

from pathlib import Path

from ccengine.core.events import PAYLOADS

DOC = (Path(__file__).resolve().parents[2] / "docs" / "events.md").read_text()


def test_every_event_type_and_field_is_documented() -> None:
    for event_type, payload in PAYLOADS.items():
        row = next((line for line in DOC.splitlines() if line.startswith(f"| `{event_type}` |")), None)
        assert row is not None, f"{event_type} missing from docs/events.md"
        assert f"| {payload.VERSION} |" in row, f"{event_type}: version {payload.VERSION} not documented"
        for field in payload.model_fields:
            assert f"`{field}`" in row, f"{event_type}.{field} not documented"
