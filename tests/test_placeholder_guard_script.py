"""k8s/placeholder-guard/placeholder-guard.sh, the broker's and databases' init container, run under /bin/sh (dash on
Debian and Ubuntu, as in the servers' images) against folders laid out as the kubelet lays out Secret volumes: a
placeholder stops the pod with one line naming the key, never the value, unless DEV_MODE is on. How the servers run it
is tests/k8s/test_placeholder_guard.py's part."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from mp3core import settings
from tests.support import ROOT

pytestmark = pytest.mark.skipif(sys.platform == "win32", reason="runs the POSIX sh script")

SCRIPT = ROOT / "k8s" / "placeholder-guard" / "placeholder-guard.sh"
REAL = {"rabbitmq-secret": {"20-default-user.conf": "default_user = mp3converter\ndefault_pass = s3cr3t-broker\n",
                            "GATEWAY_PASSWORD": "s3cr3t-gateway"},
        "rabbitmq-erlang-cookie": {"cookie": "s3cr3t-cookie"}}
PLACEHOLDER_CONF = "default_user = mp3converter\ndefault_pass = dev-only-placeholder-rabbitmq\n"


def secret_volume(root: Path, secret: str, values: dict[str, str]) -> None:
    """A folder as the kubelet writes a Secret volume: the values in a timestamped folder, ..data linking to it,
    and one link per key through ..data."""
    folder = root / secret
    stamp = folder / "..2025_01_01_00_00_00.000000001"
    stamp.mkdir(parents=True)
    (folder / "..data").symlink_to(stamp.name)
    for key, value in values.items():
        (stamp / key).write_text(value)
        (folder / key).symlink_to(f"..data/{key}")


def guard(root: Path, dev_mode: str | None) -> subprocess.CompletedProcess[str]:
    env = {"PATH": os.environ["PATH"]} | ({} if dev_mode is None else {"DEV_MODE": dev_mode})
    return subprocess.run(["/bin/sh", str(SCRIPT), str(root)], env=env, capture_output=True, text=True,
                          timeout=30, check=False)


def volumes(root: Path, secrets: dict[str, dict[str, str]]) -> Path:
    for secret, values in secrets.items():
        secret_volume(root, secret, values)
    return root


@pytest.mark.parametrize("dev_mode", ["false", None, "", "  ", "no", "0", "maybe"],
                         ids=["false", "unset", "empty", "blank", "no", "0", "unparsable"])
def test_a_placeholder_stops_the_pod_naming_the_key_but_not_the_value(tmp_path: Path, dev_mode: str | None) -> None:
    secrets = {"rabbitmq-secret": {**REAL["rabbitmq-secret"], "20-default-user.conf": PLACEHOLDER_CONF},
               "rabbitmq-erlang-cookie": {"cookie": "dev-only-placeholder-rabbitmq-erlang-cookie"}}
    proc = guard(volumes(tmp_path, secrets), dev_mode)
    assert proc.returncode == 1
    assert proc.stdout == ""
    (line,) = proc.stderr.splitlines()
    assert "rabbitmq-secret/20-default-user.conf" in line and "rabbitmq-erlang-cookie/cookie" in line
    assert "GATEWAY_PASSWORD" not in line  # a real value is not named
    assert "infra-config" in line and "DEV_MODE" in line
    for values in secrets.values():
        for value in values.values():
            assert value.strip() not in proc.stderr
    assert "placeholder-rabbitmq" not in proc.stderr


@pytest.mark.parametrize("dev_mode", ["true", "TRUE", " true ", "1", "yes", "on"])
def test_dev_mode_accepts_the_placeholders(tmp_path: Path, dev_mode: str) -> None:
    # The words mp3core/mp3core/settings.py reads as true, so DEV_MODE means the same to the services and servers.
    secrets = {"mysql-secret": {"root-password": "dev-only-placeholder-mysql-root", "auth-user-password": "x"}}
    proc = guard(volumes(tmp_path, secrets), dev_mode)
    assert proc.returncode == 0, proc.stderr
    assert "mysql-secret/root-password" in proc.stdout and "dev-only-placeholder" not in proc.stdout
    assert proc.stderr == ""


def test_dev_mode_words_are_the_services_words(tmp_path: Path) -> None:
    # One meaning of DEV_MODE: every word the services' settings read as true or false means the same here.
    secrets = {"mysql-secret": {"root-password": "dev-only-placeholder-mysql-root"}}
    root = volumes(tmp_path, secrets)
    assert {word for word in settings._TRUE | settings._FALSE if guard(root, word).returncode == 0} == settings._TRUE


@pytest.mark.parametrize("dev_mode", ["false", None, "true"])
def test_real_values_pass(tmp_path: Path, dev_mode: str | None) -> None:
    proc = guard(volumes(tmp_path, REAL), dev_mode)
    assert proc.returncode == 0, proc.stderr
    assert proc.stderr == ""
    assert not [v for values in REAL.values() for v in values.values() if v.strip() in proc.stdout]


def test_a_key_starting_with_a_dot_is_checked_and_the_volume_s_own_entries_are_not(tmp_path: Path) -> None:
    proc = guard(volumes(tmp_path, {"s": {".hidden": "dev-only-x", "plain": "real"}}), "false")
    assert proc.returncode == 1
    assert "s/.hidden" in proc.stderr and "..data" not in proc.stderr and "s/plain" not in proc.stderr


def test_nothing_to_check_is_a_wiring_mistake_not_a_pass(tmp_path: Path) -> None:
    (tmp_path / "empty-secret").mkdir()
    for dev_mode in ("false", "true"):
        proc = guard(tmp_path, dev_mode)
        assert proc.returncode == 2 and "nothing to check" in proc.stderr


def test_a_key_that_cannot_be_read_is_an_error_not_a_pass(tmp_path: Path) -> None:
    secret_volume(tmp_path, "mysql-secret", {"root-password": "real"})
    (tmp_path / "mysql-secret" / "auth-user-password").symlink_to("..data/gone")
    proc = guard(tmp_path, "false")
    assert proc.returncode == 2
    assert "cannot read mysql-secret/auth-user-password" in proc.stderr
