"""The team pages of the dashboard (admins only): the account's users with their role,
state and 2FA, adding a user, changing a role, deactivating and reactivating.

The rules (admins only, never yourself, never the last active admin) live in
accounts.services; these views show the services' errors."""

import uuid

from django.contrib import messages
from django.core.exceptions import PermissionDenied
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.views.decorators.http import require_http_methods, require_POST

from accounts import services
from accounts.forms_team import UserCreateForm, UserRoleForm
from accounts.models import User
from accounts.selectors import user_list_for_account
from accounts.views import staff_page
from heroshhi.errors import DomainError, ValidationFailed
from leads.forms import add_service_errors


def _admin(request: HttpRequest) -> User:
    if not request.user.is_account_admin:
        raise PermissionDenied("Only account admins can manage the team.")
    return request.user


def _teammate_or_404(actor: User, user_id) -> User:
    """A user of the actor's account; another account's user answers like a missing one."""
    try:
        pk = uuid.UUID(str(user_id))
    except ValueError:
        raise Http404("User not found.") from None
    user = User.objects.filter(account_id=actor.account_id, pk=pk).first()
    if user is None:
        raise Http404("User not found.")
    return user


def _who(user: User) -> str:
    return user.name or user.email


@staff_page
@require_http_methods(["GET"])
def team_list_view(request: HttpRequest) -> HttpResponse:
    actor = _admin(request)
    team = list(user_list_for_account(user=actor))
    context = {
        "team": team,
        "roles": User.Role.choices,
        "active_admins": sum(u.is_account_admin and u.is_active for u in team),
    }
    return render(request, "accounts/team.html", context)


@staff_page
@require_http_methods(["GET", "POST"])
def team_create_view(request: HttpRequest) -> HttpResponse:
    actor = _admin(request)
    form = UserCreateForm(request.POST or None)
    if request.method == "POST" and form.is_valid():
        data = form.cleaned_data
        try:
            user = services.user_create(
                actor=actor, email=data["email"], name=data["name"], role=data["role"], password=data["password"]
            )
        except ValidationFailed as exc:
            add_service_errors(form, exc)
        else:
            messages.success(request, f"{_who(user)} can now log in as {user.get_role_display().lower()}.")
            return redirect("team")
    status = 400 if form.is_bound and form.errors else 200
    return render(request, "accounts/team_form.html", {"form": form}, status=status)


@staff_page
@require_POST
def team_role_view(request: HttpRequest, user_id) -> HttpResponse:
    actor = _admin(request)
    user = _teammate_or_404(actor, user_id)
    form = UserRoleForm(request.POST)
    if not form.is_valid():
        messages.error(request, f"Nothing was changed: {form.errors['role'][0]}")
        return redirect("team")
    try:
        services.user_set_role(actor=actor, user=user, role=form.cleaned_data["role"])
    except DomainError as exc:
        messages.error(request, f"Nothing was changed: {exc.message}")
    else:
        messages.success(request, f"{_who(user)} is now {user.get_role_display().lower()}.")
    return redirect("team")


@staff_page
@require_http_methods(["GET", "POST"])
def team_deactivate_view(request: HttpRequest, user_id) -> HttpResponse:
    actor = _admin(request)
    user = _teammate_or_404(actor, user_id)
    if request.method == "GET":
        # A destructive action: ask first, on a page that works without JavaScript.
        return render(request, "accounts/team_deactivate_confirm.html", {"member": user})
    try:
        services.user_set_active(actor=actor, user=user, is_active=False)
    except DomainError as exc:
        messages.error(request, f"Nothing was changed: {exc.message}")
    else:
        messages.success(request, f"{_who(user)} is deactivated and can no longer log in.")
    return redirect("team")


@staff_page
@require_POST
def team_reactivate_view(request: HttpRequest, user_id) -> HttpResponse:
    actor = _admin(request)
    user = _teammate_or_404(actor, user_id)
    try:
        services.user_set_active(actor=actor, user=user, is_active=True)
    except DomainError as exc:
        messages.error(request, f"Nothing was changed: {exc.message}")
    else:
        messages.success(request, f"{_who(user)} is active again and can log in.")
    return redirect("team")
