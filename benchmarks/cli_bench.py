"""How long each ``flask --app wsgi ...`` command takes, from the shell to its exit (issue 23).

    python -m benchmarks.cli_bench [--rounds 3]

Every command runs for real on a fresh SQLite database and image store in a temporary
folder (production settings, so no development admin is made). Prints, per command, the
median wall time and the CPU time (user + system) it used, and the machine's load, since
the wall time of a loaded machine says more about the machine than about the command.
The target: at most 3 s each.
"""

from __future__ import annotations

import argparse
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from tests.support.models import ROOT

TARGET_S = 3.0
PASSWORD = "a long password for the bench\n"


def commands(scratch: Path, round_: int) -> list[tuple[list[str], str | None]]:
    """(arguments, stdin) of each command measured; names and folders new in each round."""
    user, folder = f"bench{round_}", str(scratch / f"backup{round_}")
    return [
        (["users", "--help"], None),
        (["users", "create", user, "--role", "admin"], PASSWORD),
        (["users", "list"], None),
        (["tokens", "--help"], None),
        (["tokens", "create", user], None),
        (["tokens", "list"], None),
        (["backup", "--help"], None),
        (["backup", "create", folder], None),
        (["backup", "verify", folder], None),
        (["audit", "--help"], None),
        (["audit", "verify"], None),
        (["images", "--help"], None),
        (["images", "gc", "--dry-run"], None),
    ]


def timed(args: list[str], stdin: str | None, env: dict[str, str]) -> tuple[float, float]:
    """(wall seconds, CPU seconds) of one run; raises if the command fails."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    start = time.perf_counter()
    done = subprocess.run(
        [sys.executable, "-m", "flask", "--app", "wsgi", *args],
        input=stdin,
        capture_output=True,
        text=True,
        cwd=ROOT,
        env=env,
    )
    wall = time.perf_counter() - start
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if done.returncode != 0:
        raise RuntimeError(f"flask {' '.join(args)} failed:\n{done.stderr[-2000:]}")
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return wall, cpu


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3)
    rounds = parser.parse_args().rounds
    walls: dict[str, list[float]] = {}
    cpus: dict[str, list[float]] = {}
    with tempfile.TemporaryDirectory(prefix="cli-bench-") as name:
        scratch = Path(name)
        env = {
            **os.environ,
            "APP_ENV": "production",
            "SECRET_KEY": "b" * 64,
            "DATABASE_URL": f"sqlite:///{scratch / 'cases.sqlite3'}",
            "IMAGE_STORE": str(scratch / "images"),
        }
        load_before = os.getloadavg()[0]
        for round_ in range(rounds):
            for args, stdin in commands(scratch, round_):
                wall, cpu = timed(args, stdin, env)
                key = " ".join(a if not a.startswith(str(scratch)) else "FOLDER" for a in args)
                key = key.replace(f"bench{round_}", "USER")
                walls.setdefault(key, []).append(wall)
                cpus.setdefault(key, []).append(cpu)
        load_after = os.getloadavg()[0]
    print(f"{os.cpu_count()} CPUs, load average {load_before:.1f} before, {load_after:.1f} after")
    print(f"{'command':<40} {'wall s (median)':>16} {'CPU s (median)':>15}  <= {TARGET_S:g} s")
    for key, values in walls.items():
        wall, cpu = statistics.median(values), statistics.median(cpus[key])
        print(f"flask {key:<34} {wall:>16.2f} {cpu:>15.2f}  {'yes' if wall <= TARGET_S else 'NO'}")


if __name__ == "__main__":
    main()
