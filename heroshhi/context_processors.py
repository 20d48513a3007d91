"""What every dashboard page shows around its content: the navigation, the account,
its time zone, and whether WhatsApp runs in the sandbox."""

from dataclasses import dataclass

from django.http import HttpRequest
from django.urls import NoReverseMatch, reverse
from django.utils.functional import SimpleLazyObject

# (label, URL name, admins only). Pages that don't exist (yet) are left out of the
# navigation: an entry shows only when its URL name resolves.
NAVIGATION = (
    ("Home", "home", False),
    ("Leads", "leads:list", False),
    ("Contacts", "contacts", False),
    ("Import", "lead-import", True),
    ("Broadcasts", "broadcasts", False),
    ("Drips", "drips", False),
    ("Scheduled", "scheduled", False),
    ("Analytics", "analytics", False),
    ("WhatsApp settings", "whatsapp-settings", True),
    ("Team", "team", True),
)


@dataclass(frozen=True)
class NavItem:
    label: str
    url: str
    active: bool


def _nav_items(request: HttpRequest, *, is_admin: bool) -> list[NavItem]:
    items = []
    for label, name, admins_only in NAVIGATION:
        if admins_only and not is_admin:
            continue
        try:
            url = reverse(name)
        except NoReverseMatch:
            continue
        active = request.path == url if url == "/" else request.path.startswith(url)
        items.append(NavItem(label=label, url=url, active=active))
    # One entry is current: the longest match (/leads/import is Import's, not Leads').
    current = max((item for item in items if item.active), key=lambda item: len(item.url), default=None)
    return [item if item.active == (item is current) else NavItem(item.label, item.url, False) for item in items]


def dashboard(request: HttpRequest) -> dict:
    user = getattr(request, "user", None)
    if user is None or not user.is_authenticated:
        return {}
    from messaging.selectors import connection_for

    account = user.account
    return {
        "account": account,
        "account_time_zone": account.time_zone,
        "nav_items": SimpleLazyObject(lambda: _nav_items(request, is_admin=user.is_account_admin)),
        # Labelled everywhere while the workspace has no Cloud API connection.
        "whatsapp_sandbox": SimpleLazyObject(lambda: connection_for(account=account) is None),
    }
