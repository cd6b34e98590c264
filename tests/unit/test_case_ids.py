"""Case ids stay exact where they are read: in a spreadsheet's CSV and on a command line."""

from __future__ import annotations

import secrets

import pytest

from app.records.cases import new_public_id


def test_a_case_id_never_starts_with_a_dash_or_an_underscore(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    drawn = iter(["-leadingdash0", "_underscore00", "AbC123xyz-_0"])
    monkeypatch.setattr(secrets, "token_urlsafe", lambda n: next(drawn))
    assert new_public_id() == "AbC123xyz-_0"


def test_case_ids_are_url_safe_and_sixteen_characters() -> None:
    ids = {new_public_id() for _ in range(2000)}
    assert len(ids) == 2000
    assert all(len(i) == 16 for i in ids)
    assert all(i[0].isalnum() for i in ids)
