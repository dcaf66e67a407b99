"""Append-only, hash-chained audit trail (PCI DSS req. 10) with signed offline exports."""
