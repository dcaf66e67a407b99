"""Contact lists kept in the database (table ``campaign_contacts``).

``import_csv`` loads a CSV with the same row checks as a campaign's own CSV:
bad rows are reported with file:line and skipped, good rows load (a contact
id already in the list is updated). Campaigns name the list; each run copies
it into ``dialer_contacts``.
"""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

from sqlalchemy import Engine, select
from sqlalchemy.orm import Session

from ccengine.yamlconf import ConfigIssue

from .campaign import Campaign, Contact, ContactTable, load_contacts
from .schema import ContactListRow


def import_csv(db: Engine, path: Path, list_name: str) -> tuple[int, int, list[ConfigIssue]]:
    """Load ``path`` into list ``list_name``; returns (added, updated, issues)."""
    contacts, issues = load_contacts(path)
    now = datetime.now(UTC)
    added = updated = 0
    with Session(db) as session, session.begin():
        existing = {row.contact_key: row for row in session.scalars(
            select(ContactListRow).where(ContactListRow.list_name == list_name))}
        for contact in contacts:
            source = f"{path}:{contact.line}"
            row = existing.get(contact.id)
            if row is None:
                session.add(ContactListRow(list_name=list_name, contact_key=contact.id, phone=contact.phone,
                                           timezone=contact.timezone, name=contact.name,
                                           attributes=contact.attributes, source=source, imported_at=now))
                added += 1
            else:
                row.phone, row.timezone, row.name = contact.phone, contact.timezone, contact.name
                row.attributes, row.source, row.imported_at = contact.attributes, source, now
                updated += 1
    return added, updated, issues


def read_list(db: Engine, list_name: str) -> list[Contact]:
    """The contacts of a list, in import order."""
    with Session(db) as session:
        rows = session.scalars(select(ContactListRow).where(ContactListRow.list_name == list_name)
                               .order_by(ContactListRow.id)).all()
        return [Contact(r.contact_key, r.phone, r.timezone, r.name, dict(r.attributes)) for r in rows]


def campaign_contacts(db: Engine, campaign: Campaign) -> tuple[list[Contact], list[ConfigIssue]]:
    """Contacts of a campaign reading a database list (an empty or unknown list is an issue)."""
    source = campaign.contacts
    assert isinstance(source, ContactTable)
    contacts = read_list(db, source.list)
    if contacts:
        return contacts, []
    return [], [ConfigIssue(f"table {source.table}", 0, 0, "contacts.list",
                            f"no contacts in list {source.list!r} (import them with "
                            f"`ccengine campaign contacts-import FILE.csv --list {source.list}`)")]
