"""Load the built documentation in headless Chromium and check what a reader would see.

Serves ``docs/_build/html`` on 127.0.0.1, opens every page of the site (the index, the
API reference and the gallery pages among them), and fails (exit status 1) when a page logs a
console error, throws, requests anything that is not on this server, leaves an image
unloaded, shows a gallery page without a figure, or leaves maths untypeset. A
full-page screenshot of each page is written for a person to look at.

Usage::

    python docs/check_site.py [--site docs/_build/html] [--screenshots DIR]
                              [--chromium /usr/bin/chromium]
"""

from __future__ import annotations

import argparse
import functools
import http.server
import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit

from playwright.sync_api import Page, sync_playwright

DOCS = Path(__file__).resolve().parent
#: Pages every build must have; the others are found in the build.
REQUIRED_PAGES = ("index.html", "api.html", "auto_examples/index.html")
#: Build folders that hold assets, not pages.
_ASSET_FOLDERS = ("_static", "_sources", "_downloads", "_images")

# Counts images that did not load, gallery figures, and maths typeset or not, once
# MathJax (if the page loads it) has finished.
_INSPECT_PAGE = """
async () => {
  if (document.readyState !== "complete") {
    await new Promise(resolve => window.addEventListener("load", resolve, {once: true}));
  }
  if (window.MathJax && MathJax.startup && MathJax.startup.promise) {
    await MathJax.startup.promise;
  }
  const images = Array.from(document.images);
  return {
    broken: images.filter(i => !(i.complete && i.naturalWidth > 0)).map(i => i.src),
    figures: document.querySelectorAll("img.sphx-glr-single-img, img.sphx-glr-multi-img").length,
    maths: document.querySelectorAll(".math").length,
    typeset: document.querySelectorAll("mjx-container").length,
  };
}
"""


@dataclass
class PageReport:
    """What one page showed; ``problems`` is empty when it passed."""

    path: str
    figures: int = 0
    maths: int = 0
    problems: list[str] = field(default_factory=list)


class _QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, format: str, *args: object) -> None:  # noqa: A002
        pass  # one line per request would drown the report


@contextmanager
def serve(site: Path) -> Iterator[str]:
    """Serve ``site`` on a free port of 127.0.0.1 in a thread; yields the base URL."""
    handler = functools.partial(_QuietHandler, directory=str(site))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/"
    finally:
        server.shutdown()
        server.server_close()
        thread.join()


def site_pages(site: Path) -> list[str]:
    """Every HTML page of the build, relative to ``site``, the required ones first."""
    found = {p.relative_to(site).as_posix() for p in site.rglob("*.html")}
    found = {p for p in found if p.split("/", 1)[0] not in _ASSET_FOLDERS}
    return [*REQUIRED_PAGES, *sorted(found - set(REQUIRED_PAGES))]


def check_page(page: Page, base: str, path: str, screenshots: Path) -> PageReport:
    """Load one page, inspect it and write its screenshot."""
    report = PageReport(path)
    host = urlsplit(base).netloc

    def on_console(message) -> None:
        if message.type == "error":
            report.problems.append(f"console error: {message.text}")

    def on_request(route) -> None:
        # The site must work offline: anything from elsewhere is refused and reported.
        if urlsplit(route.request.url).netloc != host:
            report.problems.append(f"request outside the site: {route.request.url}")
            route.abort()
        else:
            route.continue_()

    page.on("console", on_console)
    page.on("pageerror", lambda error: report.problems.append(f"page error: {error}"))
    page.on("requestfailed", lambda r: report.problems.append(f"failed request: {r.url}"))
    page.route("**/*", on_request)
    # "networkidle" alone can fire while a long page is still being parsed (its deferred
    # scripts, MathJax among them, not yet run): wait for "load" first, then for quiet.
    response = page.goto(base + path, wait_until="load")
    page.wait_for_load_state("networkidle")
    if response is None or not response.ok:
        report.problems.append(f"HTTP {response.status if response else 'no response'}")
    seen = page.evaluate(_INSPECT_PAGE)
    report.figures, report.maths = seen["figures"], seen["maths"]
    report.problems += [f"image did not load: {src}" for src in seen["broken"]]
    if path.startswith("auto_examples/") and path != "auto_examples/index.html":
        if seen["figures"] == 0:
            report.problems.append("gallery page without a figure")
    if seen["typeset"] < seen["maths"]:
        report.problems.append(f"{seen['maths'] - seen['typeset']} maths not typeset")
    shot = screenshots / (path.replace("/", "__").removesuffix(".html") + ".png")
    page.screenshot(path=str(shot), full_page=True)
    return report


def check_site(site: Path, screenshots: Path, chromium: str) -> list[PageReport]:
    """Check every page of the site in one browser; one report per page."""
    missing = [p for p in REQUIRED_PAGES if not (site / p).is_file()]
    if missing:
        raise FileNotFoundError(f"not built: {', '.join(missing)} under {site}")
    screenshots.mkdir(parents=True, exist_ok=True)
    paths = site_pages(site)
    reports = []
    with serve(site) as base, sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=chromium)
        try:
            for path in paths:
                page = browser.new_page(viewport={"width": 1280, "height": 900})
                reports.append(check_page(page, base, path, screenshots))
                page.close()
        finally:
            browser.close()
    return reports


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--site", type=Path, default=DOCS / "_build" / "html")
    parser.add_argument("--screenshots", type=Path, default=DOCS / "_build" / "screenshots")
    parser.add_argument("--chromium", default="/usr/bin/chromium")
    args = parser.parse_args(argv)
    reports = check_site(args.site, args.screenshots, args.chromium)
    for report in reports:
        status = "ok  " if not report.problems else "FAIL"
        print(f"{status} {report.path}: {report.figures} figures, {report.maths} maths")
        for problem in report.problems:
            print(f"     {problem}")
    failed = sum(bool(r.problems) for r in reports)
    print(
        f"{len(reports) - failed} pages passed, {failed} failed; screenshots in {args.screenshots}"
    )
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
