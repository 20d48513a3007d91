"""Forms of the import and analytics pages. They check shapes only: the CSV itself is
read and judged by leads.imports (whose ValidationFailed errors land on the file
field), the numbers come from leads.selectors.lead_analytics."""

from datetime import date, timedelta

from django import forms
from django.conf import settings

# The same bounds as GET /api/leads/analytics (far-off dates overflow when turned
# into the account's day boundaries).
from leads.api.views import ANALYTICS_EARLIEST, ANALYTICS_LATEST

DEFAULT_RANGE_DAYS = 30
MAX_RANGE_DAYS = 366


def _mib(size: int) -> str:
    return f"{size / (1024 * 1024):g} MiB"


class LeadImportForm(forms.Form):
    file = forms.FileField(
        label="CSV file",
        widget=forms.ClearableFileInput(attrs={"accept": ".csv,.txt,text/csv"}),
    )

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.fields["file"].help_text = (
            f"Comma, semicolon or tab separated, UTF-8 or Excel's Windows-1252, at most "
            f"{_mib(settings.MAX_UPLOAD_SIZE)}. Columns name and phone are required; email, source, inquiry, "
            "segment, status, tags, assignedTo and notes are optional."
        )
        self.fields["file"].error_messages["required"] = "Choose a CSV file to import."
        self.fields["file"].error_messages["empty"] = "The file is empty."

    def clean_file(self):
        upload = self.cleaned_data["file"]
        # A chunked upload has no Content-Length for the request-size middleware to see.
        if upload.size is not None and upload.size > settings.MAX_UPLOAD_SIZE:
            raise forms.ValidationError(f"The file is too large (limit {_mib(settings.MAX_UPLOAD_SIZE)}).")
        return upload


class AnalyticsRangeForm(forms.Form):
    """The date range of the analytics page, as the API reads it: ``from`` and ``to``
    (days in the account's time zone), by default the last 30 days up to today."""

    def __init__(self, *args, today: date, **kwargs):
        super().__init__(*args, **kwargs)
        self.today = today
        date_input = {"type": "date", "min": ANALYTICS_EARLIEST.isoformat(), "max": ANALYTICS_LATEST.isoformat()}
        # `from` is a Python keyword, hence the fields dict.
        self.fields["from"] = forms.DateField(label="From", required=False, widget=forms.DateInput(date_input))
        self.fields["to"] = forms.DateField(label="To", required=False, widget=forms.DateInput(date_input))
        # An unbound form shows the default range it stands for.
        self.fields["from"].initial, self.fields["to"].initial = self.default_range()

    def default_range(self) -> tuple[date, date]:
        return self.today - timedelta(days=DEFAULT_RANGE_DAYS - 1), self.today

    def clean(self):
        cleaned = super().clean()
        for name in ("from", "to"):
            value = cleaned.get(name)
            if value and not ANALYTICS_EARLIEST <= value <= ANALYTICS_LATEST:
                self.add_error(name, f"Use a date between {ANALYTICS_EARLIEST} and {ANALYTICS_LATEST}.")
        if self.errors:
            return cleaned
        date_to = cleaned.get("to") or self.today
        date_from = cleaned.get("from") or date_to - timedelta(days=DEFAULT_RANGE_DAYS - 1)
        if date_from > date_to:
            self.add_error("from", "The start must not be after the end.")
        elif (date_to - date_from).days > MAX_RANGE_DAYS:
            self.add_error("from", f"The range is at most {MAX_RANGE_DAYS} days.")
        else:
            cleaned["range"] = (date_from, date_to)
        return cleaned

    def date_range(self) -> tuple[date, date]:
        """The valid range asked for, or the default one."""
        if self.is_bound and self.is_valid():
            return self.cleaned_data["range"]
        return self.default_range()
