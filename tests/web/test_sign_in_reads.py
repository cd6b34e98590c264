"""A signed-in page reads its sign-in and the signed-in user in one query."""

from __future__ import annotations

from flask import Flask

from tests.support.accounts import signed_in
from tests.support.statements import statements


def test_a_signed_in_page_reads_its_sign_in_with_its_user_in_one_select(app: Flask) -> None:
    client = signed_in(app.test_client(), "viewer")
    assert client.get("/account/password").status_code == 200  # the last use written once
    with statements(app) as sent:
        assert client.get("/account/password").status_code == 200
    assert len(sent) == 1, sent
    assert "FROM login_sessions" in sent[0]
    assert "JOIN users" in sent[0]
