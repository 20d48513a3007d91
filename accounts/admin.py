from django.contrib import admin
from django.contrib.auth.admin import UserAdmin as DjangoUserAdmin
from django.contrib.auth.forms import UserChangeForm, UserCreationForm

from accounts.models import Account, User


@admin.register(Account)
class AccountAdmin(admin.ModelAdmin):
    list_display = ["name", "id", "time_zone", "created_at"]
    search_fields = ["name", "id"]
    readonly_fields = ["id", "created_at"]


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
