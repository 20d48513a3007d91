"""Factories for leads, tags, engagements and messages.

Rows are written straight to the database (no service call), with phones already in
E.164 and valid for the default region (IN): +9198xxxxxxxx."""

import factory
from django.utils import timezone

from accounts.tests.factories import AccountFactory
from leads.models import Engagement, Lead, Tag
from messaging.models import Message


class TagFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = Tag

    account = factory.SubFactory(AccountFactory)
    name = factory.Sequence(lambda n: f"Tag {n}")
    color = "#ff4444"


class LeadFactory(factory.django.DjangoModelFactory):
    """``LeadFactory(tags=[tag, …])`` attaches tags (of the lead's account)."""

    class Meta:
        model = Lead
        skip_postgeneration_save = True

    account = factory.SubFactory(AccountFactory)
    name = factory.Faker("name")
    phone = factory.Sequence(lambda n: f"+9198{n:08d}")
    email = factory.Sequence(lambda n: f"lead{n}@example.com")
    source = "Website Form"
    status = Lead.Status.PENDING

    @factory.post_generation
    def tags(obj, create, extracted, **kwargs):
        if create and extracted:
            obj.tags.set(extracted)


class EngagementFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = Engagement

    lead = factory.SubFactory(LeadFactory)
    type = Engagement.Type.NOTE
    notes = factory.Sequence(lambda n: f"Engagement note {n}")
    at = factory.LazyFunction(timezone.now)


class MessageFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = Message

    lead = factory.SubFactory(LeadFactory)
    account = factory.SelfAttribute("lead.account")
    direction = Message.Direction.INBOUND
    type = Message.Type.TEXT
    status = Message.Status.DELIVERED
    body = factory.Sequence(lambda n: f"Message {n}")
