"""A real PostgreSQL (Debian's ``postgresql`` package) in a throw-away cluster on a free port.

The cluster lives in a fresh temporary directory, listens on loopback only, trusts local
connections (nothing but the suite can reach it) and runs with ``fsync=off``: it is a test
database, made and thrown away by the suite. PostgreSQL refuses to run as root, so under root the
server runs as the ``postgres`` system user that Debian's package creates.
"""

from __future__ import annotations

import glob
import os
import pwd
import shutil
import signal
import subprocess
import tempfile
from collections.abc import Sequence
from pathlib import Path

from .procs import LOOPBACK, ManagedProcess, free_port

INSTALL_HINT = ("PostgreSQL server binaries (initdb, postgres) not found: run scripts/test.sh, "
                "which installs the Debian package 'postgresql'")
MIGRATIONS_DIR = Path(__file__).resolve().parents[2] / "migrations"
SUPERUSER = "postgres"


def find_pg_bin() -> Path:
    """The directory holding ``initdb`` and ``postgres`` (newest Debian version first)."""
    override = os.environ.get("EXAI_PG_BIN")
    candidates = [override] if override else []
    candidates += sorted(glob.glob("/usr/lib/postgresql/*/bin"),
                         key=lambda p: int(Path(p).parent.name) if Path(p).parent.name.isdigit()
                         else 0, reverse=True)
    on_path = shutil.which("initdb")
    if on_path:
        candidates.append(str(Path(on_path).parent))
    for candidate in candidates:
        if (candidate and (Path(candidate) / "initdb").is_file()
                and (Path(candidate) / "postgres").is_file()):
            return Path(candidate)
    raise RuntimeError(INSTALL_HINT)


def _run_as() -> tuple[list[str], pwd.struct_passwd | None]:
    """The command prefix that drops root to the ``postgres`` user (empty when not root)."""
    if os.geteuid() != 0:
        return [], None
    try:
        user = pwd.getpwnam("postgres")
    except KeyError:
        raise RuntimeError(
            "running as root but there is no 'postgres' user: " + INSTALL_HINT) from None
    runuser = shutil.which("runuser")
    if runuser:
        return [runuser, "-u", user.pw_name, "--"], user
    return ([shutil.which("su") or "su", user.pw_name, "-s", "/bin/sh", "-c"],  # pragma: no cover
            user)


def _as_user(prefix: list[str], argv: Sequence[str]) -> list[str]:
    if prefix and prefix[-1] == "-c":  # su: one shell string
        return [*prefix, " ".join(_quote(a) for a in argv)]
    return [*prefix, *argv]


def _quote(arg: str) -> str:
    return "'" + arg.replace("'", "'\"'\"'") + "'"


class PostgresCluster:
    """One initdb'd cluster; ``start()``, ``create_database()``, ``dsn()``, ``stop()``."""

    def __init__(self, root: Path | None = None, port: int | None = None) -> None:
        self.bin = find_pg_bin()
        self.port = port or free_port()
        # Not under pytest's tmp dir: that one is private to root, and the server runs as postgres.
        self.root = Path(root or tempfile.mkdtemp(prefix="exai-pg-"))
        self.data = self.root / "data"
        self._prefix, self._user = _run_as()
        self.process: ManagedProcess | None = None

    def _own(self, path: Path) -> None:
        if self._user is not None:
            os.chown(path, self._user.pw_uid, self._user.pw_gid)

    def init(self) -> None:
        self.root.mkdir(parents=True, exist_ok=True)
        self._own(self.root)
        argv = [str(self.bin / "initdb"), "-D", str(self.data), "-U", SUPERUSER, "--auth=trust",
                "--encoding=UTF8", "--locale=C", "--no-sync"]
        result = subprocess.run(_as_user(self._prefix, argv), capture_output=True, text=True,
                                cwd=self.root, check=False)
        if result.returncode != 0:
            raise RuntimeError(
                f"initdb failed ({result.returncode}):\n{result.stdout}\n{result.stderr}")

    def start(self) -> PostgresCluster:
        if not (self.data / "PG_VERSION").exists():
            self.init()
        argv = [str(self.bin / "postgres"), "-D", str(self.data), "-p", str(self.port),
                "-c", f"listen_addresses={LOOPBACK}", "-c", f"unix_socket_directories={self.root}",
                "-c", "fsync=off", "-c", "synchronous_commit=off", "-c", "full_page_writes=off",
                "-c", "max_connections=50"]
        self.process = ManagedProcess(
            name="postgres", argv=_as_user(self._prefix, argv), log_path=self.root / "postgres.log",
            ready=self._ready, cwd=self.root,
        )
        self.process.start()
        return self

    def _ready(self) -> bool:
        import psycopg

        with psycopg.connect(self.dsn("postgres"), connect_timeout=1):
            return True

    def dsn(self, dbname: str = "postgres") -> str:
        return f"postgresql://{SUPERUSER}@{LOOPBACK}:{self.port}/{dbname}"

    def create_database(self, name: str) -> str:
        import psycopg

        with psycopg.connect(self.dsn("postgres"), autocommit=True) as conn:
            conn.execute(f'drop database if exists "{name}"')
            conn.execute(f'create database "{name}"')
        return self.dsn(name)

    def stop(self) -> None:
        if self.process is not None:
            self.process.stop(sig=signal.SIGINT)  # "fast" shutdown: do not wait for clients
            self.process = None

    def destroy(self) -> None:
        self.stop()
        shutil.rmtree(self.root, ignore_errors=True)


def migration_files() -> list[Path]:
    """The repository's migrations, in the order they apply."""
    return sorted(MIGRATIONS_DIR.glob("*.sql"))


def apply_migrations(dsn: str) -> list[str]:
    """Apply every migration file to ``dsn``; returns the names applied."""
    import psycopg

    applied = []
    with psycopg.connect(dsn, autocommit=True) as conn:
        for path in migration_files():
            conn.execute(path.read_text(encoding="utf-8"))
            applied.append(path.name)
    return applied
