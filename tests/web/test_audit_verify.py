"""``flask audit verify``: OK with the count and the newest hash, or the first broken link
and exit status 1."""

from __future__ import annotations

from flask import Flask

from tests.support.audit import tamper


def run(app: Flask, *args: str, stdin: str | None = None):
    return app.test_cli_runner().invoke(args=list(args), input=stdin)


def test_audit_verify_says_ok_or_names_the_first_broken_event(app: Flask) -> None:
    run(app, "users", "create", "erin", "--role", "viewer", stdin="a long password\n")
    run(app, "tokens", "create", "erin")
    run(app, "users", "disable", "erin")
    verified = run(app, "audit", "verify")
    assert verified.exit_code == 0, verified.output
    assert verified.output.startswith("audit trail OK: 3 events; the newest hash is ")

    engine = app.extensions["records"].engine
    tamper(engine, "UPDATE audit_events SET object_id = 'frank' WHERE id = 2")
    broken = run(app, "audit", "verify")
    assert broken.exit_code == 1
    assert "broken at event 2" in broken.output
    assert "events checked before it: 1" in broken.output
