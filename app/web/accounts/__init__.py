"""Accounts and the audit trail: signing in and out, one's own password (``routes``, the
``auth`` blueprint), the users, their tokens and the audit pages (``admin``), and the
development server's first admin (``first_admin``)."""
