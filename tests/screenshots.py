"""`make screenshots`: a screenshot of every main dashboard page, from a fresh demo.

    .venv/bin/python -m tests.screenshots [--out docs/screenshots]

Builds a throwaway SQLite database with the demo data (the same `seed_demo` as `make
run`), starts `manage.py serve` (web server and worker, sandbox WhatsApp) on a free port,
logs in through the login form as the demo admin in Debian's headless Chromium (never a
downloaded browser) and saves each page as a PNG, plus the leads list on a phone-sized
screen. A page that does not answer 200 stops the run with its URL: the pictures in the
README must be of pages that work."""

import argparse
import os
import re
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
DESKTOP = {"width": 1280, "height": 900}
PHONE = {"width": 390, "height": 844}
# (file name, path); "{lead}" is the first lead of the demo's leads list.
PAGES = [
    ("home", "/"),
    ("leads", "/leads"),
    ("lead", "{lead}"),
    ("contacts", "/contacts"),
    ("import", "/leads/import"),
    ("broadcasts", "/broadcasts"),
    ("broadcast-new", "/broadcasts/new"),
    ("drips", "/drips"),
    ("scheduled", "/scheduled"),
    ("analytics", "/analytics"),
    ("whatsapp-settings", "/settings/whatsapp"),
    ("team", "/team"),
]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def wait_for_port(port: int, server: subprocess.Popen, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if server.poll() is not None:
            sys.exit("The server exited before answering; see its output above.")
        with socket.socket() as sock:
            if sock.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.3)
    sys.exit(f"Nothing answered on port {port} within {timeout:.0f} s.")


def manage(env: dict, *args: str) -> None:
    subprocess.run([sys.executable, "manage.py", *args], cwd=ROOT, env=env, check=True, stdout=subprocess.DEVNULL)


def shoot(base_url: str, out: Path) -> list[Path]:
    from playwright.sync_api import sync_playwright

    from heroshhi.management.commands.seed_demo import DEMO_PASSWORD, DEMO_USERS

    chromium = os.environ.get("CHROMIUM_PATH", "/usr/bin/chromium")
    if not os.access(chromium, os.X_OK):
        sys.exit(f"Chromium is not installed at {chromium}: `apt-get install chromium` (never downloaded).")
    saved = []
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=chromium, headless=True, args=["--no-sandbox"])
        context = browser.new_context(base_url=base_url, viewport=DESKTOP)
        page = context.new_page()
        page.goto("/login")
        page.get_by_label(re.compile("email", re.IGNORECASE)).first.fill(DEMO_USERS[0][0])
        page.get_by_label(re.compile("password", re.IGNORECASE)).first.fill(DEMO_PASSWORD)
        page.locator("form button[type=submit], form input[type=submit]").first.click()
        page.wait_for_url(lambda url: "/login" not in url)
        page.goto("/leads")
        lead = page.locator("a[href^='/leads/'][href*='-']").first.get_attribute("href")
        for name, path in PAGES:
            url = path.format(lead=lead)
            response = page.goto(url)
            if response is None or response.status != 200:
                sys.exit(f"{url} answered {response.status if response else 'nothing'}: not a page to show.")
            page.wait_for_load_state("networkidle")
            target = out / f"{name}.png"
            page.screenshot(path=str(target), full_page=True)
            saved.append(target)
        page.set_viewport_size(PHONE)
        page.goto("/leads")
        page.wait_for_load_state("networkidle")
        target = out / "leads-phone.png"
        page.screenshot(path=str(target), full_page=True)
        saved.append(target)
        browser.close()
    return saved


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", default=str(ROOT / "docs" / "screenshots"))
    args = parser.parse_args()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="heroshhi-shots-") as scratch:
        env = {
            **os.environ,
            "DATABASE_URL": f"sqlite:///{scratch}/db.sqlite3",
            "REDIS_URL": "",
            "DJANGO_ENV": "development",
            "CACHE_KEY_PREFIX": "heroshhi-screenshots",
        }
        manage(env, "migrate", "--noinput")
        manage(env, "createcachetable")
        manage(env, "seed_demo")
        port = free_port()
        server = subprocess.Popen(
            [sys.executable, "manage.py", "serve", "--port", str(port)],
            cwd=ROOT,
            env=env,
            stdout=subprocess.DEVNULL,
        )
        try:
            wait_for_port(port, server)
            # The demo's logins are read from seed_demo, which needs Django set up (on
            # the same scratch database; this process only reads constants).
            os.environ.update(env)
            os.environ.setdefault("DJANGO_SETTINGS_MODULE", "heroshhi.settings")
            import django

            django.setup()
            saved = shoot(f"http://127.0.0.1:{port}", out)
        finally:
            server.terminate()
            try:
                server.wait(timeout=20)
            except subprocess.TimeoutExpired:
                server.kill()
    for path in saved:
        print(path.relative_to(ROOT) if path.is_relative_to(ROOT) else path)


if __name__ == "__main__":
    main()
