"""Bad input to any admin page (the apps' and Django's own: users, groups, the task queue) is refused, not a
server error. At start, `guard()` gives every registered admin:

- forms with `portal.forms.BoundedInput` under them (the change and add forms, the password form, the inlines'),
  so a form added later is covered without anyone remembering to;
- a check of the selected ids before an action reads them: Django's admin filters `pk__in` with what the page
  sent, and a value that is not a primary key ("abc", a NUL) raises there, a server error.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from django.contrib import messages
from django.contrib.admin import AdminSite, ModelAdmin, helpers
from django.core.exceptions import ValidationError
from django.db.models import QuerySet
from django.http import HttpRequest, HttpResponseBase

from portal.forms import VALUE_LIMIT, bounded

NOT_A_SELECTION = "The selection holds something that is not an item of this list: nothing was changed."


def guard(site: AdminSite) -> None:
    for model_admin in site._registry.values():
        for attribute in ("form", "add_form", "change_password_form"):
            if (form := getattr(model_admin, attribute, None)) is not None:
                setattr(model_admin, attribute, bounded(form))
        for inline in model_admin.inlines:
            inline.form = bounded(inline.form)
        model_admin.response_action = checked_selection(model_admin, model_admin.response_action)


def selection_is_valid(model_admin: ModelAdmin, request: HttpRequest) -> bool:
    pk = model_admin.model._meta.pk
    try:
        for value in request.POST.getlist(helpers.ACTION_CHECKBOX_NAME):
            if len(value) > VALUE_LIMIT or "\x00" in value:
                return False
            pk.get_prep_value(pk.to_python(value))
    except (ValidationError, ValueError, TypeError):
        return False
    return True


def checked_selection(model_admin: ModelAdmin, response_action: Callable[..., Any]) -> Callable[..., Any]:
    def response_action_checked(request: HttpRequest, queryset: QuerySet) -> HttpResponseBase | None:
        if not selection_is_valid(model_admin, request):
            model_admin.message_user(request, NOT_A_SELECTION, messages.ERROR)
            return None
        return response_action(request, queryset)

    return response_action_checked
