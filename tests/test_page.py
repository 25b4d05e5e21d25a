"""The search page (GET /) in a real headless Chromium against real servers on loopback with real MP4 files:
the embedded demo library (the committed demo model) for searching and playing, and a tiny model behind an API
key that protects reads too, for the key, uploads, jobs and deletion. Also what the page needs from the API:
its assets served with nothing from elsewhere, GET /auth, the key cookie for reads, GET /fields.

VMR_UPDATE_SCREENSHOTS=1 copies the screenshots taken here to docs/ (otherwise they stay in a temp dir)."""
import os
import re
import shutil

import httpx
import pytest

from browser_helpers import MissingBrowser, chromium, console_errors, save_small_png, viewport
from test_service_helpers import API_KEY, ROOT, WRITE, Service, save_tiny_model, wait_ready, write_clip

pytestmark = pytest.mark.slow  # about 3 minutes: two servers (one builds the 31-video demo library) and Chromium

WAIT = 60  # seconds any page state may take to appear on a loaded machine
KEY_COOKIE = "vmr_api_key"


@pytest.fixture(scope="module")
def keyed(demo, tmp_path_factory):  # `demo` (conftest) first: it indexes while the keyed tests run
    """A tiny model behind an API key that reads need too (--protect-reads), with an empty library."""
    root = tmp_path_factory.mktemp("page-keyed")
    service = Service(root / "data", save_tiny_model(root / "model"), "--protect-reads", "true").start()
    yield service
    service.kill()


@pytest.fixture
def browser():
    try:
        with chromium() as driver:
            yield driver
    except MissingBrowser as err:
        pytest.fail(str(err))


@pytest.fixture(scope="module")
def shots(tmp_path_factory):
    """Where screenshots go; copied to docs/ at the end when VMR_UPDATE_SCREENSHOTS=1."""
    folder = tmp_path_factory.mktemp("screenshots")
    yield folder
    if os.environ.get("VMR_UPDATE_SCREENSHOTS") == "1":
        for png in folder.glob("*.png"):
            shutil.copy(png, ROOT / "docs" / png.name)


def wait(driver, condition, what: str, timeout: float = WAIT):
    from selenium.webdriver.support.ui import WebDriverWait

    return WebDriverWait(driver, timeout, poll_frequency=0.1).until(condition, message=f"waited {timeout} s for {what}")


def visible(driver, css: str) -> list:
    """The elements shown on the page that match `css`, found in one step (a list being re-rendered meanwhile
    cannot leave stale ones)."""
    return driver.execute_script("return [...document.querySelectorAll(arguments[0])]"
                                 ".filter(e => e.checkVisibility({visibilityProperty: true}))", css)


def one(driver, css: str):
    from selenium.webdriver.common.by import By

    return driver.find_element(By.CSS_SELECTOR, css)


def enter_key(driver, service: Service) -> None:
    driver.get(service.url)
    field = wait(driver, lambda d: visible(d, "input[name=api_key]"), "the API key field")[0]
    field.send_keys(API_KEY + "\n")
    wait(driver, lambda d: not visible(d, "input[name=api_key]"), "the key to be accepted")


def search(driver, query: str, then: str = "", mode: str = "vector", fails: bool = False):
    """Submit the search form; once the summary says the search finished, the result elements (asserted to be
    there), or with `fails` the error message shown instead."""
    from selenium.webdriver.support.ui import Select

    form = one(driver, "form#search")
    for name, value in (("q", query), ("then", then)):
        box = form.find_element("css selector", f"input[name={name}]")
        box.clear()
        box.send_keys(value)
    if not then:
        Select(form.find_element("css selector", "select[name=mode]")).select_by_value(mode)
    form.find_element("css selector", "input[name=q]").submit()
    wait(driver, lambda d: finished(d, ""), f"the results of {query!r}")
    message = [e.text for e in visible(driver, "#message")]
    if fails:
        assert message and not visible(driver, "[data-video-id]"), one(driver, "#summary").text
        return message[0]
    results = visible(driver, "[data-video-id]")
    assert results and not message, (query, one(driver, "#summary").text, message)
    return results


def finished(driver, words: str) -> bool:
    """Whether the search whose summary mentions `words` has its answer on screen."""
    summary = one(driver, "#summary").text
    return words in summary and not summary.startswith("Searching")


def result_ids(driver) -> list[int]:
    return [int(e.get_attribute("data-video-id")) for e in visible(driver, "[data-video-id]")]


def thumbnails_loaded(driver, css: str) -> bool:
    """Every image under `css` finished loading and decoded to a real picture."""
    return driver.execute_script(
        "const imgs = [...document.querySelectorAll(arguments[0] + ' img')];"
        "return imgs.length > 0 && imgs.every(i => i.complete && i.naturalWidth > 0);", css)


def play_moment(driver, moment) -> float:
    """Click a moment; the player's position when it started playing (recorded by a listener put in first, on a
    paused player, so that 'playing' is sure to fire)."""
    driver.execute_script("window.playedFrom = null; const p = document.querySelector('video#player'); p.pause();"
                          "p.addEventListener('playing', () => { window.playedFrom ??= p.currentTime; });")
    moment.click()
    # a list, since a position of 0 is falsy and would look like no answer to the wait
    return wait(driver, lambda d: d.execute_script("return window.playedFrom === null ? null : [window.playedFrom]"),
                "the player to play")[0]


def drop_file(driver, target_css: str, url: str, name: str, mime: str) -> None:
    """Drop a file (fetched by the page from `url`) on an element, as a drag from the desktop delivers it."""
    driver.execute_async_script(
        "const [css, url, name, type, done] = arguments;"
        "fetch(url).then(r => r.blob()).then(blob => {"
        "  const data = new DataTransfer(); data.items.add(new File([blob], name, {type}));"
        "  document.querySelector(css).dispatchEvent(new DragEvent('drop', {dataTransfer: data, bubbles: true}));"
        "  done(); });", target_css, url, name, mime)


def job_rows(driver) -> list[dict]:
    return driver.execute_script(
        "return [...document.querySelectorAll('#jobs li')].map(li => ({name: li.querySelector('.name').textContent,"
        " status: li.dataset.status || null, failed: li.classList.contains('failed'),"
        " progress: li.querySelector('progress')?.value ?? null, text: li.querySelector('.state').textContent}));")


def expected_console(driver, *patterns: str) -> None:
    """The console holds no errors but one matching each pattern (a request refused on purpose), in order."""
    errors = console_errors(driver)
    assert len(errors) == len(patterns) and all(re.search(p, e) for p, e in zip(patterns, errors)), errors


# --- what the page needs from the API (no browser) ---

def test_the_page_is_served_whole_from_the_service(keyed):
    with httpx.Client(base_url=keyed.url) as c:  # no key: the page itself holds no data
        page = c.get("/")
        assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
        for hook in ('<form id="search"', 'name="q"', '<video id="player"', 'id="upload"', 'name="api_key"'):
            assert hook in page.text
        assets, weight, queue = set(), len(page.content), re.findall(r'(?:href|src)="(page/[^"]+)"', page.text)
        while queue:  # the stylesheet, the modules and what they import
            path = queue.pop()
            if path in assets:
                continue
            assets.add(path)
            r = c.get("/" + path)
            assert r.status_code == 200, path
            weight += len(r.content)
            queue += [f"page/{name}" for name in re.findall(r"from '\./([\w.]+)'", r.text)]
            # nothing is fetched from elsewhere: no absolute URL in any asset
            assert not re.search(r"(https?:)?//[\w.-]+\.\w", r.text.replace("://127.0.0.1", "")), path
        assert {"page/page.css", "page/app.js", "page/api.js", "page/search.js", "page/library.js"} <= assets
        assert weight < 300_000, weight
        assert c.head("/").status_code == 200


def test_auth_says_what_the_key_guards_and_reads_take_the_cookie(keyed, demo):
    with httpx.Client(base_url=keyed.url) as c:
        def auth(**headers):
            return c.get("/auth", headers=headers).json()

        assert auth() == {"writes": True, "reads": True, "key": "missing"}
        assert auth(**{"X-API-Key": "nope"})["key"] == "wrong"
        assert auth(**WRITE)["key"] == auth(Authorization=f"Bearer {API_KEY}")["key"] == "accepted"
        assert c.get("/videos").status_code == 401
        assert c.get("/videos", headers={"Cookie": f"{KEY_COOKIE}={API_KEY}"}).status_code == 200
        assert c.get("/videos", headers={"Cookie": f"{KEY_COOKIE}=nope"}).status_code == 403
        # the cookie is for reads only: a cross-site form post carrying it can never write
        refused = c.post("/videos", data={"path": "x.mp4"}, headers={"Cookie": f"{KEY_COOKIE}={API_KEY}"})
        assert refused.status_code == 401 and refused.json()["code"] == "unauthorized"
    with httpx.Client(base_url=demo.url) as c:
        assert c.get("/auth").json() == {"writes": False, "reads": False, "key": "not_required"}
        spec = c.get("/openapi.json").json()
        assert spec["paths"]["/fields"]["get"]["responses"]["200"]["content"]["application/json"]["schema"] == \
            {"$ref": "#/components/schemas/FieldsOut"}
        assert spec["paths"]["/auth"]["get"]["responses"]["200"]["content"]["application/json"]["schema"] == \
            {"$ref": "#/components/schemas/AuthOut"}
        assert {"name": KEY_COOKIE, "in": "cookie"}.items() <= next(
            p for p in spec["paths"]["/videos"]["get"]["parameters"] if p["in"] == "cookie").items()


# --- in the browser: the API key, uploads, jobs, deletion (tiny model, reads protected) ---

def test_the_key_is_asked_for_once_and_a_wrong_one_is_refused(keyed, browser):
    browser.get(keyed.url)
    field = wait(browser, lambda d: visible(d, "input[name=api_key]"), "the API key field")[0]
    assert "needs its API key to search" in one(browser, "#key-note").text
    assert browser.execute_script("return document.getElementById('library-count').textContent") == ""  # not read
    field.send_keys("not-the-key\n")
    wait(browser, lambda d: "refused" in one(d, "#key-note").text, "the wrong key to be refused")
    assert "wrong API key" in one(browser, "#key-note").text and field.is_displayed()
    assert browser.execute_script("return sessionStorage.getItem('vmr_api_key')") is None
    field.clear()
    field.send_keys(API_KEY + "\n")
    wait(browser, lambda d: not visible(d, "input[name=api_key]"), "the key to be accepted")
    browser.get(keyed.url + "#library")  # kept for the browser session: not asked again
    wait(browser, lambda d: one(d, "#library-count").text == "0 videos", "the library behind the key")
    assert not visible(browser, "input[name=api_key]")
    expected_console(browser)


def test_upload_watch_the_jobs_find_play_and_delete(keyed, browser, tmp_path):
    clips = [write_clip(tmp_path / f"zebra{i}.mp4", seconds=2.0, seed=i) for i in range(2)]
    notes = tmp_path / "notes.mp4"
    notes.write_text("not a video")
    on_disk = keyed.data_dir / "media" / "library" / "walk.mp4"
    on_disk.parent.mkdir(parents=True)
    write_clip(on_disk, seconds=2.0, seed=7)
    enter_key(browser, keyed)
    one(browser, "a[data-view=library]").click()
    fields = one(browser, "#dropzone input[name=fields]")
    fields.send_keys('{"caption": "a zebra crossing"}')

    one(browser, "input[type=file]#upload").send_keys("\n".join(str(p) for p in clips))  # two files at once
    rows = wait(browser, lambda d: len(r := job_rows(d)) == 2 and all(x["status"] for x in r) and r, "two jobs")
    assert all(r["status"] == "done" and r["progress"] == 1 for r in rows), rows
    ids = sorted(int(re.search(r"added as video (\d+)", r["text"]).group(1)) for r in rows)
    wait(browser, lambda d: len(visible(d, "[data-library-video-id]")) == 2, "the two videos in the library")
    # the thumbnails come through the key cookie, since reads need the key here
    wait(browser, lambda d: thumbnails_loaded(d, "[data-library-video-id]"), "the library's thumbnails")

    one(browser, "input[type=file]#upload").send_keys(str(notes))  # refused, and said so in words
    failed = wait(browser, lambda d: [r for r in job_rows(d) if r["failed"]], "the refused upload")[0]
    assert failed["name"] == "notes.mp4" and "not a decodable video" in failed["text"] and "HTTP 400" in failed["text"]

    fields.clear()
    path_form = one(browser, "form#add-path")
    path_form.find_element("css selector", "input[name=path]").send_keys("library/walk.mp4\n")
    # a dropped copy of a video already in the library is refused, naming that video
    drop_file(browser, "#dropzone", f"/videos/{ids[0]}/media", "dropped.mp4", "video/mp4")
    wait(browser, lambda d: sum(r["status"] == "done" for r in job_rows(d)) == 3, "the path's job")
    dropped = wait(browser, lambda d: [r for r in job_rows(d) if r["name"] == "dropped.mp4" and r["failed"]],
                   "the dropped copy to be refused")[0]
    assert f"already video {ids[0]}" in dropped["text"] and "HTTP 409" in dropped["text"], dropped
    wait(browser, lambda d: len(visible(d, "[data-library-video-id]")) == 3, "three videos in the library")
    assert {r["name"] for r in job_rows(browser)} == {"zebra0.mp4", "zebra1.mp4", "notes.mp4", "library/walk.mp4",
                                                       "dropped.mp4"}

    one(browser, "a[data-view=search]").click()
    search(browser, "zebra", mode="keyword")  # the uploads' caption, and only theirs
    assert sorted(result_ids(browser)) == ids
    wait(browser, lambda d: thumbnails_loaded(d, "#results"), "the results' thumbnails")
    first = one(browser, f"[data-video-id='{ids[0]}']")
    moment = first.find_element("css selector", "[data-start][data-end]")
    start = float(moment.get_attribute("data-start"))
    assert abs(play_moment(browser, moment) - start) <= 0.5
    assert browser.execute_script("return document.querySelector('video#player').currentSrc") \
        .endswith(f"/videos/{ids[0]}/media")

    one(browser, "a[data-view=library]").click()
    delete = one(browser, f"[data-library-video-id='{ids[0]}'] button.delete")
    delete.click()
    assert delete.text == "Really delete?" and visible(browser, f"[data-library-video-id='{ids[0]}']")
    delete.click()
    wait(browser, lambda d: not visible(d, f"[data-library-video-id='{ids[0]}']"), "the deleted video to go")
    with keyed.client() as c:
        assert c.get(f"/videos/{ids[0]}", headers=WRITE).status_code == 404
    one(browser, "a[data-view=search]").click()
    search(browser, "zebra", mode="keyword")
    assert result_ids(browser) == [ids[1]]
    expected_console(browser, r"/videos - Failed to load resource: .* 400", r"/videos - Failed to load resource: .* 409")


# --- in the browser: the demo library ---

def test_search_play_more_filters_and_modes(demo, browser, shots):
    wait_ready(demo)
    browser.get(demo.url)
    results = search(browser, "a red circle moves to the left")
    assert len(results) == 10
    wait(browser, lambda d: thumbnails_loaded(d, "#results"), "the results' thumbnails")
    for result in results:
        assert result.find_element("css selector", "h3").text
        moments = result.find_elements("css selector", "[data-start][data-end]")
        assert moments and all(0 <= float(m.get_attribute("data-start")) < float(m.get_attribute("data-end"))
                               for m in moments)

    one(browser, "#more").click()  # the next page, appended
    wait(browser, lambda d: len(visible(d, "[data-video-id]")) == 20, "the second page")
    assert len(set(result_ids(browser))) == 20

    from selenium.webdriver.support.ui import Select

    one(browser, "details.filters summary").click()
    corpus = wait(browser, lambda d: visible(d, "select[data-field=corpus]"), "the corpus filter")[0]
    Select(corpus).select_by_value('"didemo"')
    results = search(browser, "a star")
    assert len(results) == 3 and all("corpus: didemo" in r.find_element("css selector", ".meta").text
                                     for r in results)
    # the moment that starts latest, so that playing from it is not playing from the beginning
    moment = max((m for r in results for m in r.find_elements("css selector", "[data-start]")),
                 key=lambda m: float(m.get_attribute("data-start")))
    start = float(moment.get_attribute("data-start"))
    assert start > 0
    assert abs(play_moment(browser, moment) - start) <= 0.5
    wait(browser, lambda d: d.execute_script("const p = document.querySelector('video#player');"
                                             "return !p.paused && p.currentTime > arguments[0]", start),
         "the video to play on")
    assert "active" in moment.get_attribute("class") and len(visible(browser, "#timeline .mark.active")) == 1
    Select(corpus).select_by_value("")

    for result in search(browser, "circle", mode="keyword"):
        assert "circle" in result.find_element("css selector", ".caption").text
    search(browser, "circle", mode="hybrid")

    gap = one(browser, "input[name=max_gap]")
    gap.clear()
    gap.send_keys("100000")  # beyond the API's limit: its 422 is shown in words
    message = search(browser, "a red circle goes to the right", then="it drops to the bottom", fails=True)
    assert "The search failed: invalid request: body.max_gap" in message and "(HTTP 422, invalid_request)" in message
    gap.clear()
    gap.send_keys("10")
    results = search(browser, "a red circle goes to the right", then="it drops to the bottom")
    pair = results[0].find_elements("css selector", "[data-start][data-end]")
    assert [p.text[:2] for p in pair] == ["1.", "2."]
    assert float(pair[0].get_attribute("data-end")) <= float(pair[1].get_attribute("data-start"))
    play_moment(browser, pair[1])
    assert [m.text for m in visible(browser, "#timeline .mark")] == ["1", "2"]
    save_small_png(browser, shots / "page-search.png")

    source = int(results[0].get_attribute("data-video-id"))
    results[0].find_element("css selector", "button.similar").click()
    wait(browser, lambda d: finished(d, "moments like"), "similar moments")
    assert result_ids(browser) and source not in result_ids(browser)

    drop_file(browser, "#view-search", f"/videos/{source}/thumbnail", "frame.jpg", "image/jpeg")
    wait(browser, lambda d: finished(d, "frame.jpg"), "the search by a dropped image")
    assert result_ids(browser)
    expected_console(browser, r"/search - Failed to load resource: .* 422")


def test_usable_at_360_and_1440_pixels(demo, browser, shots):
    wait_ready(demo)
    for width in (360, 1440):
        viewport(browser, width, 800)
        browser.get(demo.url)
        results = search(browser, "a green square spins")
        play_moment(browser, results[0].find_element("css selector", "[data-start]"))
        layout = browser.execute_script(
            "const box = s => document.querySelector(s).getBoundingClientRect();"
            "return {overflow: document.documentElement.scrollWidth - innerWidth, query: box('input[name=q]'),"
            " results: box('#results'), viewer: box('#viewer')};")
        assert layout["overflow"] <= 0, (width, layout)
        assert 0 <= layout["query"]["left"] and layout["query"]["right"] <= width and layout["query"]["width"] > 150
        if width == 360:  # one column, the player above the results
            assert layout["viewer"]["bottom"] <= layout["results"]["top"]
        else:  # the player beside the results
            assert layout["viewer"]["left"] >= layout["results"]["right"]
    viewport(browser, 1280, 800)
    browser.get("about:blank")  # a new page: from the same page, only the #fragment would change
    browser.get(demo.url + "#library")
    wait(browser, lambda d: len(visible(d, "[data-library-video-id]")) == 24, "the library's first page")
    wait(browser, lambda d: thumbnails_loaded(d, "#library"), "the library's thumbnails")
    assert one(browser, "#library-count").text == "31 videos" and visible(browser, "#library-more")
    save_small_png(browser, shots / "page-library.png")
    expected_console(browser)


def test_the_api_docs_render_in_the_browser_with_nothing_from_elsewhere(demo, browser):
    """Swagger UI and ReDoc draw the operations from assets the service serves (this machine has no internet: a CDN
    reference would leave the page blank and log an error)."""
    browser.get(demo.url + "/docs")
    wait(browser, lambda d: visible(d, ".swagger-ui .opblock-summary-path[data-path='/search']"), "Swagger UI's /search")
    browser.get(demo.url + "/redoc")
    wait(browser, lambda d: d.execute_script("return document.body.innerText.includes('Search videos by text')")
         or visible(d, "[data-section-id^='operation/']"), "ReDoc's operations")
    elsewhere = browser.execute_script("return performance.getEntriesByType('resource').map(e => e.name)"
                                       ".filter(n => !n.startsWith(location.origin))")
    assert not elsewhere, elsewhere
    expected_console(browser)
