"""heroshhi.api.PageLimitPagination, seen through GET /api/users: `page` and `limit`,
the account's total, page counts, bad parameters, the cap, a constant number of
queries, and never a user of another account."""

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext

from accounts.models import User
from accounts.tests.factories import UserFactory
from conftest import bearer_client

TEAM_SIZE = 45


@pytest.fixture(autouse=True)
def _fast_setup(settings):
    # 50 users hashed with PBKDF2 take ~20 s; the hasher is not what is tested here.
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]
    settings.RATE_LIMITS = {**settings.RATE_LIMITS, "auth": "1000/15m", "standard": "1000/15m"}


@pytest.fixture
def team(owner, agent) -> set[str]:
    """45 users in the owner's account, owner and agent included."""
    UserFactory.create_batch(TEAM_SIZE - 2, account=owner.account)
    return {str(pk) for pk in User.objects.filter(account=owner.account).values_list("pk", flat=True)}


@pytest.fixture
def strangers(outsider) -> set[str]:
    """Users of another account: 8 including its admin."""
    UserFactory.create_batch(7, account=outsider.account)
    return {str(pk) for pk in User.objects.filter(account=outsider.account).values_list("pk", flat=True)}


def get_page(client, **params):
    response = client.get("/api/users", params)
    assert response.status_code == 200, response.content
    body = response.json()
    assert body["success"] is True
    return body


@pytest.mark.django_db
def test_default_page(owner_client, team, strangers):
    body = get_page(owner_client)
    assert body["pagination"] == {"page": 1, "limit": 20, "total": TEAM_SIZE, "pages": 3}
    assert len(body["data"]) == 20


@pytest.mark.django_db
def test_walking_every_page_returns_each_user_of_the_account_once(owner_client, team, strangers):
    seen = []
    for page in (1, 2, 3):
        body = get_page(owner_client, page=page, limit=20)
        assert body["pagination"] == {"page": page, "limit": 20, "total": TEAM_SIZE, "pages": 3}
        seen += [user["id"] for user in body["data"]]
    assert len(seen) == TEAM_SIZE
    assert set(seen) == team
    assert not set(seen) & strangers


@pytest.mark.django_db
def test_last_page_holds_the_remainder(owner_client, team):
    body = get_page(owner_client, page=3, limit=20)
    assert len(body["data"]) == TEAM_SIZE - 40


@pytest.mark.django_db
@pytest.mark.parametrize(("limit", "pages"), [(1, 45), (7, 7), (44, 2), (45, 1), (46, 1), (200, 1)])
def test_pages_are_computed_from_total_and_limit(owner_client, team, limit, pages):
    body = get_page(owner_client, limit=limit)
    assert body["pagination"]["pages"] == pages
    assert body["pagination"]["limit"] == limit
    assert len(body["data"]) == min(limit, TEAM_SIZE)


@pytest.mark.django_db
@pytest.mark.parametrize(("page", "limit"), [(4, 20), (100, 20), (2, 45), (46, 1), (10**30, 20)])
def test_page_past_the_end_is_empty_with_the_total(owner_client, team, page, limit):
    body = get_page(owner_client, page=page, limit=limit)
    assert body["data"] == []
    assert body["pagination"]["total"] == TEAM_SIZE
    assert body["pagination"]["page"] == page


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("param", "value"),
    [
        ("page", "0"),
        ("page", "-3"),
        ("page", "abc"),
        ("page", "1.5"),
        ("page", "1e3"),
        ("page", "\x00"),
        ("limit", "-1"),
        ("limit", "0"),
        ("limit", "ten"),
    ],
)
def test_bad_page_or_limit_is_validation_error(owner_client, team, param, value):
    response = owner_client.get("/api/users", {param: value})
    assert response.status_code == 400, response.content
    body = response.json()
    assert body["success"] is False
    assert body["error"] == "VALIDATION_ERROR"
    assert param in body["errors"]


@pytest.mark.django_db
@pytest.mark.parametrize("limit", [201, 1000, 10**12])
def test_limit_above_200_is_capped(owner, team, limit):
    UserFactory.create_batch(210 - TEAM_SIZE, account=owner.account)
    body = get_page(bearer_client(owner), limit=limit)
    assert body["pagination"]["limit"] == 200
    assert body["pagination"]["total"] == 210
    assert body["pagination"]["pages"] == 2
    assert len(body["data"]) == 200


@pytest.mark.django_db
def test_query_count_does_not_grow_with_the_limit(owner, team, django_assert_max_num_queries):
    client = bearer_client(owner)
    get_page(client)  # the first request creates the rate-limit counter; later ones increment it
    counts = {}
    for limit in (1, 10, 45):
        with CaptureQueriesContext(connection) as queries:
            body = get_page(client, limit=limit)
        assert len(body["data"]) == limit
        counts[limit] = len(queries)
    assert len(set(counts.values())) == 1, counts

    with django_assert_max_num_queries(counts[1]):
        get_page(client, limit=200)
    # and the constant is small: the user, the rate-limit counter (a few statements
    # with the database cache), the count and the page
    with django_assert_max_num_queries(15):
        get_page(client, limit=45)


@pytest.mark.django_db
def test_agents_see_the_team_too(agent_client, team, strangers):
    body = get_page(agent_client, limit=200)
    assert body["pagination"]["total"] == TEAM_SIZE
    assert {user["id"] for user in body["data"]} == team


@pytest.mark.django_db
def test_the_other_account_sees_only_its_own_users(outsider_client, team, strangers):
    body = get_page(outsider_client, limit=200)
    assert body["pagination"]["total"] == len(strangers) == 8
    assert {user["id"] for user in body["data"]} == strangers


@pytest.mark.django_db
def test_other_account_users_never_appear_on_any_page(owner_client, team, strangers):
    for limit in (1, 7, 20, 200):
        page = 1
        while True:
            body = get_page(owner_client, page=page, limit=limit)
            assert body["pagination"]["total"] == TEAM_SIZE
            ids = {user["id"] for user in body["data"]}
            assert not ids & strangers
            if not body["data"]:
                break
            page += 1
        assert page == body["pagination"]["pages"] + 1


@pytest.mark.django_db
def test_users_list_requires_authentication(api_client, team):
    response = api_client.get("/api/users")
    assert response.status_code == 401
    assert response.json()["error"] == "NOT_AUTHENTICATED"


@pytest.mark.django_db
def test_pagination_fields_are_what_the_schema_says(owner_client, team):
    body = get_page(owner_client, limit=2)
    assert set(body) == {"success", "data", "pagination"}
    assert set(body["data"][0]) == {"id", "email", "name", "role", "isActive"}
