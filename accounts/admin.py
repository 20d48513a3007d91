"""Django admin of accounts and users. Secrets are never shown: an account's webhook
secret (only whether one is set), a user's TOTP secret, and the refresh tokens that
simplejwt's blacklist app keeps (its admin is replaced by one without the token)."""

from django.contrib import admin
from django.contrib.auth.admin import UserAdmin as DjangoUserAdmin
from django.contrib.auth.forms import UserChangeForm, UserCreationForm
from rest_framework_simplejwt.token_blacklist.admin import OutstandingTokenAdmin
from rest_framework_simplejwt.token_blacklist.models import OutstandingToken

from accounts.models import Account, User
from messaging.admin import without_history_permission


@admin.register(Account)
class AccountAdmin(admin.ModelAdmin):
    list_display = ["name", "id", "time_zone", "default_country", "has_webhook_secret", "created_at"]
    list_filter = ["default_country", "time_zone", "created_at"]
    search_fields = ["name", "id"]
    # The lead-ingestion webhook's secret is set from the dashboard/API, never shown here.
    fields = ["id", "name", "time_zone", "default_country", "has_webhook_secret", "created_at"]
    readonly_fields = ["id", "has_webhook_secret", "created_at"]

    @admin.display(description="webhook secret set", boolean=True)
    def has_webhook_secret(self, account: Account) -> bool:
        return bool(account.webhook_secret)

    def get_deleted_objects(self, objs, request):
        return without_history_permission(super().get_deleted_objects(objs, request))


class SafeOutstandingTokenAdmin(OutstandingTokenAdmin):
    """simplejwt's read-only list of issued refresh tokens, without the token itself
    (a live credential until it expires)."""

    list_select_related = ["user"]
    search_fields = ["user__email", "jti"]
    ordering = ["-created_at"]

    def get_readonly_fields(self, *args, **kwargs) -> list[str]:
        return [field.name for field in self.model._meta.fields if field.name != "token"]

    def get_fields(self, request, obj=None) -> list[str]:
        return self.get_readonly_fields(request, obj)


if admin.site.is_registered(OutstandingToken):
    admin.site.unregister(OutstandingToken)
admin.site.register(OutstandingToken, SafeOutstandingTokenAdmin)


class UserCreateForm(UserCreationForm):
    class Meta:
        model = User
        fields = ["email", "name", "account", "role"]


class UserEditForm(UserChangeForm):
    class Meta:
        model = User
        fields = "__all__"


@admin.register(User)
class UserAdmin(DjangoUserAdmin):
    form = UserEditForm
    add_form = UserCreateForm
    list_display = ["email", "name", "account", "role", "two_factor_enabled", "is_active", "last_login"]
    list_filter = ["role", "is_active", "two_factor_enabled", "is_staff"]
    list_select_related = ["account"]
    search_fields = ["email", "name", "account__name"]
    ordering = ["email"]
    autocomplete_fields = ["account"]
    readonly_fields = ["id", "last_login", "date_joined", "two_factor_enabled"]
    fieldsets = [
        (None, {"fields": ["id", "email", "password"]}),
        ("Profile", {"fields": ["name", "account", "role"]}),
        ("Security", {"fields": ["two_factor_enabled", "is_active", "is_staff", "is_superuser"]}),
        ("Django admin permissions", {"classes": ["collapse"], "fields": ["groups", "user_permissions"]}),
        ("Dates", {"fields": ["last_login", "date_joined"]}),
    ]
    add_fieldsets = [
        (None, {"classes": ["wide"], "fields": ["email", "name", "account", "role", "password1", "password2"]}),
    ]

    @admin.action(description="Turn two-factor authentication off (lost phone)")
    def reset_two_factor(self, request, queryset):
        changed = queryset.update(two_factor_enabled=False, totp_secret="", totp_last_counter=None)
        self.message_user(request, f"Two-factor authentication turned off for {changed} user(s).")

    actions = ["reset_two_factor"]
