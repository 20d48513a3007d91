"""Demo data for the embedded shape (make run): an account, an admin, an agent and
some leads. Idempotent: running it again changes nothing and duplicates nothing."""

from django.core.management.base import BaseCommand
from django.db import transaction

from accounts.models import Account, User
from leads.models import Lead

DEMO_ACCOUNT = "Acme Demo"
DEMO_PASSWORD = "demo-pass-2026"  # noqa: S105 (printed at start: demo data only)
DEMO_USERS = [
    ("admin@demo.heroshhi.local", "Asha Admin", User.Role.ADMIN),
    ("agent@demo.heroshhi.local", "Arjun Agent", User.Role.AGENT),
]
DEMO_LEADS = [
    ("Priya Sharma", "+919876543210", "priya@example.com", "Website Form", "hot", "pending", "agent"),
    ("Rahul Verma", "+919876543211", "rahul@example.com", "Facebook Ad", "warm", "contacted", "agent"),
    ("Meera Iyer", "+919876543212", "", "Referral", "hot", "qualified", "admin"),
    ("Karan Mehta", "+919876543213", "karan@example.com", "Website Form", "cold", "lost", None),
    ("Ananya Gupta", "+919876543214", "ananya@example.com", "CSV Import", "warm", "converted", "agent"),
    ("Vikram Singh", "+919876543215", "", "Walk-in", "cold", "pending", None),
    ("Neha Kapoor", "+919876543216", "neha@example.com", "Website Form", "warm", "pending", None),
    ("Rohan Das", "+919876543217", "", "Facebook Ad", "cold", "contacted", "agent"),
]


class Command(BaseCommand):
    help = "Create the demo account, users and leads (idempotent)."

    @transaction.atomic
    def handle(self, *args, **options):
        account, _ = Account.objects.get_or_create(name=DEMO_ACCOUNT, defaults={"time_zone": "Asia/Kolkata"})
        users = {}
        for email, name, role in DEMO_USERS:
            user = User.objects.filter(email=email).first()
            if user is None:
                user = User.objects.create_user(email, DEMO_PASSWORD, account=account, name=name, role=role)
            users[role] = user
        existing = set(Lead.objects.filter(account=account).values_list("phone", flat=True))
        Lead.objects.bulk_create(
            [
                Lead(
                    account=account,
                    name=name,
                    phone=phone,
                    email=email,
                    source=source,
                    segment=segment,
                    status=status,
                    assigned_to=users[owner] if owner else None,
                    is_opted_out=name == "Karan Mehta",
                )
                for name, phone, email, source, segment, status, owner in DEMO_LEADS
                if phone not in existing
            ]
        )
        self.stdout.write(
            f"Demo workspace: {account.name} (account id / webhook userId: {account.id})\n"
            f"  admin  {DEMO_USERS[0][0]} / {DEMO_PASSWORD}\n"
            f"  agent  {DEMO_USERS[1][0]} / {DEMO_PASSWORD}"
        )
