from django.conf import settings
from django.core import checks


@checks.register(checks.Tags.compatibility)
def check_task_queue(app_configs, **kwargs):
    """django-q2 re-queues a task still running after `retry` seconds: a send would
    go out twice. `retry` must exceed `timeout`."""
    q = settings.Q_CLUSTER
    errors = []
    if q["retry"] <= q["timeout"]:
        errors.append(
            checks.Error(
                f"Q_CLUSTER retry ({q['retry']}s) must be greater than timeout ({q['timeout']}s)",
                hint="Set Q_RETRY above Q_TIMEOUT.",
                id="heroshhi.E001",
            )
        )
    if q.get("max_attempts", 0) < 1:
        errors.append(checks.Error("Q_CLUSTER max_attempts must be at least 1", id="heroshhi.E002"))
    return errors


@checks.register(checks.Tags.compatibility)
def check_message_claim_timeout(app_configs, **kwargs):
    """A worker may hold a message's send claim for up to Q_CLUSTER timeout seconds;
    a claim younger than that must not be taken over, or the message goes out twice."""
    claim, timeout = settings.MESSAGE_CLAIM_TIMEOUT, settings.Q_CLUSTER["timeout"]
    if claim <= timeout:
        return [
            checks.Error(
                f"MESSAGE_CLAIM_TIMEOUT ({claim}s) must be greater than the Q_CLUSTER timeout ({timeout}s)",
                hint="Set MESSAGE_CLAIM_TIMEOUT above Q_TIMEOUT.",
                id="heroshhi.E004",
            )
        ]
    return []


@checks.register(checks.Tags.security, deploy=False)
def check_field_encryption_key(app_configs, **kwargs):
    from django.core.exceptions import ImproperlyConfigured

    from heroshhi import crypto

    try:
        crypto.check_keys()
    except ImproperlyConfigured as exc:
        return [checks.Error(str(exc), id="heroshhi.E003")]
    return []
