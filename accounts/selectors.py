from django.db.models import QuerySet

from accounts.models import User


def user_list_for_account(*, user: User) -> QuerySet[User]:
    """The team of the user's account, admins first."""
    return User.objects.filter(account_id=user.account_id).order_by("role", "name", "email")
