"""`make run`: the web server and a django-q2 worker together, in one terminal.

Ctrl-C (or SIGTERM) stops both; if either exits, the other is stopped too."""

import signal
import socket
import subprocess
import sys
import time

from django.core.management.base import BaseCommand

from heroshhi.management.commands.seed_demo import DEMO_PASSWORD, DEMO_USERS


class Command(BaseCommand):
    help = "Run the web server and the background worker together."

    def add_arguments(self, parser):
        parser.add_argument("--host", default="127.0.0.1")
        parser.add_argument("--port", type=int, default=8000)

    def handle(self, *args, host, port, **options):
        from campaigns.services import dispatcher_ensure
        from messaging.services import delivery_sweeper_ensure

        # The worker's recurring schedules exist before it starts.
        dispatcher_ensure()
        delivery_sweeper_ensure()
        manage = [sys.executable, "manage.py"]
        worker = subprocess.Popen([*manage, "qcluster"])
        web = subprocess.Popen([*manage, "runserver", "--noreload", f"{host}:{port}"])
        children = [web, worker]

        def stop(*_):
            for child in children:
                if child.poll() is None:
                    child.terminate()

        signal.signal(signal.SIGTERM, stop)
        try:
            if self._wait_for_port(host, port, web):
                self.stdout.write(
                    self.style.SUCCESS(f"\nHeroshhi is running at http://{host}:{port}/")
                    + f"\n  API docs:  http://{host}:{port}/api/docs/"
                    + "".join(f"\n  {role:<6} {email} / {DEMO_PASSWORD}" for email, _, role in DEMO_USERS)
                    + "\n  WhatsApp:  sandbox provider (no Meta connection)"
                    + "\n  Ctrl-C stops the server and the worker.\n"
                )
            while all(child.poll() is None for child in children):
                time.sleep(0.5)
        except KeyboardInterrupt:
            pass
        finally:
            stop()
            for child in children:
                try:
                    child.wait(timeout=15)
                except subprocess.TimeoutExpired:
                    child.kill()

    @staticmethod
    def _wait_for_port(host: str, port: int, process, timeout: float = 30) -> bool:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline and process.poll() is None:
            try:
                with socket.create_connection((host, port), timeout=0.5):
                    return True
            except OSError:
                time.sleep(0.2)
        return False
