from rest_framework.permissions import BasePermission


class IsAccountAdmin(BasePermission):
    """Admins manage their account's users and connections; agents can't."""

    message = "Only account admins can do this."

    def has_permission(self, request, view) -> bool:
        user = request.user
        return bool(user and user.is_authenticated and user.is_account_admin)
