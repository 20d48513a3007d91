"""Settings of the qcluster worker started by the import tests: the project's
settings with a queue of the test's own (HEROSHHI_TEST_QUEUE), so no other worker on
the same broker takes its task and this worker takes no one else's."""

import os

from heroshhi.settings import *  # noqa: F403
from heroshhi.settings import Q_CLUSTER

Q_CLUSTER = {**Q_CLUSTER, "cluster_name": os.environ["HEROSHHI_TEST_QUEUE"], "workers": 1, "poll": 0.2}
