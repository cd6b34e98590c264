"""An API request's token check: one read of the token with its user, no write unless the
request commits one (then the token's last use goes with it, at most once a minute)."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy import select, update

from app.records import accounts
from app.records.schema import ApiToken, utcnow
from tests.support.accounts import token_for
from tests.support.server import multipart
from tests.support.statements import statements


def public_id(token: str) -> str:
    return token.split("_")[1]


def last_used(app: Flask, token: str) -> Any:
    with app.extensions["records"].sessions() as session:
        return session.scalar(
            select(ApiToken.last_used).where(ApiToken.public_id == public_id(token))
        )


def set_last_used(app: Flask, token: str, ago: timedelta) -> None:
    with app.extensions["records"].sessions() as session:
        session.execute(
            update(ApiToken)
            .where(ApiToken.public_id == public_id(token))
            .values(last_used=utcnow() - ago)
        )
        session.commit()


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def new_case(client: FlaskClient, token: str, images) -> int:
    files = [("images", ("f0.png", images.make(size=(160, 160), seed=0)))]
    body, content_type = multipart({"reference": "TOK-1", "model": "lenet"}, files)
    response = client.post(
        "/api/v1/cases", data=body, content_type=content_type, headers=bearer(token)
    )
    return response.status_code


def test_a_read_only_api_request_reads_its_token_once_and_writes_nothing(
    app: Flask, anonymous: FlaskClient
) -> None:
    token = token_for(app, "viewer")
    with statements(app) as sent:
        response = anonymous.get("/api/v1/models", headers=bearer(token))
    assert response.status_code == 200
    assert len(sent) == 1, sent
    assert sent[0].startswith("SELECT api_tokens.secret_hash"), sent
    assert last_used(app, token) is None


def test_a_prediction_writes_nothing(app: Flask, anonymous: FlaskClient, images) -> None:
    token = token_for(app, "clinician")
    body, content_type = multipart({"model": "lenet"}, {"image": ("s.png", images.make())})
    with statements(app) as sent:
        response = anonymous.post(
            "/api/v1/predict", data=body, content_type=content_type, headers=bearer(token)
        )
    assert response.status_code == 200
    assert all(s.startswith("SELECT") for s in sent), sent
    assert last_used(app, token) is None


def test_a_request_that_commits_records_the_tokens_use(
    app: Flask, anonymous: FlaskClient, images
) -> None:
    token = token_for(app, "clinician")
    before = utcnow()
    assert new_case(anonymous, token, images) == 201
    used = last_used(app, token)
    assert used is not None
    assert used >= before


def test_the_tokens_use_is_written_at_most_once_a_minute(
    app: Flask, anonymous: FlaskClient, images
) -> None:
    token = token_for(app, "clinician")
    set_last_used(app, token, timedelta(seconds=10))
    recent = last_used(app, token)
    assert new_case(anonymous, token, images) == 201
    assert last_used(app, token) == recent

    set_last_used(app, token, timedelta(minutes=2))
    stale = last_used(app, token)
    assert new_case(anonymous, token, images) == 201
    assert last_used(app, token) > stale


def test_a_revocation_counts_at_the_very_next_request(app: Flask, anonymous: FlaskClient) -> None:
    token = token_for(app, "admin")
    for _ in range(3):
        assert anonymous.get("/api/v1/models", headers=bearer(token)).status_code == 200
    with app.extensions["records"].sessions() as session:
        accounts.revoke_token(accounts.get_token(session, public_id(token)))
        session.commit()
    refused = anonymous.get("/api/v1/models", headers=bearer(token))
    assert refused.status_code == 401
    assert "revoked" in refused.get_json()["error"]["message"]


def test_a_tokens_user_is_read_afresh(app: Flask, anonymous: FlaskClient) -> None:
    token = token_for(app, "viewer")
    delete = "/api/v1/cases/no-such-case"
    assert anonymous.delete(delete, headers=bearer(token)).status_code == 403
    with app.extensions["records"].sessions() as session:
        accounts.get_user(session, "viewer").role = "admin"
        session.commit()
    assert anonymous.delete(delete, headers=bearer(token)).status_code == 404
    with app.extensions["records"].sessions() as session:
        accounts.get_user(session, "viewer").must_change_password = True
        session.commit()
    assert anonymous.get("/api/v1/models", headers=bearer(token)).status_code == 403
