"""The Django admin of leads and import jobs, as the platform's staff use it: filters,
the opt-out / opt-in / "Assign to..." actions (through leads.services, acting as an
admin of the leads' account), a constant number of queries for the list, and import
jobs read-only without their uploaded file."""

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from accounts.tests.factories import UserFactory
from leads.admin import STAFF_OPT_OUT_REASON
from leads.models import Lead, LeadImportJob
from leads.tests.factories import LeadFactory, MessageFactory, TagFactory
from messaging.models import Message

pytestmark = pytest.mark.django_db

CHANGELIST = "/admin/leads/lead/"


def action(admin_client, name: str, leads, **extra):
    data = {"action": name, "_selected_action": [str(lead.pk) for lead in leads], **extra}
    return admin_client.post(CHANGELIST, data, follow=True)


def shown_messages(response) -> list[str]:
    return [str(message) for message in response.context["messages"]]


@pytest.fixture
def leads(account):
    return LeadFactory.create_batch(3, account=account)


@pytest.fixture
def globex_lead(other_account):
    return LeadFactory(account=other_account, name="Gustav Globex")


# --- List -------------------------------------------------------------------------------------


def test_the_list_filters_by_account(admin_client, leads, globex_lead, account):
    page = admin_client.get(CHANGELIST, {"account__id__exact": str(account.pk)}).content.decode()

    assert all(lead.name in page for lead in leads)
    assert globex_lead.name not in page


@pytest.mark.parametrize(
    "query",
    [
        {"status__exact": "pending"},
        {"segment__exact": "hot"},
        {"is_opted_out__exact": "1"},
        {"q": "+9198"},
    ],
)
def test_the_list_filters_and_search_open(admin_client, leads, query):
    assert admin_client.get(CHANGELIST, query).status_code == 200


def test_the_list_runs_a_constant_number_of_queries(admin_client, account, other_account, owner, agent):
    tags = TagFactory.create_batch(2, account=account)

    def count() -> int:
        with CaptureQueriesContext(connection) as queries:
            assert admin_client.get(CHANGELIST).status_code == 200
        return len(queries)

    LeadFactory.create_batch(2, account=account, assigned_to=agent, tags=tags)
    count()  # the session's first request
    few = count()
    LeadFactory.create_batch(10, account=account, assigned_to=owner, tags=tags)
    LeadFactory.create_batch(8, account=other_account)
    assert count() == few


def test_opting_out_in_the_change_form_is_not_possible(admin_client, leads):
    form = admin_client.get(f"/admin/leads/lead/{leads[0].pk}/change/").context["adminform"].form

    assert "is_opted_out" not in form.fields
    assert "opt_out_reason" not in form.fields


def test_the_change_form_refuses_another_accounts_assignee(admin_client, leads, outsider):
    lead = leads[0]
    data = {
        "account": str(lead.account_id),
        "name": lead.name,
        "phone": lead.phone,
        "status": lead.status,
        "assigned_to": str(outsider.pk),
        "engagements-TOTAL_FORMS": "0",
        "engagements-INITIAL_FORMS": "0",
    }

    r = admin_client.post(f"/admin/leads/lead/{lead.pk}/change/", data)

    assert r.status_code == 200
    assert "Choose a user of the lead&#x27;s account." in r.content.decode()
    lead.refresh_from_db()
    assert lead.assigned_to_id is None


def test_a_lead_with_messages_can_be_deleted(admin_client, leads):
    lead = leads[0]
    MessageFactory.create_batch(2, lead=lead)

    confirm = admin_client.get(f"/admin/leads/lead/{lead.pk}/delete/")
    assert not confirm.context["perms_lacking"]
    r = admin_client.post(f"/admin/leads/lead/{lead.pk}/delete/", {"post": "yes"})

    assert r.status_code == 302
    assert not Lead.objects.filter(pk=lead.pk).exists()
    assert not Message.objects.filter(lead_id=lead.pk).exists()


# --- Opt out / opt in ----------------------------------------------------------------------------


def test_the_opt_out_action_opts_the_selected_leads_out(admin_client, leads):
    already = LeadFactory(account=leads[0].account, is_opted_out=True, opt_out_reason="STOP")

    r = action(admin_client, "opt_out", [leads[0], leads[1], already])

    assert r.status_code == 200
    assert "2 lead(s) opted out." in shown_messages(r)
    assert "1 lead(s) were already opted out." in shown_messages(r)
    for lead in leads[:2]:
        lead.refresh_from_db()
        assert lead.is_opted_out
        assert lead.opt_out_reason == STAFF_OPT_OUT_REASON == "Opted out by staff in the admin"
        assert lead.opted_out_at is not None
    leads[2].refresh_from_db()
    already.refresh_from_db()
    assert not leads[2].is_opted_out  # not selected
    assert already.opt_out_reason == "STOP"  # unchanged


def test_the_opt_in_action_opts_the_selected_leads_back_in(admin_client, account):
    out = LeadFactory(account=account, is_opted_out=True, opted_out_at=timezone.now(), opt_out_reason="STOP")
    still_in = LeadFactory(account=account)

    r = action(admin_client, "opt_in", [out, still_in])

    assert "1 lead(s) opted back in." in shown_messages(r)
    assert "1 lead(s) were not opted out." in shown_messages(r)
    out.refresh_from_db()
    assert not out.is_opted_out
    assert out.opted_out_at is None
    assert out.opt_out_reason == ""


# --- Assign to... ----------------------------------------------------------------------------------


def test_assign_asks_for_a_user_of_the_leads_account(admin_client, leads, owner, agent, outsider):
    inactive = UserFactory(account=owner.account, email="gone@acme.test", is_active=False)

    r = admin_client.post(CHANGELIST, {"action": "assign_to", "_selected_action": [str(lead.pk) for lead in leads]})

    assert r.status_code == 200
    page = r.content.decode()
    assert "Assign 3 leads of <strong>Acme</strong>" in page
    choices = r.context["form"].fields["assignee"].queryset
    assert set(choices) == {owner, agent}
    assert outsider.email not in page
    assert inactive.email not in page
    assert '<label for="id_assignee">Assign to:</label>' in page
    assert all(lead.name in page for lead in leads)
    assert Lead.objects.filter(assigned_to__isnull=False).count() == 0  # nothing yet


def test_assign_assigns_the_selected_leads_through_the_service(admin_client, leads, agent):
    r = action(admin_client, "assign_to", leads[:2], apply="yes", assignee=str(agent.pk))

    assert r.status_code == 200
    assert r.redirect_chain[-1][0].startswith(CHANGELIST)
    assert f"2 lead(s) assigned to {agent.email}." in shown_messages(r)
    assert {lead.pk for lead in Lead.objects.filter(assigned_to=agent)} == {leads[0].pk, leads[1].pk}
    leads[2].refresh_from_db()
    assert leads[2].assigned_to is None


def test_assign_to_nobody_unassigns(admin_client, account, agent):
    lead = LeadFactory(account=account, assigned_to=agent)

    r = action(admin_client, "assign_to", [lead], apply="yes", assignee="")

    assert "1 lead(s) assigned to nobody." in shown_messages(r)
    lead.refresh_from_db()
    assert lead.assigned_to is None


def test_assign_refuses_a_selection_of_several_accounts(admin_client, leads, globex_lead, agent):
    r = action(admin_client, "assign_to", [leads[0], globex_lead], apply="yes", assignee=str(agent.pk))

    assert r.status_code == 200
    assert any("Assign leads of one account at a time" in message for message in shown_messages(r))
    assert not Lead.objects.filter(assigned_to__isnull=False).exists()


def test_assign_refuses_a_user_of_another_account(admin_client, leads, outsider):
    r = action(admin_client, "assign_to", leads, apply="yes", assignee=str(outsider.pk))

    assert r.status_code == 200  # the choice again, with the error
    assert "Select a valid choice" in r.content.decode()
    assert not Lead.objects.filter(assigned_to__isnull=False).exists()


def test_the_staff_act_as_an_admin_of_the_leads_account(admin_client, admin_user, leads, agent):
    """The superuser belongs to the staff workspace, not the leads' account: the
    service still sees an admin of the leads' account (agents could assign only
    themselves)."""
    assert admin_user.account_id != agent.account_id

    r = action(admin_client, "assign_to", leads, apply="yes", assignee=str(agent.pk))

    assert "3 lead(s) assigned to agent@acme.test." in shown_messages(r)
    assert Lead.objects.filter(assigned_to=agent).count() == 3


# --- Import jobs -----------------------------------------------------------------------------------


@pytest.fixture
def import_job(account, owner):
    return LeadImportJob.objects.create(
        account=account,
        user=owner,
        status=LeadImportJob.Status.COMPLETED,
        file_name="expo-leads.csv",
        data=b"name,phone\nSecret Person,+919812345678\n",
        total_rows=3,
        processed_rows=3,
        created_count=1,
        updated_count=1,
        skipped_count=1,
        error_count=1,
        errors=[{"row": 3, "field": "phone", "message": "Not a valid phone number."}],
    )


def test_import_jobs_are_listed_with_their_counts(admin_client, import_job):
    r = admin_client.get("/admin/leads/leadimportjob/", {"status__exact": "completed"})

    assert r.status_code == 200
    page = r.content.decode()
    assert "expo-leads.csv" in page
    assert "Secret Person" not in page
    assert admin_client.get("/admin/leads/leadimportjob/", {"status__exact": "failed"}).context["cl"].result_count == 0


def test_an_import_job_shows_its_report_but_never_the_file(admin_client, import_job):
    r = admin_client.get(f"/admin/leads/leadimportjob/{import_job.pk}/change/")

    assert r.status_code == 200
    page = r.content.decode()
    assert "Not a valid phone number." in page
    assert "Secret Person" not in page
    assert "+919812345678" not in page
    assert "data" not in r.context["adminform"].form.fields
    assert admin_client.get("/admin/leads/leadimportjob/add/").status_code == 403


def test_an_import_job_cannot_be_changed(admin_client, import_job):
    r = admin_client.post(f"/admin/leads/leadimportjob/{import_job.pk}/change/", {"status": "failed"})

    assert r.status_code == 403
    import_job.refresh_from_db()
    assert import_job.status == LeadImportJob.Status.COMPLETED


def test_the_add_form_stores_the_phone_in_e164_and_refuses_a_duplicate(admin_client, account):
    def add(phone: str):
        return admin_client.post(
            "/admin/leads/lead/add/",
            {
                "account": str(account.pk),
                "name": "Rahul Verma",
                "phone": phone,
                "status": "pending",
                "engagements-TOTAL_FORMS": "0",
                "engagements-INITIAL_FORMS": "0",
            },
        )

    assert add("098765 43211").status_code == 302
    assert Lead.objects.get(account=account).phone == "+919876543211"
    again = add("+91 98765-43211")
    assert again.status_code == 200
    assert again.context["adminform"].form.errors
    assert add("12").status_code == 200
    assert Lead.objects.filter(account=account).count() == 1
