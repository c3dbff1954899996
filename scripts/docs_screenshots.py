"""Build the documentation site, look at three of its pages in headless Chromium, and check it.

    python scripts/docs_screenshots.py OUT_DIR [--site DIR] [--chromium PATH] [--no-build]

1. builds the site with ``mkdocs build --strict`` (into a temporary folder unless --site),
2. serves it on 127.0.0.1 (http.server, a free port) and records every request and its status,
3. opens the lecture map (CS224n notes), two results pages and an API page in headless Chromium:
   a 1280×2000 screenshot of each goes to OUT_DIR/<name>.png, and the DOM after the page's
   scripts ran goes to OUT_DIR/<name>.dom.html,
4. checks that
   - the math rendered: KaTeX elements are in the DOM, none is a KaTeX error, and no
     ``arithmatex`` element was left untypeset,
   - every image of the page was requested by the browser and served with status 200 (so it
     loaded), and no request of the page (scripts, styles, fonts) failed,
   - every internal link of every built page resolves: the target file exists and, for
     ``page#anchor``, the anchor is an id of that page.

Exit status 0 when everything holds, 1 otherwise (each failure printed). Needs Chromium
(Debian: ``apt-get install -y chromium``) and the docs extra (``pip install -e ".[docs]"``).
"""

from __future__ import annotations

import functools
import html.parser
import http.server
import os
import posixpath
import re
import shutil
import subprocess
import sys
import tempfile
import threading
import urllib.parse
from pathlib import Path

from lecturenn.cli import Parser

ROOT = Path(__file__).resolve().parent.parent

# (name, page): the lecture map, results pages with figures (the CNN page's figure is below the
# first 2000 pixels, the experiment's is on screen), an API page
PAGES = (
    ("lecture-map", "lectures/cs224n-notes.html"),
    ("results", "results/cnn.html"),
    ("experiment", "experiments/nonlinearities.html"),
    ("api", "api/nn.html"),
)

CHROMIUM_FLAGS = (
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--hide-scrollbars",
    "--virtual-time-budget=15000",  # let the page's scripts (KaTeX) run before the capture
)


def build_site(site: Path) -> None:
    env = dict(os.environ, NO_MKDOCS_2_WARNING="1")
    cmd = [sys.executable, "-m", "mkdocs", "build", "--strict", "--site-dir", str(site)]
    print("$", " ".join(cmd), flush=True)
    subprocess.run(cmd, cwd=ROOT, env=env, check=True)


# --- serving ----------------------------------------------------------------------------------


class RecordingHandler(http.server.SimpleHTTPRequestHandler):
    """Serves the site and remembers (path, status) of every request."""

    log: list[tuple[str, int]]

    def log_request(self, code="-", size="-"):
        status = code.value if hasattr(code, "value") else int(code)
        self.log.append((urllib.parse.unquote(urllib.parse.urlsplit(self.path).path), status))

    def log_message(self, format, *args):  # quiet
        pass


def serve(site: Path):
    log: list[tuple[str, int]] = []
    handler = functools.partial(
        type("Handler", (RecordingHandler,), {"log": log}), directory=str(site)
    )
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server, log


# --- chromium ---------------------------------------------------------------------------------


def chromium(binary: str, profile: Path, *args: str, timeout: float = 120) -> str:
    cmd = [binary, *CHROMIUM_FLAGS, f"--user-data-dir={profile}", *args]
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)
    if done.returncode != 0:
        raise RuntimeError(f"chromium failed ({done.returncode}): {done.stderr[-2000:]}")
    return done.stdout


# --- HTML parsing -----------------------------------------------------------------------------


class Collector(html.parser.HTMLParser):
    """ids, link targets and image sources of one HTML document, and KaTeX markers."""

    def __init__(self):
        super().__init__(convert_charrefs=True)
        self.ids: set[str] = set()
        self.links: list[str] = []
        self.images: list[str] = []
        self.classes: dict[str, int] = {}

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        if attrs.get("id"):
            self.ids.add(attrs["id"])
        if tag == "a" and attrs.get("name"):
            self.ids.add(attrs["name"])
        for key in ("href", "src"):
            if attrs.get(key) and tag in ("a", "link", "script", "img", "source"):
                self.links.append(attrs[key])
        if tag == "img" and attrs.get("src"):
            self.images.append(attrs["src"])
        for cls in (attrs.get("class") or "").split():
            self.classes[cls] = self.classes.get(cls, 0) + 1


def parse(text: str) -> Collector:
    collector = Collector()
    collector.feed(text)
    return collector


def is_internal(url: str) -> bool:
    parts = urllib.parse.urlsplit(url)
    return not parts.scheme and not parts.netloc and not url.startswith(("//", "data:"))


def check_links(site: Path) -> list[str]:
    """Every internal href/src of every built page points at an existing file (and anchor)."""
    failures = []
    parsed: dict[Path, Collector] = {}

    def page(path: Path) -> Collector:
        if path not in parsed:
            parsed[path] = parse(path.read_text(encoding="utf-8", errors="replace"))
        return parsed[path]

    pages = sorted(site.rglob("*.html"))
    checked = 0
    for source in pages:
        for url in page(source).links:
            if not is_internal(url):
                continue
            parts = urllib.parse.urlsplit(url)
            target_path = urllib.parse.unquote(parts.path)
            checked += 1
            where = f"{source.relative_to(site)}: {url}"
            if target_path:
                # "/x" is relative to the site's root (the 404 page links that way)
                folder = "" if target_path.startswith("/") else source.parent.relative_to(site)
                joined = posixpath.normpath(
                    posixpath.join(Path(folder).as_posix(), target_path.lstrip("/"))
                )
                if joined == ".." or joined.startswith("../"):
                    failures.append(f"link outside the site {where}")
                    continue
                target = site / joined
                if target.is_dir():
                    target = target / "index.html"
            else:
                target = source
            if not target.is_file():
                failures.append(f"broken link {where} (no {target.relative_to(site)})")
                continue
            fragment = urllib.parse.unquote(parts.fragment)
            if fragment and target.suffix == ".html" and fragment not in page(target).ids:
                failures.append(f"broken anchor {where} (no id {fragment!r})")
    print(f"links: {checked} internal links in {len(pages)} pages checked")
    return failures


def check_page(name: str, page: str, dom: str, requests: list[tuple[str, int]]) -> list[str]:
    failures = []
    doc = parse(dom)
    katex = doc.classes.get("katex", 0)
    errors = doc.classes.get("katex-error", 0)
    untypeset = len(re.findall(r'class="arithmatex"(?![^>]*data-typeset)', dom))
    math_expected = doc.classes.get("arithmatex", 0)
    print(
        f"{name}: {page}: {katex} KaTeX formulas ({math_expected} math elements), "
        f"{len(doc.images)} images, {len(requests)} requests"
    )
    if name == "lecture-map" and katex == 0:
        failures.append(f"{page}: no KaTeX formula in the DOM: the math did not render")
    if errors:
        failures.append(f"{page}: {errors} KaTeX error(s) (a formula KaTeX could not parse)")
    if untypeset:
        failures.append(f"{page}: {untypeset} math element(s) left untypeset")
    served = {}
    for path, status in requests:
        served.setdefault(path, status)
        if status >= 400:
            failures.append(f"{page}: the browser's request for {path} got {status}")
    base = "/" + posixpath.dirname(page)
    for src in doc.images:
        if not is_internal(src):
            failures.append(f"{page}: image {src} is not served by the site")
            continue
        path = posixpath.normpath(posixpath.join(base, urllib.parse.urlsplit(src).path))
        if served.get(path) != 200:
            failures.append(
                f"{page}: image {src} did not load ({served.get(path, 'never requested')})"
            )
    return failures


def main(argv: list[str] | None = None) -> int:
    parser = Parser(description=__doc__.splitlines()[0])
    parser.add_argument("out", type=Path, help="folder for the screenshots (created)")
    parser.add_argument("--site", type=Path, help="build into (or, with --no-build, read) DIR")
    parser.add_argument("--no-build", action="store_true", help="use the site already in --site")
    parser.add_argument("--chromium", default=shutil.which("chromium") or "/usr/bin/chromium")
    args = parser.parse_args(argv)

    args.out.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="lecturenn-docs-") as tmp:
        site = args.site or Path(tmp) / "site"
        if args.no_build:
            if not args.site:
                parser.error("--no-build needs --site")
        else:
            build_site(site)
        failures = check_links(site)
        server, log = serve(site)
        port = server.server_address[1]
        try:
            for name, page in PAGES:
                url = f"http://127.0.0.1:{port}/{page}"
                shot = args.out / f"{name}.png"
                with tempfile.TemporaryDirectory(prefix="chromium-") as profile:
                    del log[:]
                    chromium(
                        args.chromium,
                        Path(profile),
                        f"--screenshot={shot}",
                        "--window-size=1280,2000",
                        url,
                    )
                    requests = list(log)
                with tempfile.TemporaryDirectory(prefix="chromium-") as profile:
                    dom = chromium(args.chromium, Path(profile), "--dump-dom", url)
                (args.out / f"{name}.dom.html").write_text(dom, encoding="utf-8")
                if not shot.is_file() or shot.stat().st_size == 0:
                    failures.append(f"{page}: no screenshot was written")
                failures += check_page(name, page, dom, requests)
                print(f"  screenshot: {shot}")
        finally:
            server.shutdown()
    for failure in failures:
        print("FAIL", failure)
    print("all checks passed" if not failures else f"{len(failures)} check(s) failed")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
