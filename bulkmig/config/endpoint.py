"""A task's databases: the source and target URLs as :class:`Endpoint`, and the redaction that keeps
passwords out of every message.

Why a module of its own: stages, engines and tests open connections from an ``Endpoint`` without
caring how the task file was read; the URL rules (SQLAlchemy schemes, libpq's own parser and
keywords, no secret in a URL) are one concern, apart from the settings and the YAML.
"""

from __future__ import annotations

import dataclasses
import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, quote, unquote, urlencode

from bulkmig.config.reading import did_you_mean
from bulkmig.core.errors import ConfigError

ROLES = ("source", "target")
ENGINES = ("postgresql", "mysql", "sqlite", "dms-s3")
DEFAULT_PORTS = {"postgresql": 5432, "mysql": 3306}
# URL scheme (before any "+driver") -> engine.  SQLAlchemy spellings, so existing URLs paste in.
SCHEMES = {
    "postgresql": "postgresql",
    "postgres": "postgresql",
    "mysql": "mysql",
    "mariadb": "mysql",
    "sqlite": "sqlite",
    # An AWS DMS S3 target's folder, read as a source (bulkmig.dms.read): dms-s3://bucket/folder.
    "dms-s3": "dms-s3",
}

# libpq connection keywords (PostgreSQL 17 docs), so a typo such as `sslmod=` is caught on load
# rather than as "invalid connection option" on day three.  Value: the environment variable that
# carries it for subprocesses (pg_dump, psql), or None when libpq reads it only from a conninfo.
LIBPQ_PARAMS: dict[str, str | None] = {
    "host": "PGHOST",
    "hostaddr": "PGHOSTADDR",
    "port": "PGPORT",
    "dbname": "PGDATABASE",
    "user": "PGUSER",
    "passfile": "PGPASSFILE",
    "require_auth": "PGREQUIREAUTH",
    "channel_binding": "PGCHANNELBINDING",
    "connect_timeout": "PGCONNECT_TIMEOUT",
    "client_encoding": "PGCLIENTENCODING",
    "options": "PGOPTIONS",
    "application_name": "PGAPPNAME",
    "fallback_application_name": None,
    "keepalives": None,
    "keepalives_idle": None,
    "keepalives_interval": None,
    "keepalives_count": None,
    "tcp_user_timeout": None,
    "gssencmode": "PGGSSENCMODE",
    "sslmode": "PGSSLMODE",
    "sslnegotiation": "PGSSLNEGOTIATION",
    "requiressl": "PGREQUIRESSL",
    "sslcompression": "PGSSLCOMPRESSION",
    "sslcert": "PGSSLCERT",
    "sslkey": "PGSSLKEY",
    "sslcertmode": "PGSSLCERTMODE",
    "sslrootcert": "PGSSLROOTCERT",
    "sslcrl": "PGSSLCRL",
    "sslcrldir": "PGSSLCRLDIR",
    "sslsni": "PGSSLSNI",
    "requirepeer": "PGREQUIREPEER",
    "ssl_min_protocol_version": "PGSSLMINPROTOCOLVERSION",
    "ssl_max_protocol_version": "PGSSLMAXPROTOCOLVERSION",
    "krbsrvname": "PGKRBSRVNAME",
    "gsslib": "PGGSSLIB",
    "gssdelegation": "PGGSSDELEGATION",
    "service": "PGSERVICE",
    "target_session_attrs": "PGTARGETSESSIONATTRS",
    "load_balance_hosts": "PGLOADBALANCEHOSTS",
}
# Query parameters that are secrets: refused in a task file, masked by redact_url.
SECRET_PARAMS = frozenset({"password", "sslpassword"})
_REDACT_PARAMS = SECRET_PARAMS | {
    "secret",
    "token",
    "x-amz-signature",
    "x-amz-credential",
    "x-amz-security-token",
    "signature",
    "awsaccesskeyid",
}


# ------------------------------------------------------------------------------------------- redaction


def _split_authority(rest: str) -> tuple[str | None, str]:
    """Split ``user[:password]@host…`` (the text after ``scheme://``) into userinfo and the rest.

    The userinfo ends at the last ``@`` before the query, where the query starts at the first
    ``?`` *after* the first ``@``: so an unencoded ``/`` or ``?`` inside a password still counts
    as userinfo, and no fragment of a password is ever mistaken for a host or port and echoed.
    """
    first_at = rest.find("@")
    if first_at == -1:
        return None, rest
    q = rest.find("?", first_at)
    head = rest if q == -1 else rest[:q]
    at = head.rfind("@")
    return rest[:at], rest[at + 1 :]


def _mask_query(query: str) -> str:
    out = []
    for item in query.split("&"):
        key, eq, _ = item.partition("=")
        out.append(f"{key}=***" if eq and unquote(key).lower() in _REDACT_PARAMS else item)
    return "&".join(out)


def redact_url(url: str) -> str:
    """``url`` with any password removed and secret query values masked; safe for any message.

    Also masks ``password=…`` in libpq key=value strings, so a conninfo that ends up in an
    exception text is harmless.  Never raises.
    """
    text = str(url)
    scheme, sep, rest = text.partition("://")
    if sep and re.fullmatch(r"[A-Za-z][A-Za-z0-9+.-]*", scheme):
        userinfo, remainder = _split_authority(rest)
        auth = userinfo.split(":", 1)[0] + "@" if userinfo is not None else ""
        base, q, query = remainder.partition("?")
        return f"{scheme}://{auth}{base}{q}{_mask_query(query) if q else ''}"
    return re.sub(r"(?i)\b((?:ssl)?password\s*=\s*)('(?:[^'\\]|\\.)*'|\S+)", r"\1***", text)


# -------------------------------------------------------------------------------------------- endpoint


def _conninfo_value(value: str) -> str:
    """A libpq conninfo value: quoted when it is empty or holds a space, quote or backslash."""
    if value and not re.search(r"[\s'\\]", value):
        return value
    return "'" + value.replace("\\", "\\\\").replace("'", "\\'") + "'"


@dataclass(frozen=True)
class Endpoint:
    """A database given by a SQLAlchemy-style URL, with its password resolved from the environment.

    ``password`` is excluded from ``repr``, equality and the fingerprint; ``str()`` is the redacted
    URL, so an endpoint can be put in any message as it is.
    """

    role: str  # "source" | "target"
    engine: str  # "postgresql" | "mysql" | "sqlite" | "dms-s3" (host: the bucket, database: the folder)
    scheme: str  # as written, e.g. "postgresql+psycopg"
    host: str | None = None
    port: int | None = None
    user: str | None = None
    database: str | None = None  # for sqlite: the absolute path of the database file
    params: dict[str, str] = field(default_factory=dict, hash=False)
    password: str | None = field(default=None, repr=False, compare=False, hash=False)

    @classmethod
    def parse(cls, url: str, role: str, base_dir: Path | None = None) -> Endpoint:
        """Parse ``url``; refuses a password in it.  ``base_dir`` anchors relative sqlite paths."""
        where = f"{role}: {redact_url(url)}"
        if not isinstance(url, str) or "://" not in url:
            raise ConfigError(
                f"{role}: expected a database URL, got {redact_url(str(url))!r}",
                "write e.g. postgresql://user@host:5432/dbname, mysql://user@host/db or sqlite:///file.db",
            )
        scheme, _, rest = url.partition("://")
        engine = SCHEMES.get(scheme.lower().split("+", 1)[0])
        if engine is None:
            raise ConfigError(
                f"{where}: unsupported scheme {scheme!r}",
                "use postgresql://, postgres://, mysql://, mariadb://, sqlite:/// or dms-s3://",
            )
        if engine == "sqlite":
            return cls._parse_sqlite(url, rest, role, scheme, base_dir)
        if engine == "dms-s3":
            bucket, _, folder = rest.partition("/")
            bad = _check_s3_url(f"s3://{rest}") if bucket else "names no bucket"
            if role != "source" or bad or "?" in rest:
                raise ConfigError(
                    f"{where}: " + (bad or ("a DMS S3 folder can only be a source" if role != "source" else "no ?")),
                    "write source: dms-s3://bucket/folder (the BucketName and BucketFolder of the DMS S3 target)",
                )
            return cls(role, "dms-s3", "dms-s3", host=bucket, database=folder.strip("/") or None)
        userinfo, remainder = _split_authority(rest)
        hostport, _, tail = remainder.partition("/")
        path, _, query = tail.partition("?")
        if "?" in hostport:  # postgresql://host?sslmode=... (no database)
            hostport, _, query = hostport.partition("?")
        if userinfo is not None and ":" in userinfo:
            raise ConfigError(
                f"{role}: the URL contains a password; bulkmig never reads secrets from the task file",
                f"remove it from the URL and set BULKMIG_{role.upper()}_PASSWORD, or {role}_password_file"
                + (", PGPASSWORD or ~/.pgpass" if engine == "postgresql" else ""),
            )
        params: dict[str, str] = {}
        for k, v in parse_qsl(query, keep_blank_values=True):
            if k.lower() in SECRET_PARAMS:
                raise ConfigError(
                    f"{role}: the URL contains {k}=…; bulkmig never reads secrets from the task file",
                    f"remove it and set BULKMIG_{role.upper()}_PASSWORD or {role}_password_file",
                )
            params[k] = v
        host, port_text = _split_hostport(hostport)
        user = unquote(userinfo) if userinfo else None
        database = unquote(path) if path else None
        if engine == "postgresql":
            unknown = [k for k in params if k not in LIBPQ_PARAMS]
            if unknown:
                bad = ", ".join(f"{k!r}{did_you_mean(k, LIBPQ_PARAMS)}" for k in unknown)
                raise ConfigError(f"{where}: unknown libpq parameter {bad}", "see the libpq connection keywords")
            # libpq lets ?host=/?port=/?user=/?dbname= stand in for the URL parts; fold them in.
            for key, current in (("host", host), ("port", port_text), ("user", user), ("dbname", database)):
                if key in params:
                    if current:
                        raise ConfigError(f"{where}: {key} is given twice (in the URL and as ?{key}=)", "keep one")
                    value = params.pop(key)
                    if key == "host":
                        host = value
                    elif key == "port":
                        port_text = value
                    elif key == "user":
                        user = value
                    else:
                        database = value
            # The values come from libpq's own URL parser (multi-host lists, percent-encoding, IPv6,
            # sockets): what bulkmig connects to is exactly what psql would connect to.
            host, port_text, user, database = _libpq_url_parts(rest, where)
        port: int | None = None
        if port_text:
            for one in port_text.split(","):
                if not one.isdigit() or not 0 < int(one) < 65536:
                    raise ConfigError(f"{where}: port {one!r} is not a number from 1 to 65535", "fix the port")
            if "," in port_text:  # one port per host of a multi-host URL: libpq takes the list as it is
                params["port"] = port_text
            else:
                port = int(port_text)
        return cls(role, engine, scheme, host or None, port, user or None, database or None, params)

    @classmethod
    def _parse_sqlite(cls, url: str, rest: str, role: str, scheme: str, base_dir: Path | None) -> Endpoint:
        # sqlite:///relative.db -> rest "/relative.db"; sqlite:////abs.db -> rest "//abs.db".
        path, _, query = rest.partition("?")
        if not path.startswith("/") or path in ("/", "") or path.startswith("/:memory:"):
            raise ConfigError(
                f"{role}: {redact_url(url)} names no database file",
                "write sqlite:///relative/to/task.db or sqlite:////absolute/path.db",
            )
        file = unquote(path[1:])
        p = Path(file).expanduser()
        if not p.is_absolute():
            p = (base_dir or Path.cwd()) / p
        params = dict(parse_qsl(query, keep_blank_values=True))
        return cls(role, "sqlite", scheme, database=os.path.normpath(p), params=params)

    def with_password(self, password: str | None) -> Endpoint:
        return dataclasses.replace(self, password=password)

    def redacted(self) -> str:
        """The URL without any password: for messages, manifests and plan.json."""
        if self.engine == "dms-s3":
            return f"dms-s3://{self.host}" + (f"/{self.database}" if self.database else "")
        if self.engine == "sqlite":
            db = self.database or ""
            return f"{self.scheme}:///{quote(db, safe='/')}" + (
                f"?{urlencode(self.params, safe='/')}" if self.params else ""
            )
        host = self.host or ""
        if host.startswith("/"):
            host = quote(host, safe="")
        elif ":" in host:
            host = f"[{host}]"
        auth = f"{quote(self.user, safe='')}@" if self.user else ""
        port = f":{self.port}" if self.port else ""
        db = f"/{quote(self.database, safe='')}" if self.database else ""
        query = f"?{urlencode(self.params, safe='/')}" if self.params else ""
        return f"{self.scheme}://{auth}{host}{port}{db}{query}"

    def __str__(self) -> str:
        return self.redacted()

    def __repr__(self) -> str:
        return f"Endpoint({self.role}={self.redacted()!r})"

    def identity(self) -> dict[str, Any]:
        """What makes this *the same database* (not the same login): for fingerprints."""
        return {
            "engine": self.engine,
            "host": self.host,
            "port": self.port or DEFAULT_PORTS.get(self.engine),
            "database": self.database,
        }

    def _require_postgres(self, what: str) -> None:
        if self.engine != "postgresql":
            raise ConfigError(f"{self.role} {self.redacted()} is not PostgreSQL", f"{what} is for PostgreSQL only")

    def _login_parts(self) -> list[tuple[str, str]]:
        """The libpq keywords the URL itself sets (host, port, user, dbname) and the password, those given:
        one list, so the conninfo and the environment of a subprocess never disagree on where to connect."""
        parts = (
            ("host", self.host),
            ("port", str(self.port) if self.port else None),
            ("user", self.user),
            ("dbname", self.database),
            ("password", self.password),
        )
        return [(key, value) for key, value in parts if value is not None]

    def libpq_conninfo(self) -> str:
        """``key=value`` connection string for psycopg/libpq, password included: never log it."""
        self._require_postgres("a libpq conninfo")
        items = [*self._login_parts(), *self.params.items()]
        return " ".join(f"{k}={_conninfo_value(v)}" for k, v in items)

    def libpq_env(self) -> dict[str, str]:
        """PG* environment variables for subprocesses (pg_dump, psql): merge into ``os.environ``.

        Parameters libpq reads only from a conninfo (keepalives, …) have no variable and are left out.
        """
        self._require_postgres("a libpq environment")
        env = {("PGPASSWORD" if key == "password" else LIBPQ_PARAMS[key]): value for key, value in self._login_parts()}
        for key, value in self.params.items():
            var = LIBPQ_PARAMS.get(key)
            if var:
                env[var] = value
        return env


def _libpq_url_parts(rest: str, where: str) -> tuple[str | None, str | None, str | None, str | None]:
    """host, port, user and dbname of ``postgresql://<rest>`` as libpq parses them (``h1,h2`` and
    ``5432,5433`` for a multi-host URL).  ``rest`` holds no password: ``Endpoint.parse`` refused it first."""
    from psycopg import ProgrammingError
    from psycopg.conninfo import conninfo_to_dict

    try:
        # bulkmig has always taken unencoded spaces (`my db`); libpq wants them as %20.
        parts = conninfo_to_dict(f"postgresql://{rest.replace(' ', '%20')}")
    except ProgrammingError as exc:
        reason = str(exc).strip()
        hint = "see libpq's connection URI format"
        raise ConfigError(f"{where}: libpq cannot parse this URL ({reason})", hint) from None
    return tuple(parts.get(k) for k in ("host", "port", "user", "dbname"))  # type: ignore[return-value]


def _split_hostport(hostport: str) -> tuple[str | None, str | None]:
    if hostport.startswith("["):  # [::1]:5432
        host, _, after = hostport[1:].partition("]")
        return host or None, after[1:] if after.startswith(":") else None
    if hostport.count(":") == 1:
        host, _, port = hostport.partition(":")
        return unquote(host) or None, port or None
    return unquote(hostport) or None, None


_BUCKET_RE = re.compile(r"[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]")


def _check_s3_url(url: str) -> str | None:
    """A problem with an ``s3://bucket[/prefix]`` URL, or None."""
    rest = url[len("s3://") :]
    bucket, _, prefix = rest.partition("/")
    if not _BUCKET_RE.fullmatch(bucket) or ".." in bucket:
        return f"{bucket!r} is not a valid bucket name (3-63 characters: lower-case letters, digits, dots, hyphens)"
    if "//" in prefix or prefix.startswith("/"):
        return f"the prefix {prefix!r} has an empty path segment ('//')"
    return None
