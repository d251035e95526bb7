"""The review page in a real browser (headless Chromium from Debian, driven by Selenium) against
the API on the session's cluster: log in with a key, read the job's timeline, seek the video
from it, correct a track's name, and see the result JSON follow."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from facefleet.client import Client
from tests.cluster import Cluster
from tests.data import REPO
from tests.e2e.conftest import ApiServer

CHROMIUM = Path("/usr/bin/chromium")
CHROMEDRIVER = Path("/usr/bin/chromedriver")
CASE = "videos/hamilton_whitehouse"
VIDEO = f"{CASE}/short_hamilton_clip.mp4"
SCREENSHOT = REPO / "docs" / "review-page.png"

pytestmark = [
    pytest.mark.data,
    pytest.mark.skipif(
        not (CHROMIUM.is_file() and CHROMEDRIVER.is_file()),
        reason=f"needs Debian's {CHROMIUM} and {CHROMEDRIVER} (apt-get install chromium "
        "chromium-driver); Selenium must not download a browser",
    ),
]


@pytest.fixture(scope="module")
def browser(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = str(CHROMIUM)
    for flag in (
        "--headless=new",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-dev-shm-usage",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--window-size=1440,1200",
        "--autoplay-policy=no-user-gesture-required",
        f"--user-data-dir={tmp_path_factory.mktemp('chromium')}",
    ):
        options.add_argument(flag)
    # An explicit driver path: selenium-manager (which would download one) never runs.
    driver = webdriver.Chrome(service=Service(executable_path=str(CHROMEDRIVER)), options=options)
    driver.set_page_load_timeout(60)
    try:
        yield driver
    finally:
        driver.quit()


@pytest.fixture(scope="module")
def reviewed_job(cluster: Cluster, api: ApiServer, data_root: Path) -> tuple[str, str]:
    """The Hamilton clip processed against its CASE.md gallery (in a gallery of this test's
    own, so the other end-to-end tests' default gallery stays as they expect): (job id,
    gallery)."""
    client = Client(cluster.settings())
    gallery = f"review_{uuid.uuid4().hex[:8]}"
    for person in sorted((data_root / CASE / "gallery").iterdir()):
        report = client.gallery.enroll(person.name, sorted(person.iterdir()), gallery)
        assert report.added, report
    job = client.submit_video(data_root / VIDEO, gallery=gallery)
    status = job.wait(timeout=300)
    assert status.state == "done", status.message
    return job.id, gallery


def _tracks(api: ApiServer, job_id: str) -> dict[int, dict[str, Any]]:
    response = httpx.get(
        f"{api.url}/v1/jobs/{job_id}/results",
        headers={"Authorization": f"Bearer {api.admin_key}"},
        timeout=30,
    )
    response.raise_for_status()
    (result,) = response.json().values()
    return {t["track_id"]: t for t in result["tracks"]}


def test_review_page(browser: Any, api: ApiServer, reviewed_job: tuple[str, str]) -> None:
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support import expected_conditions as ec
    from selenium.webdriver.support.ui import WebDriverWait

    job_id, _ = reviewed_job
    wait = WebDriverWait(browser, 30)
    before = _tracks(api, job_id)
    names = {t["identity"] for t in before.values()} - {None}
    # CASE.md: Lin-Manuel Miranda is in most frames (the others are harder: a profile
    # close-up, a small face in the audience).
    assert "Lin_Manuel_Miranda" in names, names

    # Not logged in: every page sends the browser to the login form.
    browser.get(f"{api.url}/review/jobs/{job_id}")
    wait.until(ec.url_contains("/review/login"))
    # A wrong key: the form again, with a message.
    browser.find_element(By.NAME, "key").send_keys("ffk_000000000000_" + "x" * 43)
    browser.find_element(By.CSS_SELECTOR, "form.login button").click()
    assert (
        "Unknown or revoked"
        in wait.until(ec.presence_of_element_located((By.CLASS_NAME, "error"))).text
    )
    browser.find_element(By.NAME, "key").send_keys(api.admin_key)
    browser.find_element(By.CSS_SELECTOR, "form.login button").click()
    wait.until(ec.presence_of_element_located((By.CSS_SELECTOR, "table.list")))
    assert job_id in browser.page_source

    browser.get(f"{api.url}/review/jobs/{job_id}")
    wait.until(ec.presence_of_element_located((By.CSS_SELECTOR, "#timeline .row")))
    rows = {
        r.get_attribute("data-identity")
        for r in browser.find_elements(By.CSS_SELECTOR, "#timeline .row")
    }
    # One row per person the result names, and the unknowns in rows of their own.
    assert names <= rows, (names, rows)
    assert len(browser.find_elements(By.CSS_SELECTOR, "#timeline .bar")) == len(before)

    # Click a bar of Lin-Manuel Miranda (his longest track): the video seeks to its start.
    lin = max(
        (t for t in before.values() if t["identity"] == "Lin_Manuel_Miranda"),
        key=lambda t: t["end_s"] - t["start_s"],
    )
    wait.until(
        lambda d: d.execute_script("return document.getElementById('video').readyState") >= 1
    )
    assert browser.execute_script("return document.getElementById('video').error") is None
    browser.find_element(By.CSS_SELECTOR, f"#timeline .bar[data-track='{lin['track_id']}']").click()
    wait.until(
        lambda d: (
            abs(
                d.execute_script("return document.getElementById('video').currentTime")
                - lin["start_s"]
            )
            < 0.05
        )
    )

    # "not this person" on that track: the result JSON says so.
    row = f"#track-{lin['track_id']}"
    browser.find_element(By.CSS_SELECTOR, f"{row} button.not").click()
    wait.until(ec.text_to_be_present_in_element((By.ID, "notice"), f"Track {lin['track_id']}:"))
    assert "error" not in (browser.find_element(By.ID, "notice").get_attribute("class") or "")
    after = _tracks(api, job_id)[lin["track_id"]]
    assert after["corrected"] is True and after["identity"] is None, after
    assert after["original_identity"] == "Lin_Manuel_Miranda", after
    # ...and the page redrew from it: the track is unknown now, marked corrected.
    wait.until(ec.presence_of_element_located((By.CSS_SELECTOR, f"{row} .badge")))
    assert browser.find_element(By.CSS_SELECTOR, f"{row} .name").text.startswith("unknown")

    # "this is…" gives it the name back.
    browser.find_element(By.CSS_SELECTOR, f"{row} button.is").click()
    browser.find_element(By.CSS_SELECTOR, f"{row} form.is-form input").send_keys(
        "Lin_Manuel_Miranda"
    )
    browser.find_element(By.CSS_SELECTOR, f"{row} form.is-form button").click()
    wait.until(ec.text_to_be_present_in_element((By.ID, "notice"), "→ Lin_Manuel_Miranda"))
    named = _tracks(api, job_id)[lin["track_id"]]
    assert named["corrected"] is True and named["identity"] == "Lin_Manuel_Miranda", named
    wait.until(
        ec.text_to_be_present_in_element((By.CSS_SELECTOR, f"{row} .name"), "Lin_Manuel_Miranda")
    )

    # The README shows the page as it looks now: a corrected track, the video at its start.
    browser.find_element(By.CSS_SELECTOR, f"#timeline .bar[data-track='{lin['track_id']}']").click()
    browser.execute_script("window.scrollTo(0, 0)")
    SCREENSHOT.parent.mkdir(exist_ok=True)
    assert browser.save_screenshot(str(SCREENSHOT))

    # The other pages render for the same session.
    for page, marker in (("people", "Unknown people"), ("galleries", "Galleries")):
        browser.get(f"{api.url}/review/{page}")
        assert marker in wait.until(ec.presence_of_element_located((By.TAG_NAME, "h1"))).text
    assert browser.find_elements(By.CSS_SELECTOR, ".person .photos img")
    photo = browser.find_element(By.CSS_SELECTOR, ".person .photos img")
    wait.until(lambda d: d.execute_script("return arguments[0].naturalWidth", photo) > 0)

    # Logging out ends the session: the pages ask for the key again.
    browser.find_element(By.CSS_SELECTOR, "form.logout button").click()
    wait.until(ec.url_contains("/review/login"))
    browser.get(f"{api.url}/review/")
    wait.until(ec.url_contains("/review/login"))
