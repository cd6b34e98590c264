"""Who may do what: every route of the URL map as anonymous, as each role, and with valid,
revoked and malformed tokens; signing in and out, throttling, locking and expiry."""

from __future__ import annotations

import re
from datetime import timedelta
from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy import select, update

from app.records import accounts
from app.records.schema import LoginSession, SignInAttempt, utcnow
from app.web.auth import PUBLIC, TOKEN_BLUEPRINTS, permission_of
from tests.support.accounts import PASSWORDS, ROLES, app_users, form_token, token_for

# Values for the URL map's variables: the routes need not find anything, only answer.
URL_VALUES: dict[str, Any] = {
    "public_id": "nocase",
    "position": 1,
    "crop_id": 1,
    "username": "viewer",
}
PUBLIC_ENDPOINTS = {"health.healthz", "health.readyz", "auth.login", "auth.login_post", "static"}


def routes(app: Flask) -> list[tuple[str, str, str]]:
    """(endpoint, method, url) for every rule and method of the app."""
    found = []
    with app.test_request_context():
        for rule in app.url_map.iter_rules():
            values = {k: URL_VALUES.get(k, "x") for k in rule.arguments}
            if rule.endpoint == "static":
                values = {"filename": "style.css"}
            url = app.url_for(rule.endpoint, **values)
            for method in sorted((rule.methods or set()) - {"HEAD", "OPTIONS"}):
                found.append((rule.endpoint, method, url))
    return found


def token_only(endpoint: str) -> bool:
    return endpoint.split(".")[0] in TOKEN_BLUEPRINTS


def call(client: FlaskClient, method: str, url: str):
    response = client.open(url, method=method, data={}, follow_redirects=False)
    response.close()  # static files are answered with an open file
    return response


def test_every_route_declares_who_may_use_it(app: Flask) -> None:
    undeclared = [e for e, _, _ in routes(app) if permission_of(app, e) is None]
    assert undeclared == []
    public = {e for e, _, _ in routes(app) if permission_of(app, e) == PUBLIC}
    assert public == PUBLIC_ENDPOINTS


def test_a_route_added_without_a_permission_is_refused_to_everyone(app: Flask, as_role) -> None:
    app.add_url_rule("/forgotten", "forgotten", lambda: "open")
    assert as_role("admin").get("/forgotten").status_code == 403


def test_anonymous_requests_are_sent_to_sign_in_or_refused(app: Flask, anonymous) -> None:
    for endpoint, method, url in routes(app):
        response = call(anonymous, method, url)
        if endpoint in PUBLIC_ENDPOINTS:
            assert response.status_code not in (401, 403), (endpoint, method)
        elif token_only(endpoint):
            assert response.status_code == 401, (endpoint, method)
            assert response.get_json()["error"]["code"] == "unauthenticated"
            assert response.headers["WWW-Authenticate"].startswith("Bearer")
        else:
            assert response.status_code == 302, (endpoint, method)
            assert response.headers["Location"].startswith("/login?next="), (endpoint, method)


@pytest.mark.parametrize("role", ROLES)
def test_each_role_reaches_exactly_what_it_is_allowed(app: Flask, as_role, role: str) -> None:
    client = as_role(role)
    for endpoint, method, url in routes(app):
        permission = permission_of(app, endpoint)
        if permission == PUBLIC or endpoint == "auth.logout":
            continue
        assert permission is not None, endpoint  # every route names who may use it
        status = call(client, method, url).status_code
        assert status < 500, (role, endpoint, method, status)
        if accounts.can(role, permission):
            assert status not in (401, 403), (role, endpoint, method, status)
        else:
            assert status == 403, (role, endpoint, method, status)


def test_every_api_route_takes_a_valid_token_and_refuses_revoked_and_malformed_ones(
    app: Flask,
) -> None:
    valid = token_for(app, "admin")
    revoked = token_for(app, "admin")
    with app.extensions["records"].sessions() as session:
        accounts.revoke_token(accounts.get_token(session, revoked.split("_")[1]))
        session.commit()
    client = app.test_client()
    api = [(e, m, u) for e, m, u in routes(app) if token_only(e)]
    assert len(api) >= 10
    for endpoint, method, url in api:
        for token, expected in ((valid, None), (revoked, 401), ("ball_nonsense", 401)):
            client.environ_base["HTTP_AUTHORIZATION"] = f"Bearer {token}"
            status = call(client, method, url).status_code
            if expected is None:
                assert status not in (401, 403), (endpoint, method, status)
                assert status < 500, (endpoint, method, status)
            else:
                assert status == expected, (endpoint, method, token[:12], status)


def test_a_token_does_not_open_the_pages(app: Flask) -> None:
    client = app.test_client()
    client.environ_base["HTTP_AUTHORIZATION"] = f"Bearer {token_for(app, 'admin')}"
    for endpoint, method, url in routes(app):
        if permission_of(app, endpoint) != PUBLIC and not token_only(endpoint):
            response = call(client, method, url)
            assert response.status_code == 302, (endpoint, method)


def test_every_form_needs_its_csrf_token(app: Flask, as_role) -> None:
    admin = as_role("admin")
    posts = [
        (e, u)
        for e, m, u in routes(app)
        if m == "POST" and not token_only(e) and permission_of(app, e) != PUBLIC
    ]
    assert len(posts) >= 10
    for endpoint, url in posts:
        response = admin.post(url, data={})
        if response.status_code == 303:  # a form answered with a redirect: its page says why
            response = admin.get(response.headers["Location"])
        else:
            assert response.status_code == 400, endpoint
        page = response.get_data(as_text=True)
        assert "expired or was not sent from this site" in page, endpoint


def test_the_api_takes_tokens_not_the_browser_session(app: Flask, anonymous) -> None:
    app_users(app)
    token = token_for(app, "viewer")
    ok = anonymous.get("/api/v1/cases", headers={"Authorization": f"Bearer {token}"})
    assert ok.status_code == 200
    # A signed-in browser without a token is not an API client.
    browser = anonymous.application.test_client()
    html = browser.get("/login").get_data(as_text=True)
    browser.post(
        "/login",
        data={
            "username": "viewer",
            "password": PASSWORDS["viewer"],
            "csrf_token": form_token(html),
        },
    )
    assert browser.get("/cases/").status_code == 200
    assert browser.get("/api/v1/cases").status_code == 401


@pytest.mark.parametrize(
    ("header", "says"),
    [
        ("Bearer nonsense", "malformed"),
        ("Basic dmlld2VyOnB3", "Bearer"),
        ("Bearer ball_0123456789ab_" + "A" * 43, "not valid"),
        ("Bearer", "Bearer"),
    ],
)
def test_malformed_and_unknown_tokens_get_401_json(anonymous, header: str, says: str) -> None:
    response = anonymous.get("/api/v1/cases", headers={"Authorization": header})
    assert response.status_code == 401
    assert says in response.get_json()["error"]["message"]


def test_a_revoked_token_and_a_disabled_users_token_stop_working(app: Flask, anonymous) -> None:
    token = token_for(app, "clinician")
    headers = {"Authorization": f"Bearer {token}"}
    assert anonymous.get("/api/v1/models", headers=headers).status_code == 200
    public_id = token.split("_")[1]
    with app.extensions["records"].sessions() as session:
        accounts.revoke_token(accounts.get_token(session, public_id))
        session.commit()
    assert anonymous.get("/api/v1/models", headers=headers).status_code == 401

    other = token_for(app, "viewer")
    with app.extensions["records"].sessions() as session:
        accounts.set_active(session, accounts.get_user(session, "viewer"), False)
        session.commit()
    refused = anonymous.get("/api/v1/models", headers={"Authorization": f"Bearer {other}"})
    assert refused.status_code == 401


def test_tokens_are_stored_hashed(app: Flask) -> None:
    token = token_for(app, "viewer")
    with app.extensions["records"].engine.connect() as connection:
        dump = "".join(str(row) for row in connection.exec_driver_sql("SELECT * FROM api_tokens"))
    secret = token.split("_", 2)[2]
    assert secret not in dump
    assert token.split("_")[1] in dump


def sign_in(client: FlaskClient, username: str, password: str, next_page: str = ""):
    html = client.get("/login").get_data(as_text=True)
    data = {"username": username, "password": password, "csrf_token": form_token(html)}
    if next_page:
        data["next"] = next_page
    return client.post("/login", data=data)


def refusal(client: FlaskClient, response) -> str:
    """The page a refused form's redirect leads to (the form again, with the message)."""
    assert response.status_code == 303, response.status_code
    return client.get(response.headers["Location"]).get_data(as_text=True)


def test_signing_in_rotates_the_session_and_signing_out_ends_it(app: Flask, anonymous) -> None:
    app_users(app)
    anonymous.get("/login")
    before = anonymous.get_cookie("session")
    response = sign_in(anonymous, "clinician", PASSWORDS["clinician"], next_page="/cases/")
    assert response.status_code == 303
    assert response.headers["Location"] == "/cases/"
    after = anonymous.get_cookie("session")
    assert after is not None
    assert before is not None
    assert after.value != before.value
    with app.extensions["records"].sessions() as session:
        live = session.scalars(select(LoginSession).where(LoginSession.ended_at.is_(None))).all()
        assert len(live) == 1
    stolen = after.value
    page = anonymous.get("/cases/").get_data(as_text=True)
    assert anonymous.post("/logout", data={"csrf_token": form_token(page)}).status_code == 303
    assert anonymous.get("/cases/").status_code == 302
    # The old cookie, replayed, no longer signs anyone in: the sign-in ended on the server.
    replay = app.test_client()
    replay.set_cookie("session", stolen)
    assert replay.get("/cases/").status_code == 302


def test_sign_in_goes_only_to_local_pages(app: Flask, anonymous) -> None:
    app_users(app)
    response = sign_in(anonymous, "viewer", PASSWORDS["viewer"], next_page="//evil.example/")
    assert response.headers["Location"] == "/cases/"  # a viewer's home: it cannot analyse


@pytest.mark.parametrize(
    ("role", "asked", "lands"),
    [
        ("viewer", "", "/cases/"),
        ("viewer", "/", "/"),  # the root, which sends a viewer on to the case list
        ("viewer", "/cases/new", "/cases/"),
        ("viewer", "/admin/users", "/cases/"),
        ("viewer", "/api/docs", "/api/docs"),
        ("viewer", "/no/such/page", "/cases/"),
        ("clinician", "", "/"),
        ("clinician", "/cases/new?model=vggnet", "/cases/new?model=vggnet"),
        ("clinician", "/admin/audit", "/"),
        ("admin", "/admin/audit?action=login", "/admin/audit?action=login"),
    ],
)
def test_sign_in_lands_only_on_a_page_the_role_may_open(
    app: Flask, anonymous, role: str, asked: str, lands: str
) -> None:
    app_users(app)
    # The page the sign-in form was sent to, as the browser's redirect there names it.
    login = anonymous.get(f"/login?next={asked}" if asked else "/login").get_data(as_text=True)
    assert f'name="next" value="{asked}"' in login
    response = sign_in(anonymous, role, PASSWORDS[role], next_page=asked)
    assert response.status_code == 303
    assert response.headers["Location"] == lands
    landed = anonymous.get(lands, follow_redirects=True)
    assert landed.status_code == 200
    assert role != "viewer" or landed.request.path in ("/cases/", "/api/docs")


def test_an_anonymous_viewer_sent_to_sign_in_from_the_root_lands_on_the_case_list(
    app: Flask, anonymous
) -> None:
    app_users(app)
    sent = anonymous.get("/")
    assert sent.headers["Location"] == "/login?next=/"
    html = anonymous.get(sent.headers["Location"]).get_data(as_text=True)
    data = {"username": "viewer", "password": PASSWORDS["viewer"], "csrf_token": form_token(html)}
    kept = re.search(r'name="next" value="([^"]*)"', html)
    assert kept is not None
    data["next"] = kept.group(1)
    landed = anonymous.post("/login", data=data, follow_redirects=True)
    assert landed.status_code == 200
    assert landed.request.path == "/cases/"


def test_wrong_passwords_lock_the_account_at_that_address_for_a_while(
    app: Flask, anonymous
) -> None:
    app_users(app)
    wrong = refusal(anonymous, sign_in(anonymous, "viewer", "not the password at all"))
    assert accounts.REFUSED in wrong
    assert 'id="username" name="username" value="viewer"' in wrong  # kept for another try
    for _ in range(accounts.LOCK_AFTER - 1):
        sign_in(anonymous, "viewer", "not the password at all")
    locked = refusal(anonymous, sign_in(anonymous, "viewer", PASSWORDS["viewer"]))
    assert accounts.REFUSED in locked
    with app.extensions["records"].sessions() as session:
        long_ago = utcnow() - accounts.LOCK_FOR - timedelta(seconds=1)
        session.execute(update(SignInAttempt).values(last_at=long_ago))
        session.commit()
    signed = sign_in(anonymous, "viewer", PASSWORDS["viewer"])
    assert signed.status_code == 303
    assert signed.headers["Location"] == "/cases/"


def test_a_refused_sign_in_keeps_the_page_asked_for(app: Flask, anonymous) -> None:
    app_users(app)
    refused = sign_in(anonymous, "viewer", "not the password at all", next_page="/cases/?page=2")
    assert refused.headers["Location"] == "/login?next=/cases/?page%3D2"
    page = anonymous.get(refused.headers["Location"]).get_data(as_text=True)
    assert 'name="next" value="/cases/?page=2"' in page


def test_sign_in_attempts_are_throttled_per_account_and_address(app: Flask) -> None:
    app_users(app)
    limit = int(app.config["LOGIN_RATE_PER_ACCOUNT"].split()[0])
    attacker, owner = app.test_client(), app.test_client()
    attacker.environ_base["REMOTE_ADDR"] = "10.0.0.1"
    owner.environ_base["REMOTE_ADDR"] = "10.0.0.2"
    said = [refusal(attacker, sign_in(attacker, "ghost", "a wrong password")) for _ in range(limit)]
    assert all(accounts.REFUSED in page for page in said)
    throttled = refusal(attacker, sign_in(attacker, "ghost", "a wrong password"))
    assert "Too many sign-in attempts" in throttled
    assert accounts.REFUSED not in throttled
    # The same account from another address is not throttled by the attacker's attempts.
    elsewhere = refusal(owner, sign_in(owner, "ghost", "a wrong password"))
    assert accounts.REFUSED in elsewhere


def test_sign_in_attempts_are_throttled_per_address(app: Flask, anonymous) -> None:
    app.config["LOGIN_RATE_PER_ADDRESS"] = "3 per minute"
    said = [
        refusal(anonymous, sign_in(anonymous, f"ghost{i}", "some wrong password")) for i in range(4)
    ]
    assert ["Too many sign-in attempts" in page for page in said] == [False] * 3 + [True]


def test_a_sign_in_expires_after_being_idle(app: Flask, as_role) -> None:
    client = as_role("viewer")
    assert client.get("/cases/").status_code == 200
    idle = timedelta(minutes=app.config["SESSION_IDLE_MINUTES"] + 1)
    with app.extensions["records"].sessions() as session:
        session.execute(update(LoginSession).values(last_seen=utcnow() - idle))
        session.commit()
    response = client.get("/cases/")
    assert response.status_code == 302
    assert response.headers["Location"].startswith("/login")


def test_a_sign_in_ends_after_its_lifetime_however_busy(app: Flask, as_role) -> None:
    client = as_role("viewer")
    old = utcnow() - timedelta(hours=app.config["SESSION_LIFETIME_HOURS"], minutes=1)
    with app.extensions["records"].sessions() as session:
        session.execute(update(LoginSession).values(created_at=old))
        session.commit()
    assert client.get("/cases/").status_code == 302


def test_a_one_time_password_must_be_changed_first(app: Flask, anonymous) -> None:
    with app.extensions["records"].sessions() as session:
        accounts.create_user(
            session, "newcomer", "clinician", "temporary-pass-123", must_change=True
        )
        session.commit()
    response = sign_in(anonymous, "newcomer", "temporary-pass-123")
    assert response.headers["Location"] == "/account/password"
    assert anonymous.get("/cases/").headers["Location"] == "/account/password"
    page = anonymous.get("/account/password").get_data(as_text=True)
    short = anonymous.post(
        "/account/password",
        data={
            "current": "temporary-pass-123",
            "new": "short",
            "confirm": "short",
            "csrf_token": form_token(page),
        },
    )
    assert "at least 12 characters" in refusal(anonymous, short)
    # Length is the only rule: a long password of lower-case words is fine.
    chosen = "four plain words here"
    done = anonymous.post(
        "/account/password",
        data={
            "current": "temporary-pass-123",
            "new": chosen,
            "confirm": chosen,
            "csrf_token": form_token(page),
        },
    )
    assert done.status_code == 303
    assert done.headers["Location"] == "/"
    assert anonymous.get("/cases/").status_code == 200
    fresh = app.test_client()
    assert sign_in(fresh, "newcomer", chosen).status_code == 303


def test_the_login_form_needs_its_csrf_token(app: Flask, anonymous) -> None:
    app_users(app)
    response = anonymous.post(
        "/login", data={"username": "viewer", "password": PASSWORDS["viewer"]}
    )
    assert "expired or was not sent from this site" in refusal(anonymous, response)
    assert anonymous.get("/cases/").status_code == 302  # not signed in


@pytest.mark.parametrize(
    ("password", "problem"),
    [("short", "at least"), ("x" * 300, "at most"), ("Somebody-Else", "username")],
)
def test_the_password_policy_checks_length_only(password: str, problem: str) -> None:
    with pytest.raises(accounts.PasswordPolicyError, match=problem):
        accounts.check_password(password, "somebody-else")
    accounts.check_password("aaaaaaaaaaaa", "somebody")  # no composition rules


@pytest.mark.parametrize(
    "asked",
    [
        "/%09/evil.example",
        "/%0a/evil.example",
        "/%5C/evil.example",
        "/%5C%5Cevil.example",
        "//evil.example/",
        "https://evil.example/",
        "/cases/%0d%0aSet-Cookie:%20x=1",
        "/cases/%00",
    ],
)
def test_login_never_sends_a_signed_in_user_off_site(client: FlaskClient, asked: str) -> None:
    home = client.get("/login").headers["Location"]
    response = client.get(f"/login?next={asked}")
    assert response.status_code == 302
    assert response.headers["Location"] == home


@pytest.mark.parametrize("asked", ["/%09/evil.example", "/%0a/evil.example", "/%5C/x", "//x"])
def test_next_is_never_a_path_a_browser_reads_as_another_site(app: Flask, asked: str) -> None:
    from app.web.accounts.routes import _asked_page

    with app.test_request_context(f"/login?next={asked}"):
        assert _asked_page() is None
