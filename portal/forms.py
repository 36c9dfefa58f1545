"""Every form's first check: a value longer than its field allows is a form error, before the field reads it, and
the error says how long it was, never what it was (a 10,000-character name is not sent back in a message).

`BoundedInput` is a mixin for any form; `portal.adminguard` puts it under every admin's forms.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from django import forms
from django.core.exceptions import ValidationError
from django.http import HttpRequest

TEXT_LIMIT = 4000  # a text area without a max_length of its own (a reason, a comment)
VALUE_LIMIT = 255  # any other field without one (a choice, a number, a date and time)
MAX_ITEMS = 1000  # values of one multiple choice


def limit(field: forms.Field) -> int:
    """The longest raw value `field` takes: its `input_limit` (a field whose value is not the text, such as a date
    parsed from it), its max_length, or the default for its widget."""
    max_length = getattr(field, "input_limit", None) or getattr(field, "max_length", None)
    if max_length:
        return max_length
    return TEXT_LIMIT if isinstance(field.widget, forms.Textarea) else VALUE_LIMIT


def too_long(value: Any, most: int) -> str:
    """Why `value` (as the widget read it from the request) is refused, or ""."""
    values = value if isinstance(value, list | tuple) else [value]
    if len(values) > MAX_ITEMS:
        return f"At most {MAX_ITEMS} values (this has {len(values):,})."
    longest = max((len(v) for v in values if isinstance(v, str)), default=0)
    return f"At most {most:,} characters (this has {longest:,})." if longest > most else ""


def _bounded(clean: Callable[..., Any], most: int) -> Callable[..., Any]:
    def bounded_clean(value: Any, *args: Any) -> Any:
        if reason := too_long(value, most):
            raise ValidationError(reason, code="max_length")
        return clean(value, *args)

    return bounded_clean


class BoundedInput:
    """Checks each field's raw value before the field does: choice fields, for one, repeat what they were sent."""

    fields: dict[str, forms.Field]

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        for field in self.fields.values():  # this form's own copies of the fields
            field.clean = _bounded(field.clean, limit(field))


def bounded(form: type[forms.BaseForm]) -> type[forms.BaseForm]:
    """`form` with `BoundedInput` under it (itself when it has it)."""
    if issubclass(form, BoundedInput):
        return form
    return type(form.__name__, (BoundedInput, form), {"__module__": form.__module__})


class FreeTextForm(BoundedInput, forms.Form):
    text = forms.CharField(required=False, widget=forms.Textarea)


def posted_text(request: HttpRequest, name: str) -> tuple[str, str]:
    """A free text a page posts outside a form (a comment, a reason): (the text, stripped; why it is refused, or
    "" when it is not). Bounded like a form's, and without NUL characters, which PostgreSQL refuses."""
    form = FreeTextForm({"text": request.POST.get(name, "")})
    if form.is_valid():
        return form.cleaned_data["text"], ""
    return "", " ".join(form.errors["text"])
