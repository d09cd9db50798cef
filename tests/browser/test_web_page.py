"""The web page in a real browser (headless chromium): log in, upload with progress, follow, download, delete."""

from __future__ import annotations

import shutil
import time
from pathlib import Path

import pytest
import requests

from tests.browser.conftest import ARTIFACTS, UPLOAD_LIMIT_MB
from tests.e2e.conftest import Stack, make_clip
from tests.support import wait_until
from tests.media import probe

pytestmark = [pytest.mark.browser, pytest.mark.e2e]

HOSTILE_NAME = "<img src=x onerror=alert(1)>.mp4"
TIMEOUT = 90


# ---------------------------------------------------------------- helpers


def by_id(driver, element_id: str):
    from selenium.webdriver.common.by import By

    return driver.find_element(By.ID, element_id)


def visible_text(driver, element_id: str, timeout: float = 20) -> str:
    """The text of an element once it is shown and not empty."""

    def shown() -> str | None:
        element = by_id(driver, element_id)
        return element.text if element.is_displayed() and element.text else None

    return wait_until(shown, timeout, f"#{element_id} to show text")  # type: ignore[return-value]


def log_in(driver, email: str, password: str) -> None:
    wait_until(lambda: by_id(driver, "login-view").is_displayed(), 20, "the login form")
    by_id(driver, "login-email").clear()
    by_id(driver, "login-email").send_keys(email)
    by_id(driver, "login-password").send_keys(password)
    by_id(driver, "login-submit").click()


def logged_in_user(stack: Stack, driver) -> tuple[str, str]:
    """A new user, logged in on the page; (email, password)."""
    email, password, _ = stack.create_user(stack.login(*stack.admin))
    log_in(driver, email, password)
    wait_until(lambda: by_id(driver, "app-view").is_displayed(), 20, "the jobs view after logging in")
    wait_until(lambda: driver.find_elements("css selector", "#options [data-option]"), 20, "the option controls")
    return email, password


def token_in_storage(driver) -> str | None:
    return driver.execute_script("return sessionStorage.getItem('mp3converter.token')")


def choose_file(driver, path: Path) -> None:
    by_id(driver, "upload-file").send_keys(str(path))
    by_id(driver, "upload-submit").click()


def upload_outcome(driver, timeout: float = 60) -> tuple[str, str]:
    """(success text, error text) once the upload has ended one way or the other."""

    def ended() -> tuple[str, str] | None:
        ok, error = by_id(driver, "upload-ok"), by_id(driver, "upload-error")
        texts = (ok.text if ok.is_displayed() else "", error.text if error.is_displayed() else "")
        return texts if any(texts) else None

    return wait_until(ended, timeout, "the upload to end")  # type: ignore[return-value]


def job_row(driver, filename: str):
    """The job list's row for `filename`, or None. The list is re-rendered while we read it: retried."""
    from selenium.common.exceptions import StaleElementReferenceException

    for _ in range(10):
        try:
            for row in driver.find_elements("css selector", "#jobs-body tr"):
                if row.find_element("css selector", "td.file").text == filename:
                    return row
            return None
        except StaleElementReferenceException:
            continue
    raise AssertionError("the job list never held still")


def wait_for_row(driver, filename: str, status: str | None = None, timeout: float = TIMEOUT):
    from selenium.common.exceptions import StaleElementReferenceException

    def found():
        row = job_row(driver, filename)
        if row is None:
            return None
        try:
            if status is not None and row.find_element("css selector", ".status").text != status:
                return None
        except StaleElementReferenceException:
            return None
        return row

    return wait_until(found, timeout, f"a job row for {filename!r}" + (f" with status {status}" if status else ""),
                      interval=0.2)


def no_alert(driver) -> None:
    from selenium.common.exceptions import NoAlertPresentException

    with pytest.raises(NoAlertPresentException):
        driver.switch_to.alert  # noqa: B018 - the property raises when no dialog is open


def policy_violations(driver) -> list[str]:
    """Console lines about the page breaking its own Content-Security-Policy or Trusted Types."""
    return [entry["message"] for entry in driver.get_log("browser")
            if "Content Security Policy" in entry["message"] or "TrustedHTML" in entry["message"]
            or "Trusted Type" in entry["message"]]


@pytest.fixture(scope="module")
def clip(tmp_path_factory) -> Path:
    return make_clip(tmp_path_factory.mktemp("media") / "holiday clip.mp4", seconds=3)


# ---------------------------------------------------------------- tests


def test_the_served_page_carries_its_policy(web_stack: Stack) -> None:
    """Through gunicorn's gevent worker as deployed, not only Flask's test client (test_web_static.py)."""
    from gateway.web import CONTENT_SECURITY_POLICY

    for path in ("/", "/web/app.js", "/web/app.css"):
        response = requests.get(f"{web_stack.url}{path}", timeout=30)
        assert response.status_code == 200, path
        assert response.headers["Content-Security-Policy"] == CONTENT_SECURITY_POLICY, path
        assert response.headers["X-Content-Type-Options"] == "nosniff", path
        assert response.headers["Cache-Control"] == "no-cache", path
    assert requests.get(f"{web_stack.url}/web/..%2fweb.py", timeout=30).status_code == 404


def test_wrong_password_shows_the_error(page, web_stack: Stack) -> None:
    email, _, _ = web_stack.create_user(web_stack.login(*web_stack.admin))
    log_in(page, email, "not the password")
    error = visible_text(page, "login-error")
    assert error.startswith("Login failed: ")
    assert "401" in error or "password" in error.lower() or "credentials" in error.lower(), error
    assert not by_id(page, "app-view").is_displayed()
    assert token_in_storage(page) is None


def test_options_are_the_openapi_documents(page, web_stack: Stack) -> None:
    logged_in_user(web_stack, page)
    form = requests.get(f"{web_stack.url}/openapi.json", timeout=30).json()["components"]["schemas"]["UploadForm"]
    options = {name: schema for name, schema in form["properties"].items() if name != "file"}
    assert options
    # One control per option, in the document's order.
    shown = [c.get_attribute("data-option") for c in page.find_elements("css selector", "#options [data-option]")]
    assert shown == list(options)
    for name, schema in options.items():
        control = by_id(page, f"option-{name}")
        label = control.find_element("xpath", "./ancestor::label")
        if schema.get("description"):
            assert schema["description"] in label.text, name
        if schema.get("type") == "boolean":
            assert control.get_attribute("type") == "checkbox"
            assert control.is_selected() == (schema.get("default") is True), name
        elif "enum" in schema:
            values = [o.get_attribute("value") for o in control.find_elements("tag name", "option")]
            assert values == ([] if "default" in schema else [""]) + [str(v) for v in schema["enum"]], name
        if "default" in schema and schema.get("type") != "boolean":  # a flag shows its default by its tick
            assert str(schema["default"]).lower() in (label.text + (control.get_attribute("placeholder") or "")).lower()
    assert policy_violations(page) == []


def test_upload_follow_download(page, web_stack: Stack, clip: Path, downloads: Path) -> None:
    from selenium.webdriver.support.ui import Select

    logged_in_user(web_stack, page)
    Select(by_id(page, "option-channels")).select_by_value("1")
    choose_file(page, clip)

    # The upload's own progress bar moves, and the page says when the job is queued.
    wait_until(lambda: by_id(page, "upload-progress-box").is_displayed(), 20, "the upload progress bar")
    assert upload_outcome(page) == (f"{clip.name} uploaded: the job is queued.", "")
    assert by_id(page, "upload-progress").get_attribute("value") == "100"

    # The job list follows the conversion by itself (polling) until done, progress 100%.
    row = wait_for_row(page, clip.name)
    seen = set()

    def done():
        current = job_row(page, clip.name)
        if current is None:
            return None
        status = current.find_element("css selector", ".status").text
        seen.add(status)
        return current if status == "done" else None

    row = wait_until(done, TIMEOUT, "the job to be done", interval=0.1)
    assert seen <= {"queued", "converting", "done"}, seen
    assert row.find_element("css selector", "td.progress").text == "100%"
    assert row.find_element("css selector", "td.progress progress").get_attribute("value") == "100"
    assert row.find_element("css selector", "td.options").text == "channels=1"

    # The whole page, the job list included (docs/images/web-jobs.png is a copy of one).
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    size = page.get_window_size()
    page.set_window_size(size["width"], page.execute_script("return document.documentElement.scrollHeight") + 140)
    page.save_screenshot(str(ARTIFACTS / "web-jobs.png"))
    page.set_window_size(size["width"], size["height"])

    # Download: the page fetches with the token and saves the MP3 under the video's name.
    row.find_element("css selector", "button.download").click()
    mp3 = downloads / "holiday clip.mp3"
    wait_until(lambda: mp3.exists() and mp3.stat().st_size > 0, 60, f"{mp3} to be downloaded")
    wait_until(lambda: not list(downloads.glob("*.crdownload")), 60, "the download to finish")
    info = probe(mp3)
    assert info["format"]["format_name"] == "mp3"
    assert abs(float(info["format"]["duration"]) - 3) < 0.5
    assert [(s["codec_name"], s["channels"]) for s in info["streams"]] == [("mp3", 1)]
    shutil.copy(mp3, ARTIFACTS / mp3.name)
    assert policy_violations(page) == []


def test_a_hostile_file_name_is_text(page, web_stack: Stack, clip: Path, tmp_path: Path) -> None:
    hostile = tmp_path / HOSTILE_NAME
    shutil.copy(clip, hostile)
    logged_in_user(web_stack, page)
    choose_file(page, hostile)
    assert upload_outcome(page) == (f"{HOSTILE_NAME} uploaded: the job is queued.", "")
    row = wait_for_row(page, HOSTILE_NAME, "done")
    # Shown literally, nothing parsed as HTML, nothing run.
    assert row.find_element("css selector", "td.file").text == HOSTILE_NAME
    assert page.find_elements("css selector", "main img") == []
    no_alert(page)
    assert page.execute_script("return document.querySelector('#jobs-body td.file').textContent") == HOSTILE_NAME
    assert policy_violations(page) == []


def test_a_too_large_file_shows_the_limit(page, web_stack: Stack, tmp_path: Path) -> None:
    big = tmp_path / "too big.mp4"
    with big.open("wb") as handle:
        handle.write(b"\x00\x00\x00\x18ftypmp42\x00\x00\x00\x00mp42isom")
        handle.write(b"\x00" * (UPLOAD_LIMIT_MB * 1024 * 1024 + 64 * 1024))
    logged_in_user(web_stack, page)
    choose_file(page, big)
    ok, error = upload_outcome(page)
    assert not ok
    assert error.startswith("Upload of too big.mp4 refused: "), error
    assert error == f"Upload of too big.mp4 refused: the upload is larger than {UPLOAD_LIMIT_MB} MiB.", error
    assert job_row(page, "too big.mp4") is None


def test_an_invalid_option_shows_the_fields_error(page, web_stack: Stack, clip: Path) -> None:
    logged_in_user(web_stack, page)
    text_options = page.find_elements("css selector", "#options input[type=text][data-option]")
    if not text_options:
        pytest.skip("this gateway has no free-text option to get wrong")
    field = text_options[0]
    name = field.get_attribute("data-option")
    field.send_keys("not a value")
    choose_file(page, clip)
    ok, error = upload_outcome(page)
    assert not ok
    assert error.startswith(f"Upload of {clip.name} refused: ") and name in error, error


def test_delete_removes_the_job(page, web_stack: Stack, clip: Path) -> None:
    logged_in_user(web_stack, page)
    token = token_in_storage(page)
    choose_file(page, clip)
    assert upload_outcome(page)[1] == ""
    row = wait_for_row(page, clip.name)
    job_id = row.get_attribute("data-job-id")
    button = row.find_element("css selector", "button.delete")
    button.click()
    assert button.text == "Really delete?"
    button.click()
    wait_until(lambda: job_row(page, clip.name) is None, 20, "the row to go")
    assert web_stack.job(token, job_id).status_code == 404
    wait_until(lambda: by_id(page, "jobs-empty").is_displayed(), 20, "the empty list's note")


def test_logout_forgets_the_token(page, web_stack: Stack) -> None:
    logged_in_user(web_stack, page)
    assert token_in_storage(page)
    by_id(page, "logout").click()
    assert by_id(page, "login-view").is_displayed()
    assert not by_id(page, "app-view").is_displayed()
    assert visible_text(page, "notice") == "You are logged out."
    assert token_in_storage(page) is None
    assert page.execute_script("return sessionStorage.length") == 0
    page.refresh()
    wait_until(lambda: by_id(page, "login-view").is_displayed(), 20, "the login form after a reload")


def expired(token: str, secret: str) -> str:
    """The same token, signed with the stack's real key, but issued 20 minutes ago and expired a minute ago."""
    import jwt

    claims = jwt.decode(token, options={"verify_signature": False})
    now = int(time.time())
    return jwt.encode({**claims, "iat": now - 1200, "exp": now - 60}, secret, algorithm="HS256")


@pytest.mark.parametrize(("token", "when"), [("expired", "reload"), ("expired", "poll"), ("invalid", "reload")])
def test_an_expired_or_invalid_token_returns_to_the_login_form(page, web_stack: Stack, token: str, when: str) -> None:
    logged_in_user(web_stack, page)
    bad = expired(token_in_storage(page), web_stack.env["JWT_SECRET"]) if token == "expired" else "not.a.token"
    page.execute_script("sessionStorage.setItem('mp3converter.token', arguments[0])", bad)
    if when == "reload":
        page.refresh()
    # else: the list's next poll (at most 10 s away) meets the 401
    wait_until(lambda: by_id(page, "login-view").is_displayed(), 30, "the login form")
    notice = visible_text(page, "notice")
    assert notice.startswith("Your session has ended (") and notice.endswith("Please log in again."), notice
    assert token_in_storage(page) is None
    assert not by_id(page, "app-view").is_displayed()
