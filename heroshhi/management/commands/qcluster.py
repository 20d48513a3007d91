"""``manage.py qcluster``: django-q2's cluster, with its scheduler run every second.

django-q2's sentinel looks for due schedules only every 30 seconds, so a one-off
schedule (the time of a scheduled message or a broadcast, a delivery retry after a
2-second backoff) starts up to 30 s late. This command takes the place of django-q2's
own (the heroshhi app comes before django_q in INSTALLED_APPS): it starts the cluster as
django-q2's does, then runs django-q2's ``scheduler`` every SCHEDULER_TICK_SECONDS from a
thread of this parent process, started after the cluster's processes are forked (so no
fork copies it). Every cluster may do so: the scheduler locks the schedules it takes, so
each runs once. SCHEDULER_TICK_SECONDS = 0 leaves django-q2's 30 seconds alone."""

import logging
import os
import threading
import time

from django.conf import settings
from django.db import connection
from django_q.brokers import get_broker
from django_q.cluster import Cluster
from django_q.management.commands import qcluster
from django_q.scheduler import scheduler

logger = logging.getLogger(__name__)


class Command(qcluster.Command):
    help = "Starts a django-q2 cluster that looks for due schedules every SCHEDULER_TICK_SECONDS."

    def handle(self, *args, **options):
        tick = settings.SCHEDULER_TICK_SECONDS
        if not tick or options.get("run_once"):
            return super().handle(*args, **options)
        settings.SECRET_KEY  # noqa: B018  (as django-q2's: refuse to start without it, tasks are signed)
        if options.get("cluster_name"):
            os.environ["Q_CLUSTER_NAME"] = options["cluster_name"]
        cluster = Cluster()
        cluster.start()  # forks the sentinel, which forks the workers
        stop = threading.Event()
        ticker = threading.Thread(target=run_scheduler, args=(tick, stop), name="scheduler-tick", daemon=True)
        ticker.start()
        try:
            # Until SIGTERM or SIGINT: django-q2's handler, set by Cluster(), stops the cluster.
            while cluster.sentinel.is_alive():
                time.sleep(0.5)
        finally:
            stop.set()
            ticker.join(timeout=10)
        return None


def run_scheduler(tick: float, stop: threading.Event) -> None:
    """django-q2's scheduler every ``tick`` seconds until ``stop``; an error (the
    database restarting) is logged and the next tick tries again."""
    broker = get_broker()
    try:
        while not stop.wait(tick):
            try:
                scheduler(broker=broker)
            except Exception:
                logger.exception("django-q2 scheduler tick failed")
    finally:
        connection.close()
