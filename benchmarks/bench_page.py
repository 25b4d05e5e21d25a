"""The search page's two acceptance figures, measured in headless Chromium on the demo library:

- weight: the bytes of the page (HTML, CSS, JavaScript) as the browser received them, without videos and
  thumbnails; the API's JSON answers of the first load are reported beside it;
- render time: from the moment the POST /search answer arrived (its Resource Timing responseEnd) to the frame after
  the results were put on screen (the page's `vmr:results-rendered` mark), for each of a list of queries; and,
  for information, until every thumbnail of the results had arrived (first round: not yet in the browser's cache).

    python benchmarks/bench_page.py [--url http://127.0.0.1:8000] [--rounds 3]

Without --url it serves the embedded demo library (the committed demo model) from a temp dir first, which takes a
minute or two. Needs what the browser tests need (scripts/setup.sh): Debian's chromium and chromium-driver,
selenium.
"""
from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from contextlib import ExitStack
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))  # the browser and server launchers the page's tests use

from browser_helpers import chromium  # noqa: E402
from test_service_helpers import Service  # noqa: E402

QUERIES = ["a red circle moves to the left", "a green square spins", "a blue star grows", "a shape turns white",
           "a yellow heart moves up", "a purple cross shrinks", "a circle on a striped background",
           "a large pink square turns clockwise", "a small hexagon goes to the right", "something drops to the bottom"]
MEDIA = ("/thumbnail", "/media")


def demo_server(stack: ExitStack) -> str:
    from encoders.video_text import demo_model_path

    data = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="bench-page-")))
    service = Service(data / "data", Path(demo_model_path()), "--embedded-default", "true", "--segment-window", "8",
                      "--segment-stride", "4", api_key=None).start()
    stack.callback(service.kill)
    with service.client() as c:
        while (status := c.get("/healthz").json()["default_library"]) != "ready":
            if status.startswith("failed"):
                raise RuntimeError(f"the demo library failed: {status}")
            time.sleep(1)
    return service.url


def weight(driver, url: str) -> dict:
    from selenium.webdriver.support.ui import WebDriverWait

    driver.get(url)
    # the first load's API calls are over once the library (read last) is listed
    WebDriverWait(driver, 60).until(lambda d: d.execute_script(
        "return document.getElementById('library-count').textContent"))
    entries = driver.execute_script(
        "return [...performance.getEntriesByType('navigation'), ...performance.getEntriesByType('resource')]"
        ".map(e => ({name: e.name, type: e.initiatorType || 'navigation', bytes: e.encodedBodySize}))")
    page = [e for e in entries if not any(m in e["name"] for m in MEDIA) and
            (e["type"] == "navigation" or "/page/" in e["name"])]
    api = [e for e in entries if e not in page and not any(m in e["name"] for m in MEDIA)]
    return {"page_bytes": sum(e["bytes"] for e in page), "page_files": sorted(e["name"].rsplit("/", 1)[-1] or "/"
                                                                                for e in page),
            "api_bytes": sum(e["bytes"] for e in api), "api_calls": len(api)}


def render_times(driver, url: str, rounds: int) -> tuple[list[float], list[float]]:
    from selenium.webdriver.support.ui import WebDriverWait

    driver.get(url)
    rendered, thumbs = [], []
    for n, query in enumerate(QUERIES * rounds):
        driver.execute_script("performance.clearMarks(); performance.clearResourceTimings();"
                              "const form = document.querySelector('form#search'); form.q.value = arguments[0];"
                              "form.requestSubmit();", query)
        times = WebDriverWait(driver, 60, poll_frequency=0.05).until(lambda d: d.execute_script(
            "const mark = performance.getEntriesByName('vmr:results-rendered')[0];"
            "const imgs = [...document.querySelectorAll('#results img')];"
            "if (!mark || !imgs.every(i => i.complete)) return null;"
            "const res = performance.getEntriesByType('resource');"
            "const answer = res.filter(e => e.name.endsWith('/search')).at(-1).responseEnd;"
            "const last = Math.max(answer, ...res.filter(e => e.name.includes('/thumbnail')).map(e => e.responseEnd));"
            "return [mark.startTime - answer, last - answer];"))
        rendered.append(times[0])
        if n < len(QUERIES):  # later rounds find the thumbnails in the browser's cache
            thumbs.append(times[1])
    return rendered, thumbs


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--url", help="a running server with a library (default: serve the demo library)")
    parser.add_argument("--rounds", type=int, default=3, help=f"times each of the {len(QUERIES)} queries is run")
    args = parser.parse_args()
    with ExitStack() as stack:
        url = args.url or demo_server(stack)
        driver = stack.enter_context(chromium(1280, 800))
        sizes = weight(driver, url)
        rendered, thumbs = render_times(driver, url, args.rounds)
    print(f"page: {sizes['page_bytes']:,} bytes ({sizes['page_bytes'] / 1024:.1f} KiB) in {len(sizes['page_files'])} "
          f"files: {', '.join(sizes['page_files'])}")
    print(f"API answers on first load: {sizes['api_bytes']:,} bytes in {sizes['api_calls']} calls")

    def spread(xs: list[float]) -> str:
        xs = sorted(xs)
        return (f"median {statistics.median(xs):.1f} ms, p95 {xs[int(0.95 * (len(xs) - 1))]:.1f} ms, "
                f"max {xs[-1]:.1f} ms")

    print(f"answer -> results on screen, {len(rendered)} searches: {spread(rendered)}")
    print(f"answer -> every thumbnail arrived, first round ({len(thumbs)} searches): {spread(thumbs)}")


if __name__ == "__main__":
    main()
