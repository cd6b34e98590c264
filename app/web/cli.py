"""``flask users ...``, ``flask tokens ...``, ``flask backup ...`` and ``flask images gc``
from the shell.

The interface is fixed, so scripts can rely on it: passwords are read from stdin when it
is not a terminal (one line), else prompted for twice; ``tokens create`` prints the token
as the last line of stdout. Every change is written to the audit trail as ``cli:<user>``.
"""

from __future__ import annotations

import getpass
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import timedelta
from pathlib import Path

import click
from flask import Flask, current_app
from flask.cli import AppGroup

from app.core.errors import RequestRefusedError
from app.records import accounts, audit_chain, backup, photographs
from app.records.audit import record
from app.records.database import upgrade
from app.web.records import commit, db, image_store

users = AppGroup("users", help="Create, disable and re-password user accounts.")
tokens = AppGroup("tokens", help="Create and revoke API tokens.")
backups = AppGroup("backup", help="Back up and restore the database and the photographs.")
audits = AppGroup("audit", help="Check the audit trail's hash chain.")
images = AppGroup("images", help="Look after the image store.")


def init_app(app: Flask) -> None:
    app.cli.add_command(users)
    app.cli.add_command(tokens)
    app.cli.add_command(backups)
    app.cli.add_command(audits)
    app.cli.add_command(images)


def _actor() -> str:
    return f"cli:{getpass.getuser()}"[:64]


def _read_password() -> str:
    if not sys.stdin.isatty():
        return sys.stdin.readline().rstrip("\r\n")
    return str(click.prompt("Password", hide_input=True, confirmation_prompt=True))


@contextmanager
def _refusals_said() -> Iterator[None]:
    """An account or backup that cannot be used: its reason on stderr, exit status 1."""
    try:
        yield
    except RequestRefusedError as exc:
        raise click.ClickException(exc.message) from None
    except backup.BackupError as exc:
        raise click.ClickException(str(exc)) from None


@users.command("create")
@click.argument("username")
@click.option("--role", required=True, type=click.Choice(accounts.ROLES))
@click.option("--name", "display_name", help="The person's full name, as reports print it.")
def create_user(username: str, role: str, display_name: str | None) -> None:
    """Create USERNAME with ROLE; the password comes from stdin or a prompt."""
    with _refusals_said():
        user = accounts.create_user(
            db(), username, role, _read_password(), display_name=display_name
        )
    record(db(), "user_created", _actor(), None, "user", user.username, role=role)
    commit()
    click.echo(f"created {user.username} ({role})")


@users.command("disable")
@click.argument("username")
def disable_user(username: str) -> None:
    """Disable USERNAME: their sign-ins end and their tokens stop working."""
    _set_active(username, False)


@users.command("enable")
@click.argument("username")
def enable_user(username: str) -> None:
    """Enable USERNAME again (and lift a lock after failed sign-ins)."""
    _set_active(username, True)


def _set_active(username: str, active: bool) -> None:
    with _refusals_said():
        user = accounts.get_user(db(), username)
    accounts.set_active(db(), user, active)
    action = "user_enabled" if active else "user_disabled"
    record(db(), action, _actor(), None, "user", user.username)
    commit()
    click.echo(f"{'enabled' if active else 'disabled'} {user.username}")


@users.command("unlock")
@click.argument("username")
def unlock_user(username: str) -> None:
    """Let USERNAME sign in again from every address locked after failed attempts."""
    with _refusals_said():
        user = accounts.get_user(db(), username)
    lifted = accounts.unlock(db(), user)
    record(db(), "user_unlocked", _actor(), None, "user", user.username, addresses=lifted)
    commit()
    click.echo(f"unlocked {user.username} (locked at {lifted} address(es))")


@users.command("set-password")
@click.argument("username")
def set_password(username: str) -> None:
    """Give USERNAME a new password (stdin or a prompt); their sign-ins end."""
    with _refusals_said():
        user = accounts.get_user(db(), username)
        accounts.set_password(db(), user, _read_password())
    record(db(), "password_changed", _actor(), None, "user", user.username)
    commit()
    click.echo(f"password changed for {user.username}")


@users.command("set-name")
@click.argument("username")
@click.argument("full_name")
def set_name(username: str, full_name: str) -> None:
    """Give USERNAME the full name that case reports print beside it."""
    with _refusals_said():
        user = accounts.get_user(db(), username)
        accounts.set_display_name(user, full_name)
    record(db(), "user_renamed", _actor(), None, "user", user.username)
    commit()
    click.echo(f"{user.username} is {user.display_name}")


@users.command("list")
def list_users() -> None:
    """Every user with role and state."""
    locked = accounts.locks(db())
    for user in accounts.all_users(db()):
        state = "active" if user.active else "disabled"
        if user.username in locked:
            state = "locked"
        click.echo(f"{user.username}\t{user.role}\t{state}\t{user.display_name or ''}")


@tokens.command("create")
@click.argument("username")
def create_token(username: str) -> None:
    """A new API token for USERNAME, printed once as the last line."""
    with _refusals_said():
        user = accounts.get_user(db(), username)
    token, text = accounts.create_token(db(), user)
    record(db(), "token_created", _actor(), None, "token", token.public_id, user=user.username)
    commit()
    click.echo(f"token {token.public_id} for {user.username}; it is shown only now:")
    click.echo(text)


@tokens.command("revoke")
@click.argument("token_id")
def revoke_token(token_id: str) -> None:
    """Revoke the token whose id is TOKEN_ID (the part after ball_)."""
    with _refusals_said():
        token = accounts.get_token(db(), token_id)
    accounts.revoke_token(token)
    record(
        db(), "token_revoked", _actor(), None, "token", token.public_id, user=token.user.username
    )
    commit()
    click.echo(f"revoked {token.public_id}")


@tokens.command("list")
@click.argument("username", required=False)
def list_tokens(username: str | None) -> None:
    """Token ids, owners and states (never the tokens themselves)."""
    with _refusals_said():
        people = [accounts.get_user(db(), username)] if username else accounts.all_users(db())
    for user in people:
        for token in accounts.user_tokens(db(), user):
            state = "revoked" if token.revoked_at else "active"
            click.echo(f"{token.public_id}\t{user.username}\t{state}\t{token.created_at:%Y-%m-%d}")


def _image_root() -> Path | None:
    root = current_app.config.get("IMAGE_STORE")
    return Path(root) if root and current_app.config.get("STORE_IMAGES", True) else None


@backups.command("create")
@click.argument("folder", type=click.Path(path_type=Path))
def create_backup(folder: Path) -> None:
    """Copy the database and the photographs into FOLDER (new); safe while the app runs."""
    with _refusals_said():
        made = backup.create(current_app.config["DATABASE_URL"], _image_root(), folder)
    record(db(), "backup_created", _actor(), None, None, None, folder=str(folder))
    commit()
    click.echo(f"backed up the {made.database} database and {made.photographs} photographs")
    click.echo(str(folder))


@backups.command("verify")
@click.argument("folder", type=click.Path(exists=True, file_okay=False, path_type=Path))
def verify_backup(folder: Path) -> None:
    """Check the backup in FOLDER against its manifest, without restoring it."""
    with _refusals_said():
        made, problems = backup.verify(folder)
    for problem in problems:
        click.echo(problem, err=True)
    if problems:
        raise click.ClickException(f"the backup in {folder} is not sound: {len(problems)} problems")
    click.echo(
        f"the backup in {folder} is sound: its {made.database} database and "
        f"{made.photographs} photographs match the manifest, and it holds every photograph "
        "its database names"
    )


@backups.command("restore")
@click.argument("folder", type=click.Path(exists=True, file_okay=False, path_type=Path))
@click.option("--yes", is_flag=True, help="Replace the records without asking.")
def restore_backup(folder: Path, yes: bool) -> None:
    """Replace the database and the photographs with the backup in FOLDER (stop the app first)."""
    if not yes:
        click.confirm("This replaces every case, user and audit event. Go on?", abort=True)
    records = current_app.extensions["records"]
    records.engine.dispose()  # no connection of this process holds the old database
    with _refusals_said():
        made = backup.restore(current_app.config["DATABASE_URL"], _image_root(), folder)
    upgrade(records.engine)  # a backup of an older version is brought to this one's schema
    record(db(), "backup_restored", _actor(), None, None, None, folder=str(folder))
    commit()
    click.echo(f"restored the backup made at {made.made_at} ({made.photographs} photographs)")


@images.command("gc")
@click.option(
    "--older-than",
    "minutes",
    type=click.IntRange(min=0),
    default=int(photographs.DEFAULT_AGE.total_seconds() // 60),
    show_default=True,
    help="Minutes since a file was written: younger ones may belong to an upload under way.",
)
@click.option("--dry-run", is_flag=True, help="Count what would be removed; remove nothing.")
def collect_images(minutes: int, dry_run: bool) -> None:
    """Remove the photographs no case names (left by uploads that failed or were cut off)."""
    store = image_store()
    if store is None:
        raise click.ClickException("this server keeps no photographs (STORE_IMAGES=0)")
    swept = photographs.sweep(store, db(), timedelta(minutes=minutes), dry=dry_run)
    if not dry_run:
        record(
            db(),
            "images_collected",
            _actor(),
            None,
            None,
            None,
            removed=swept.removed,
            freed_bytes=swept.freed_bytes,
            older_than_minutes=minutes,
        )
        commit()
    verb = "would remove" if dry_run else "removed"
    click.echo(
        f"{verb} {swept.removed} files no case names, older than {minutes} minutes "
        f"({swept.freed_bytes / 1e6:.1f} MB); kept {swept.too_recent} younger ones; "
        f"left {swept.not_ours} files the store did not write"
    )


@audits.command("verify")
def verify_audit() -> None:
    """Recompute every event's hash: OK with the newest hash, or the first broken link."""
    found = audit_chain.verify(db())
    if not found.ok:
        raise click.ClickException(
            f"the audit trail is broken at event {found.broken_at}: its hash does not follow "
            f"from its content and the event before it (events checked before it: {found.events})"
        )
    click.echo(f"audit trail OK: {found.events} events; the newest hash is {found.head}")
