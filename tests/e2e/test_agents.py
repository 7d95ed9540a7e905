"""agents/: the systemd units and the compose file run as written, as real processes, and extract through them.

Neither systemd nor Docker runs here, so this file does what they would do with the files, and no more:
it reads ``ExecStartPre=``/``ExecStart=`` with ``%i`` and the EnvironmentFile's variables substituted the
way systemd does (``${VAR}`` is one word, a bare ``$VAR`` word splits at spaces), and compose's
``command`` after compose's ``${VAR:-default}`` interpolation behind the Containerfile's ``ENTRYPOINT``.
The installed ``/opt/bulkmig/bin/dask`` (or the image's ``dask``) is this interpreter's ``-m dask``;
everything else on the line runs as written.  Host-specific values (ports, the device directories) come
from this test, but only for variables the shipped example files define.  The README's TLS setup is run
too (certificates from a CA made here).  The Containerfile's build
(apt-get, pip install) is not run: its ``COPY`` and ``pip install`` lines are checked against the
repository and the package metadata instead.
"""

from __future__ import annotations

import json
import os
import re
import shlex
import signal
import subprocess
import sys
import tomllib
from collections.abc import Callable
from importlib.metadata import entry_points, requires
from pathlib import Path
from typing import Any

import pytest
import yaml
from cryptography.x509.oid import ExtendedKeyUsageOID

from bulkmig.testing import pki

distributed = pytest.importorskip("distributed")

REPO = Path(__file__).resolve().parents[2]
AGENTS = REPO / "agents"
INSTALLED_DASK = "/opt/bulkmig/bin/dask"  # where agents/README.md installs bulkmig on a host
DIGEST = "SELECT count(*), md5(string_agg(id || a || b, ',' ORDER BY id)) FROM {}"


# ------------------------------------------------------------------------------ reading the files


def unit_service(path: Path) -> dict[str, list[str]]:
    """The ``[Service]`` section of a systemd unit: key -> its values in order (a key may repeat)."""
    section, out = "", {}
    for raw in path.read_text().replace("\\\n", " ").splitlines():
        line = raw.strip()
        if not line or line.startswith(("#", ";")):
            continue
        if line.startswith("["):
            section = line
        elif section == "[Service]":
            key, _, value = line.partition("=")
            out.setdefault(key.strip(), []).append(value.strip())
    return out


def env_file(path: Path) -> dict[str, str]:
    """A systemd EnvironmentFile: ``KEY=VALUE`` lines, ``#`` comments, optional quotes around the value."""
    out = {}
    for raw in path.read_text().splitlines():
        line = raw.strip()
        if line and not line.startswith("#"):
            key, _, value = line.partition("=")
            out[key.strip()] = value.strip().strip("\"'")
    return out


def systemd_argv(line: str, instance: str, env: dict[str, str]) -> list[str]:
    """An ``Exec*=`` line as systemd runs it: specifiers first, then per word ``$VAR`` (a word of its
    own: split at whitespace, zero or more words) or ``${VAR}`` (replaced inside the word, one word)."""
    line = re.sub(r"%[%i]", lambda m: "%" if m.group() == "%%" else instance, line)
    argv: list[str] = []
    for word in shlex.split(line):
        if m := re.fullmatch(r"\$(\w+)", word):
            argv.extend(env.get(m.group(1), "").split())
        else:
            argv.append(re.sub(r"\$\{(\w+)\}", lambda m: env.get(m.group(1), ""), word))
    return argv


def unit_variables(lines: list[str]) -> set[str]:
    return {a or b for line in lines for a, b in re.findall(r"\$\{(\w+)\}|\$(\w+)", line)}


def compose_interpolate(value: str, env: dict[str, str]) -> str:
    """Compose's own interpolation of the file: ``${VAR}``, ``${VAR:-default}``, ``${VAR:?error}``, ``$$``."""

    def one(m: re.Match[str]) -> str:
        if m.group() == "$$":
            return "$"
        name, op, arg = m.group(1), m.group(2), m.group(3)
        if env.get(name):
            return env[name]
        if op == "?":
            raise AssertionError(f"compose would refuse: {name}: {arg}")
        return arg if op == "-" else ""

    return re.sub(r"\$\$|\$\{(\w+)(?::([-?])([^}]*))?\}", one, value)


def containerfile() -> list[tuple[str, str]]:
    """The Containerfile's instructions as (INSTRUCTION, arguments), continuation lines joined."""
    text = re.sub(r"\\\n", " ", (AGENTS / "Containerfile").read_text())
    out = []
    for raw in text.splitlines():
        line = raw.strip()
        if line and not line.startswith("#"):
            word, _, rest = line.partition(" ")
            out.append((word.upper(), rest.strip()))
    return out


def as_dask(argv: list[str]) -> list[str]:
    """The installed ``dask`` command is this interpreter's ``python -m dask``; nothing else changes."""
    assert Path(argv[0]).name == "dask", argv
    return [sys.executable, "-m", "dask", *argv[1:]]


# ------------------------------------------------------------------------------ helpers


def clean_env(extra: dict[str, str]) -> dict[str, str]:
    """This environment without libpq/bulkmig/AWS variables (an agent host has none), plus ``extra``: the
    agents read the source with what the pickled task carries, nothing of their own."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PG", "BULKMIG_", "AWS_", "DASK_"))}
    return {**env, **extra}


def wait_for_workers(address: str, n: int) -> dict[str, Any]:
    with distributed.Client(address, timeout="60s") as client:
        client.wait_for_workers(n, timeout=120)
        return client.scheduler_info(n_workers=-1)["workers"]


def worker_facts(address: str) -> dict[str, dict[str, str]]:
    """Per worker: its name, resources, BULKMIG_DEVICE_PATH and local directory, from the worker itself."""

    def facts(dask_worker) -> dict[str, str]:  # noqa: ANN001 - runs inside the worker process
        import os

        return {
            "name": str(dask_worker.name),
            "resources": ",".join(f"{k}={v:g}" for k, v in sorted(dask_worker.state.total_resources.items())),
            "device": os.environ.get("BULKMIG_DEVICE_PATH", ""),
            "local": str(dask_worker.local_directory),
        }

    with distributed.Client(address, timeout="20s") as client:
        return client.run(facts)


def two_tables(pg_source, source_db: str, rows: int) -> None:  # noqa: ANN001
    for name in ("t_one", "t_two"):
        pg_source.execute(
            source_db,
            f"CREATE TABLE {name} AS SELECT g AS id, md5(g::text) AS a, repeat(md5(g::text), 4) AS b "
            f"FROM generate_series(1, {rows}) g; ALTER TABLE {name} ADD PRIMARY KEY (id)",
        )


def assert_copied(pg_source, pg_target, source_db: str, target_db: str) -> None:  # noqa: ANN001
    for name in ("t_one", "t_two"):
        assert pg_target.execute(target_db, DIGEST.format(name)) == pg_source.execute(source_db, DIGEST.format(name))


def write_pki(directory: Path) -> tuple[Path, Path, Path]:
    """A CA and one certificate it signed for 127.0.0.1 (server and client use): ca.pem, cert.pem, key.pem."""
    directory.mkdir(parents=True)
    ca_key, key = pki.new_key(), pki.new_key()
    ca = pki.certificate("bulkmig test CA", ca_key)
    usages = (ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH)
    leaf = pki.certificate("bulkmig agent", key, ca, ca_key, usages)
    paths = directory / "ca.pem", directory / "cert.pem", directory / "key.pem"
    paths[0].write_bytes(pki.pem(ca))
    paths[1].write_bytes(pki.pem(leaf))
    paths[2].write_bytes(pki.key_pem(key))
    return paths


def sidecar_rows(volume: Path) -> int:
    """Rows of every part on the volume, from the parts' sidecars."""
    return sum(int(json.loads(p.read_text())["rows"]) for p in (volume / "data").rglob("*.json"))


# ------------------------------------------------------------------------------ the tests


class Units:
    """The two units of agents/ on "hosts" of this test: each started as systemd would, from its env file."""

    def __init__(self, tmp_path: Path, processes: Callable[..., subprocess.Popen[bytes]], port: int) -> None:
        self.tmp, self.processes = tmp_path, processes
        self.scheduler = unit_service(AGENTS / "bulkmig-scheduler.service")
        self.agent = unit_service(AGENTS / "bulkmig-agent@.service")
        self.scheduler_example = env_file(AGENTS / "scheduler.env.example")
        self.agent_example = env_file(AGENTS / "agent.env.example")
        self.port = str(port)
        self.address = f"tcp://127.0.0.1:{port}"

    def scheduler_env(self, **more: str) -> dict[str, str]:
        """The example scheduler.env with this host's values: only variables the example defines."""
        env = {"BULKMIG_SCHEDULER_HOST": "127.0.0.1", "BULKMIG_SCHEDULER_PORT": self.port, **more}
        assert env.keys() <= self.scheduler_example.keys()
        return {**self.scheduler_example, **env}

    def agent_env(self, device: str, **more: str) -> dict[str, str]:
        """The example agent-<device>.env with this host's values: only variables the example defines."""
        env = {
            "BULKMIG_SCHEDULER": self.address,
            "BULKMIG_DEVICE_PATH": str(self.tmp / "devices" / device),
            "BULKMIG_NWORKERS": "1",  # two agents, one worker process each, on a shared 2-core machine
            "DASK_TEMPORARY_DIRECTORY": str(self.tmp / f"scratch-{device}"),
            **more,
        }
        assert env.keys() <= self.agent_example.keys()
        return {**self.agent_example, **env}

    def start(self, unit: dict[str, list[str]], instance: str, env: dict[str, str]) -> subprocess.Popen[bytes]:
        """ExecStartPre lines (each must succeed, as systemd requires), then ExecStart, with the env file's
        variables in the process's environment as EnvironmentFile= puts them there."""
        for pre in unit.get("ExecStartPre", []):
            assert subprocess.run(systemd_argv(pre, instance, env), env=clean_env(env)).returncode == 0, pre
        (start,) = unit["ExecStart"]
        argv = as_dask(systemd_argv(start, instance, env))
        return self.processes(argv, self.tmp / f"unit-{instance or 'scheduler'}.log", clean_env(env))


def test_systemd_units_run_a_cluster_that_takes_an_agent_mid_extract(  # noqa: ANN001
    make_flow, pg_source, pg_target, source_db, target_db, tmp_path, free_port, processes, units_run,
    planned_parts, finish_migration, wait_for_first_part,
) -> None:  # fmt: skip
    units = Units(tmp_path, processes, free_port())
    assert units.scheduler["EnvironmentFile"] == ["/etc/bulkmig/scheduler.env"]
    assert units.agent["EnvironmentFile"] == ["/etc/bulkmig/agent-%i.env"]
    assert units.agent["Restart"] == units.scheduler["Restart"] == ["always"]  # why: the end of this test
    assert unit_variables(units.scheduler["ExecStart"]) <= units.scheduler_example.keys()
    assert unit_variables(units.agent["ExecStart"] + units.agent["ExecStartPre"]) <= units.agent_example.keys()
    address = units.address

    # ExecStartPre refuses a device that is not there (not mounted: nothing to write the parts to).
    pre = systemd_argv(units.agent["ExecStartPre"][0], "a", units.agent_env("a"))
    assert subprocess.run(pre, env=clean_env(units.agent_env("a"))).returncode != 0
    for device in ("a", "b"):
        (tmp_path / "devices" / device).mkdir(parents=True)

    scheduler = units.start(units.scheduler, "", units.scheduler_env())
    agents = [units.start(units.agent, "a", units.agent_env("a"))]
    wait_for_workers(address, 1)

    # An extract under way on agent a alone; agent b joins mid-run and takes parts too.
    two_tables(pg_source, source_db, 60_000)
    flow = make_flow(settings={"max_part_bytes": "1MB", "executor": "dask", "scheduler": address})
    assert flow.bulkmig("plan").code == 0
    parts = planned_parts(flow)
    assert len(parts) >= 12, parts
    proc = flow.start("extract", log=tmp_path / "extract.log", quiet=False)
    wait_for_first_part(flow)
    agents.append(units.start(units.agent, "b", units.agent_env("b")))
    assert proc.wait(timeout=240) == 0, (tmp_path / "extract.log").read_text()

    workers = wait_for_workers(address, 2)
    assert sorted((w["name"], w["resources"]) for w in workers.values()) == [
        ("agent-a", {"device-a": 1}),
        ("agent-b", {"device-b": 1}),
    ]
    facts = worker_facts(address)
    for fact in facts.values():
        device = fact["name"].removeprefix("agent-")
        assert fact["resources"] == f"device-{device}=1"
        assert fact["device"] == str(tmp_path / "devices" / device)
        assert Path(fact["local"]).is_relative_to(tmp_path / f"scratch-{device}"), fact  # not on the device
    ran = {facts[w]["name"]: keys for w, keys in units_run(address).items()}
    assert ran["agent-b"], f"agent b joined mid-run but ran no part: {ran}"
    assert sum(len(keys) for keys in ran.values()) == len(parts)

    finish_migration(flow)
    assert_copied(pg_source, pg_target, source_db, target_db)

    # Why Restart=always: a worker whose scheduler is gone ends with status 0, which on-failure ignores.
    os.killpg(scheduler.pid, signal.SIGKILL)
    for agent in agents:
        assert agent.wait(timeout=90) == 0


def test_units_over_tls_as_the_readme_says(  # noqa: ANN001
    make_flow, pg_source, source_db, tmp_path, free_port, processes, units_run, planned_parts
) -> None:
    """The Security section of agents/README.md, done: TLS options through BULKMIG_DASK_OPTIONS, the
    coordinator's certificate through Dask's environment variables; a plain tcp:// client is refused and
    the password, which travels in the pickled task, is in no agent's or scheduler's log."""
    ca, cert, key = write_pki(tmp_path / "tls")
    tls = f"--tls-ca-file {ca} --tls-cert {cert} --tls-key {key}"
    units = Units(tmp_path, processes, free_port())
    address = f"tls://127.0.0.1:{units.port}"
    units.start(units.scheduler, "", units.scheduler_env(BULKMIG_DASK_OPTIONS=f"--protocol tls {tls}"))
    for device in ("a", "b"):
        (tmp_path / "devices" / device).mkdir(parents=True)
        units.start(units.agent, device, units.agent_env(device, BULKMIG_SCHEDULER=address, BULKMIG_DASK_OPTIONS=tls))
    client_env = {
        "DASK_DISTRIBUTED__COMM__TLS__CA_FILE": str(ca),
        "DASK_DISTRIBUTED__COMM__TLS__CLIENT__CERT": str(cert),
        "DASK_DISTRIBUTED__COMM__TLS__CLIENT__KEY": str(key),
        "DASK_DISTRIBUTED__COMM__REQUIRE_ENCRYPTION": "true",
    }
    security = distributed.security.Security(
        tls_ca_file=str(ca), tls_client_cert=str(cert), tls_client_key=str(key), require_encryption=True
    )
    with distributed.Client(address, security=security, timeout="60s") as client:
        client.wait_for_workers(2, timeout=120)
    with pytest.raises((OSError, TimeoutError)):
        distributed.Client(units.address, timeout="3s")  # the same port, without TLS

    two_tables(pg_source, source_db, 5_000)
    flow = make_flow(settings={"max_part_bytes": "128kB", "executor": "dask", "scheduler": address})
    flow.env.update(client_env)
    assert flow.bulkmig("plan").code == 0
    run = flow.bulkmig("extract")
    assert run.code == 0, run.text
    assert f"{len(planned_parts(flow))} parts on {address}" in run.err
    assert sidecar_rows(flow.volume) == 10_000
    logs = "".join(p.read_text(errors="replace") for p in tmp_path.glob("unit-*.log"))
    assert "Registered to" in logs and address in logs
    for secret in flow.secrets:
        assert secret not in logs


def test_compose_services_run_an_extract_on_two_devices(  # noqa: ANN001
    make_flow, pg_source, pg_target, source_db, target_db, tmp_path, free_port, processes, units_run,
    planned_parts, finish_migration,
) -> None:  # fmt: skip
    compose = yaml.safe_load((AGENTS / "compose.yaml").read_text())
    services = compose["services"]
    assert set(services) == {"scheduler", "agent-a", "agent-b"}
    entrypoint = next(json.loads(args) for word, args in containerfile() if word == "ENTRYPOINT")

    port = str(free_port())
    two_tables(pg_source, source_db, 20_000)
    flow = make_flow(settings={"max_part_bytes": "256kB", "executor": "dask", "scheduler": f"tcp://127.0.0.1:{port}"})
    assert flow.bulkmig("plan").code == 0
    shell = {"BULKMIG_SCHEDULER_PORT": port, "BULKMIG_VOLUME": str(flow.volume), "BULKMIG_DEVICES": str(tmp_path)}

    started = {}
    for name in ("scheduler", "agent-a", "agent-b"):  # depends_on: the scheduler first
        service = services[name]
        assert service["network_mode"] == "host"  # so 127.0.0.1 and the source's address mean the same inside
        assert service.get("depends_on", ["scheduler"]) == ["scheduler"]
        binds = [compose_interpolate(v, shell).split(":") for v in service.get("volumes", [])]
        mounts = {}
        for source, inside in binds:
            host = (AGENTS / source).resolve()  # relative sources are relative to the compose file
            host.mkdir(parents=True, exist_ok=True)  # the operator creates them (docker would, as root)
            mounts[inside] = str(host)

        def on_host(value: str, mounts: dict[str, str] = mounts) -> str:
            """A path inside the container as this host sees it through the service's bind mounts."""
            for inside, host in mounts.items():
                if value == inside or value.startswith(inside + "/"):
                    return host + value[len(inside) :]
            return value

        env = {k: on_host(compose_interpolate(str(v), shell)) for k, v in service.get("environment", {}).items()}
        argv = as_dask([*entrypoint, *(compose_interpolate(word, shell) for word in service["command"])])
        if name.startswith("agent-"):
            device = name.removeprefix("agent-")
            assert argv[argv.index("--resources") + 1] == f"device-{device}=1"
            assert env["BULKMIG_DEVICE_PATH"] == str(tmp_path / device)
            assert mounts[compose_interpolate("${BULKMIG_VOLUME}", shell)] == str(flow.volume)
        started[name] = processes(argv, tmp_path / f"{name}.log", clean_env(env))
    address = f"tcp://127.0.0.1:{port}"
    workers = wait_for_workers(address, 2)
    assert sorted((w["name"], w["resources"]) for w in workers.values()) == [
        ("agent-a", {"device-a": 1}),
        ("agent-b", {"device-b": 1}),
    ]

    run = flow.bulkmig("extract")
    assert run.code == 0, run.text
    parts = planned_parts(flow)
    assert f"{len(parts)} parts on {address}" in run.err
    ran = units_run(address)
    assert len(ran) == 2 and all(ran.values()), ran  # both agents took a share
    assert sum(len(keys) for keys in ran.values()) == len(parts)
    finish_migration(flow)
    assert_copied(pg_source, pg_target, source_db, target_db)


def test_containerfile_installs_what_the_units_run() -> None:
    """The image's build is not run here (no container engine); what it is made of is checked."""
    steps = containerfile()
    pyproject = tomllib.loads((REPO / "pyproject.toml").read_text())

    # A base image the package accepts.
    base = next(args for word, args in steps if word == "FROM")
    version = re.search(r"python:(\d+)\.(\d+)", base)
    needs = re.fullmatch(r">=(\d+)\.(\d+)", pyproject["project"]["requires-python"])
    assert version and needs and tuple(map(int, version.groups())) >= tuple(map(int, needs.groups())), base

    # COPY brings every file `pip install` needs: the build files, the readme, every package's folder.
    copied: dict[str, str] = {}
    for word, args in steps:
        if word == "COPY":
            *sources, dest = args.split()
            for source in sources:
                assert (REPO / source).exists(), f"COPY {source}: not in the repository"
                copied[source] = dest
    needed = {"pyproject.toml", "setup.py", pyproject["project"]["readme"], "bulkmig", "manifests"}
    assert needed <= copied.keys(), needed - copied.keys()
    assert {copied[f] for f in ("pyproject.toml", "setup.py", "bulkmig")} <= {"/src/", "/src/bulkmig"}

    # pip installs that tree with extras the package declares, and the dask extra brings distributed.
    pip = next(args for word, args in steps if word == "RUN" and "pip install" in args)
    target = re.search(r"pip install [^']*'(/src)\[([\w,]+)\]'", pip)
    assert target, pip
    extras = set(target.group(2).split(","))
    declared = pyproject["project"]["optional-dependencies"]
    assert "dask" in extras and extras <= declared.keys(), extras
    assert any(req.startswith("distributed") for req in declared["dask"])

    # ENTRYPOINT dask is the console script of dask, which distributed requires; CMD is a dask subcommand.
    entrypoint = next(json.loads(args) for word, args in steps if word == "ENTRYPOINT")
    command = next(json.loads(args) for word, args in steps if word == "CMD")
    assert entrypoint == ["dask"] and command[0] == "scheduler"
    (script,) = entry_points(group="console_scripts", name="dask")
    assert script.dist is not None and script.dist.name == "dask"
    assert any(re.match(r"dask\b", req) for req in requires("distributed") or [])
    # The units run the same command from a host install.
    for unit in ("bulkmig-scheduler.service", "bulkmig-agent@.service"):
        (start,) = unit_service(AGENTS / unit)["ExecStart"]
        assert start.split()[0] == INSTALLED_DASK, start
