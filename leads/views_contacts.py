"""The contacts pages of the dashboard: HeyDoc's view of the leads (phone, name, last
message, unread count, tags) and tag management (list with lead counts, create,
rename/recolour, delete with confirmation).

Views parse the form, call one selector or service (the same ones as the API), and
render or redirect; a service's ValidationFailed becomes form errors."""

from django import forms
from django.contrib import messages
from django.core.exceptions import PermissionDenied
from django.core.paginator import Paginator
from django.core.validators import RegexValidator
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.views.decorators.http import require_http_methods

from accounts.views import staff_page
from heroshhi.errors import DomainError, NotFound, ValidationFailed
from leads import selectors, services
from leads.forms import add_service_errors
from leads.models import Tag

PAGE_SIZE = 25
DEFAULT_COLOR = Tag._meta.get_field("color").default


class ContactSearchForm(forms.Form):
    q = forms.CharField(
        label="Search contacts",
        required=False,
        max_length=100,
        widget=forms.TextInput(attrs={"type": "search", "placeholder": "Name, email or phone"}),
    )


class TagForm(forms.Form):
    name = forms.CharField(label="Name", max_length=50)
    color = forms.CharField(
        label="Colour",
        max_length=7,
        initial=DEFAULT_COLOR,
        validators=[RegexValidator(r"^#[0-9a-fA-F]{6}\Z", "Enter a colour like #ff4444.")],
        widget=forms.TextInput(attrs={"type": "color"}),
    )


def _status(form: forms.Form) -> int:
    return 400 if form.is_bound and form.errors else 200


def _tag_or_404(request: HttpRequest, tag_id: int) -> Tag:
    try:
        return selectors.tag_get(account_id=request.user.account_id, tag_id=tag_id)
    except NotFound:
        raise Http404("Tag not found.") from None


# --- Contacts ---------------------------------------------------------------------------


@staff_page
@require_http_methods(["GET"])
def contact_list_view(request: HttpRequest) -> HttpResponse:
    user = request.user
    form = ContactSearchForm(request.GET or None)
    term = form.cleaned_data["q"].strip() if form.is_bound and form.is_valid() else ""
    contacts = selectors.contact_list(user=user)
    if term:
        # The leads list's search rules (name, email, phone digits), not a second copy.
        found = selectors.lead_list(user=user, filters=selectors.LeadFilters(search=term))
        contacts = contacts.filter(pk__in=found.order_by().values("pk"))
    page = Paginator(contacts, PAGE_SIZE).get_page(request.GET.get("page"))
    context = {"form": form, "page": page, "contacts": list(page.object_list), "term": term}
    return render(request, "leads/contacts.html", context, status=_status(form))


# --- Tags -------------------------------------------------------------------------------


@staff_page
@require_http_methods(["GET", "POST"])
def tag_list_view(request: HttpRequest) -> HttpResponse:
    user = request.user
    form = TagForm(request.POST or None, auto_id="new-tag-%s")
    if request.method == "POST" and form.is_valid():
        try:
            tag = services.tag_create(
                account_id=user.account_id, name=form.cleaned_data["name"], color=form.cleaned_data["color"]
            )
        except ValidationFailed as exc:
            add_service_errors(form, exc)
        else:
            messages.success(request, f"Tag “{tag.name}” created.")
            return redirect("contact-tags")
    context = {"form": form, "tags": list(selectors.tag_list(user=user))}
    return render(request, "leads/tags.html", context, status=_status(form))


@staff_page
@require_http_methods(["GET", "POST"])
def tag_edit_view(request: HttpRequest, tag_id: int) -> HttpResponse:
    tag = _tag_or_404(request, tag_id)
    initial = {"name": tag.name, "color": tag.color}
    form = TagForm(request.POST or None, initial=initial)
    if request.method == "POST" and form.is_valid():
        try:
            tag = services.tag_update(tag=tag, name=form.cleaned_data["name"], color=form.cleaned_data["color"])
        except ValidationFailed as exc:
            add_service_errors(form, exc)
        else:
            messages.success(request, f"Tag “{tag.name}” saved.")
            return redirect("contact-tags")
    return render(request, "leads/tags_edit.html", {"form": form, "tag": tag}, status=_status(form))


@staff_page
@require_http_methods(["GET", "POST"])
def tag_delete_view(request: HttpRequest, tag_id: int) -> HttpResponse:
    user = request.user
    tag = _tag_or_404(request, tag_id)
    if request.method == "GET":
        if not user.is_account_admin:
            raise PermissionDenied("Only account admins can delete tags.")
        # A destructive action: ask first, on a page that works without JavaScript.
        counted = selectors.tag_list(user=user).get(pk=tag.pk)
        return render(request, "leads/tags_delete_confirm.html", {"tag": counted})
    name = tag.name
    try:
        services.tag_delete(user=user, tag=tag)  # the service decides who may
    except DomainError as exc:
        messages.error(request, f"Nothing was changed: {exc.message}")
    else:
        messages.success(request, f"Tag “{name}” deleted.")
    return redirect("contact-tags")
