from __future__ import annotations

from django import template
from django.template.defaultfilters import filesizeformat

register = template.Library()


@register.filter
def size(value: int | None) -> str:
    return "—" if value is None else filesizeformat(value)
