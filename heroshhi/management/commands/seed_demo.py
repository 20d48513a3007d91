"""Demo data for the embedded shape (make run): an account, an admin, an agent, some
leads created over the last weeks with tags and conversations, a drip and a scheduled
message. Idempotent: running it again changes nothing and duplicates nothing. The drip
and the scheduled message are made through their services, as a user would."""

from datetime import timedelta

from django.core.management.base import BaseCommand
from django.db import transaction
from django.utils import timezone

from accounts.models import Account, User
from leads.models import Lead, Tag
from messaging.models import Message

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


DEMO_TAGS = [("VIP", "#d97706"), ("Follow-up", "#2563eb")]
DEMO_LEAD_TAGS = {"+919876543210": ["VIP"], "+919876543212": ["VIP", "Follow-up"], "+919876543211": ["Follow-up"]}
# (phone, [(direction, body, minutes ago, read by the team)])
DEMO_CONVERSATIONS = [
    (
        "+919876543210",
        [
            ("inbound", "Hi, is the 2BHK in Whitefield still available?", 95, True),
            ("outbound", "Hello Priya! Yes, it is. Would you like to visit this weekend?", 90, True),
            ("inbound", "Saturday 11am works for me.", 12, False),
        ],
    ),
    ("+919876543211", [("inbound", "Please send the price list.", 240, False)]),
    ("+919876543212", [("outbound", "Thanks for your interest, Meera. Our brochure is attached.", 1440, True)]),
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
                    # Spread over the last weeks, so the analytics have days to show.
                    created_at=timezone.now() - timedelta(days=3 * index + 1, hours=index),
                )
                for index, (name, phone, email, source, segment, status, owner) in enumerate(DEMO_LEADS)
                if phone not in existing
            ]
        )
        self._tags_and_conversations(account)
        self._campaigns(account, admin=users[User.Role.ADMIN])
        self.stdout.write(
            f"Demo workspace: {account.name} (account id / webhook userId: {account.id})\n"
            f"  admin  {DEMO_USERS[0][0]} / {DEMO_PASSWORD}\n"
            f"  agent  {DEMO_USERS[1][0]} / {DEMO_PASSWORD}"
        )

    def _campaigns(self, account: Account, *, admin: User) -> None:
        from campaigns.models import Drip, ScheduledMessage
        from campaigns.services.drips import drip_create
        from campaigns.services.scheduled import scheduled_message_create

        if not Drip.objects.filter(account=account).exists():
            drip_create(
                account=account,
                user=admin,
                data={
                    "name": "New enquiry follow-up",
                    "description": "Two nudges for new website leads.",
                    "send_window_start": "09:00",
                    "send_window_end": "20:00",
                    "steps": [
                        {"delay_amount": 10, "delay_unit": "minutes", "text": "Hi {{first_name}}, thanks for asking!"},
                        {"delay_amount": 1, "delay_unit": "days", "text": "Any questions, {{first_name}}? Just reply."},
                    ],
                },
            )
        if not ScheduledMessage.objects.filter(account=account).exists():
            scheduled_message_create(
                user=admin,
                recipients=["+919876543210", "+919876543212"],
                scheduled_time=timezone.now() + timedelta(days=1),
                message="Reminder: site visits this Saturday from 11am.",
                recurrence=ScheduledMessage.Recurrence.WEEKLY,
            )

    def _tags_and_conversations(self, account: Account) -> None:
        tags = {}
        for name, color in DEMO_TAGS:
            tags[name], _ = Tag.objects.get_or_create(account=account, name=name, defaults={"color": color})
        leads = {lead.phone: lead for lead in Lead.objects.filter(account=account, phone__in=DEMO_LEAD_TAGS)}
        for phone, names in DEMO_LEAD_TAGS.items():
            if phone in leads:
                leads[phone].tags.add(*(tags[name] for name in names))
        talked = set(Message.objects.filter(account=account).values_list("lead__phone", flat=True))
        now = timezone.now()
        for phone, conversation in DEMO_CONVERSATIONS:
            lead = Lead.objects.filter(account=account, phone=phone).first()
            if lead is None or phone in talked:
                continue
            for direction, body, minutes_ago, seen in conversation:
                at = now - timedelta(minutes=minutes_ago)
                outbound = direction == Message.Direction.OUTBOUND
                Message.objects.create(
                    account=account,
                    lead=lead,
                    direction=direction,
                    body=body,
                    status=Message.Status.READ if outbound else Message.Status.DELIVERED,
                    is_read=seen,
                    created_at=at,
                    sent_at=at if outbound else None,
                )
                lead.last_message_at = at
                if outbound:
                    lead.last_outbound_at = at
                else:
                    lead.last_inbound_at = at
            lead.save(update_fields=["last_message_at", "last_inbound_at", "last_outbound_at"])
