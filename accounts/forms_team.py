"""Forms of the team pages (accounts/views_team.py)."""

from django import forms

from accounts.models import User


class UserCreateForm(forms.Form):
    name = forms.CharField(label="Name", max_length=150, widget=forms.TextInput(attrs={"autocomplete": "off"}))
    email = forms.EmailField(label="Email", max_length=254, widget=forms.EmailInput(attrs={"autocomplete": "off"}))
    role = forms.ChoiceField(
        label="Role",
        choices=User.Role.choices,
        initial=User.Role.AGENT,
        help_text="Agents see only the leads assigned to them and unassigned ones.",
    )
    password = forms.CharField(
        label="Initial password",
        max_length=128,
        strip=False,
        help_text="Give it to them in person; they can choose their own with “Forgot password”.",
        widget=forms.PasswordInput(attrs={"autocomplete": "new-password"}),
    )


class UserRoleForm(forms.Form):
    role = forms.ChoiceField(label="Role", choices=User.Role.choices)
