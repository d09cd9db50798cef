"""`make run`'s dev-only defaults agree with what `make infra` provisions."""

from __future__ import annotations

import re
import sys

from tests.support import ROOT

sys.path.insert(0, str(ROOT / "scripts"))
import run  # noqa: E402


def test_mysql_password_matches_init_sql():
    init_sql = (ROOT / "mysql" / "init.sql").read_text()
    created = re.search(r"CREATE USER IF NOT EXISTS 'auth_user'@'%' IDENTIFIED BY '([^']+)'", init_sql)
    assert created, "init.sql no longer creates auth_user the way this test expects"
    assert run.DEV_DEFAULTS["MYSQL_PASSWORD"] == created.group(1)


def test_dev_placeholders_say_so_and_jwt_secret_is_long_enough():
    for name in ("JWT_SECRET", "MYSQL_PASSWORD", "ADMIN_PASSWORD"):
        assert "dev-only" in run.DEV_DEFAULTS[name]
    assert len(run.DEV_DEFAULTS["JWT_SECRET"]) >= 32
    assert run.DEV_DEFAULTS["DEV_MODE"] == "true"  # the services accept the placeholders only in dev mode
