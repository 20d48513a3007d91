"""Per-lead variables in campaign texts and template parameters: ``{{name}}``,
``{{first_name}}``, ``{{phone}}``, ``{{email}}``, ``{{source}}``, …

Written once for every campaign kind (broadcasts, drips, scheduled messages). A text is
checked when the campaign is created (``variables_check``: an unknown variable is a
VALIDATION_ERROR then, not a literal ``{{nmae}}`` in 10,000 messages later) and rendered
per lead in Python when the outbox rows are built (``render_variables``).

Names are matched without case and without underscores, so ``{{first_name}}``,
``{{firstName}}`` and ``{{ FirstName }}`` are the same variable. A variable whose lead
field is empty renders as the empty string; a template parameter that renders empty is
refused by Meta, so callers skip that lead (``render_param`` answers None).
"""

import re
from collections.abc import Callable, Iterable

from heroshhi.errors import ValidationFailed
from leads.models import Lead
from leads.phones import display_phone

VARIABLE = re.compile(r"\{\{\s*([^{}]*?)\s*\}\}")


def _first_name(lead: Lead) -> str:
    parts = (lead.name or "").split()
    return parts[0] if parts else ""


def _assignee(lead: Lead) -> str:
    user = lead.assigned_to
    return (user.name or user.email) if user else ""


# Canonical name → the lead's value. Keep README's list of variables in step.
VARIABLES: dict[str, Callable[[Lead], str]] = {
    "name": lambda lead: lead.name or "",
    "first_name": _first_name,
    "phone": lambda lead: display_phone(lead.phone or ""),
    "email": lambda lead: lead.email or "",
    "source": lambda lead: lead.source or "",
    "status": lambda lead: lead.status or "",
    "segment": lambda lead: lead.segment or "",
    "inquiry": lambda lead: lead.inquiry or "",
    "assigned_to": _assignee,
}
# Variables that read a related row: the caller loads it with the leads (select_related).
RELATED = {"assigned_to": "assigned_to"}

_BY_KEY = {name.replace("_", ""): name for name in VARIABLES}


def _canonical(raw: str) -> str | None:
    return _BY_KEY.get(raw.strip().lower().replace("_", ""))


def variables_used(texts: Iterable[str]) -> set[str]:
    """Canonical names of the known variables in ``texts``."""
    found = set()
    for text in texts:
        for match in VARIABLE.finditer(text or ""):
            name = _canonical(match.group(1))
            if name:
                found.add(name)
    return found


def unknown_variables(texts: Iterable[str]) -> list[str]:
    """The ``{{…}}`` names in ``texts`` that are not variables, in order of appearance."""
    unknown: list[str] = []
    for text in texts:
        for match in VARIABLE.finditer(text or ""):
            if _canonical(match.group(1)) is None and match.group(0) not in unknown:
                unknown.append(match.group(0))
    return unknown


def variables_check(*, field: str, texts: Iterable[str]) -> None:
    """VALIDATION_ERROR on ``field`` when ``texts`` use a variable that doesn't exist."""
    unknown = unknown_variables(texts)
    if unknown:
        known = ", ".join("{{" + name + "}}" for name in VARIABLES)
        message = f"Unknown variable {', '.join(unknown)}. Known variables: {known}."
        raise ValidationFailed(f"{field}: {message}", errors={field: [message]})


def select_related_for(texts: Iterable[str]) -> list[str]:
    """The relations to load with the leads so rendering ``texts`` costs no query per lead."""
    return sorted({RELATED[name] for name in variables_used(texts) if name in RELATED})


def render_variables(text: str, *, lead: Lead) -> str:
    """``text`` with each variable replaced by the lead's value (empty when the lead has
    none). Unknown ``{{…}}`` are left as they are (``variables_check`` refuses them when
    the campaign is created)."""
    if not text or "{{" not in text:
        return text

    def value(match: re.Match) -> str:
        name = _canonical(match.group(1))
        return VARIABLES[name](lead) if name else match.group(0)

    return VARIABLE.sub(value, text)


def render_param(param: str, *, lead: Lead, max_length: int = 1024) -> str | None:
    """A template parameter for this lead, or None when Meta would refuse it: empty, or
    longer than ``max_length``. Meta also refuses new lines, tabs and runs of spaces in
    parameters, so whitespace is collapsed to single spaces."""
    rendered = " ".join(render_variables(str(param), lead=lead).split())
    if not rendered or len(rendered) > max_length:
        return None
    return rendered
