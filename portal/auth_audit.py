"""Who logged in, who failed to, who was locked out, and every change of users, groups and permissions: audit
events, with the person who made the change (the request's user) as their actor.

Failed logins are counted and locked out per username and address by django-axes (settings `AXES_*`); the login
page says so (`lockout_response`).
"""

from __future__ import annotations

from collections.abc import Callable
from contextvars import ContextVar
from typing import Any

from django.contrib import admin
from django.contrib.admin.forms import AdminAuthenticationForm
from django.contrib.auth import get_user_model
from django.contrib.auth.models import Group, Permission
from django.contrib.auth.signals import user_logged_in, user_logged_out, user_login_failed
from django.db.models.signals import m2m_changed, post_delete, post_save, pre_save
from django.http import HttpRequest, HttpResponse
from django.shortcuts import render

from portal import audit

_actor: ContextVar[audit.Actor] = ContextVar("audit_actor", default=None)
# Saved on every login; not a change anybody made.
_BOOKKEEPING = frozenset({"last_login"})


class ActorMiddleware:
    """While a request runs, changes to users and groups are recorded as made by its user."""

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        token = _actor.set(getattr(request, "user", None))
        try:
            return self.get_response(request)
        finally:
            _actor.reset(token)


def actor() -> audit.Actor:
    user = _actor.get()
    return user if user is not None and user.is_authenticated else "system"


def client_address(request: HttpRequest | None) -> str:
    return (request.META.get("REMOTE_ADDR", "") if request is not None else "")[:64]


def logged_in(sender: Any, request: HttpRequest, user: Any, **kwargs: Any) -> None:
    audit.record("auth.login", actor=user, obj=user, target=user.get_username(),
                 details={"address": client_address(request)})


def logged_out(sender: Any, request: HttpRequest, user: Any, **kwargs: Any) -> None:
    if user is not None:
        audit.record("auth.logout", actor=user, obj=user, target=user.get_username(),
                     details={"address": client_address(request)})


def login_failed(sender: Any, credentials: dict[str, Any], request: HttpRequest | None = None, **kwargs: Any) -> None:
    username = str(credentials.get("username", ""))[:150]
    audit.record("auth.login_failed", actor="anonymous", target=username, outcome=audit.Outcome.FAILURE,
                 details={"address": client_address(request)})


def locked_out(sender: Any, request: HttpRequest, username: str, ip_address: str, **kwargs: Any) -> None:
    audit.record("auth.lockout", actor="anonymous", target=str(username)[:150], outcome=audit.Outcome.DENIED,
                 details={"address": str(ip_address)[:64]})


def lockout_response(request: HttpRequest, original_response: HttpResponse | None,
                     credentials: dict[str, Any] | None) -> HttpResponse:
    """The login page again, saying that this user is locked out from this address and for how long."""
    from django.conf import settings

    minutes = int(settings.AXES_COOLOFF_TIME.total_seconds() // 60)
    context = {**admin.site.each_context(request), "title": "Log in", "app_path": request.get_full_path(),
               "form": AdminAuthenticationForm(request), "username": "",
               "lockout": f"Too many failed logins for this user from this address: locked out for {minutes} "
                          "minutes. Ask a DBA if you need in sooner."}
    return render(request, "admin/login.html", context, status=429)


def _changed_fields(instance: Any) -> list[str]:
    if not instance.pk:
        return []
    before = type(instance).objects.filter(pk=instance.pk).values().first()
    if before is None:
        return []
    return sorted(name for name, value in before.items() if getattr(instance, name, value) != value)


def before_save(sender: Any, instance: Any, update_fields: Any = None, **kwargs: Any) -> None:
    instance._audit_changed = _changed_fields(instance)


def saved(sender: Any, instance: Any, created: bool, update_fields: Any = None, **kwargs: Any) -> None:
    changed = getattr(instance, "_audit_changed", [])
    if not created and not set(changed) - _BOOKKEEPING:
        return
    kind = sender._meta.model_name
    # A password's new hash is never recorded, only that it changed.
    audit.record(f"{kind}.{'create' if created else 'change'}", actor=actor(), obj=instance, target=str(instance),
                 details={} if created else {"changed": changed})


def deleted(sender: Any, instance: Any, **kwargs: Any) -> None:
    audit.record(f"{sender._meta.model_name}.delete", actor=actor(), obj=instance, target=str(instance))


def _names(model: type, pks: set[int] | None) -> list[str]:
    if not pks:
        return []
    if model is Permission:
        rows = Permission.objects.filter(pk__in=pks).values_list("content_type__app_label", "codename")
        return sorted(f"{app}.{codename}" for app, codename in rows)
    return sorted(str(obj) for obj in model.objects.filter(pk__in=pks))


_RELATIONS: dict[type, str] = {}  # through model -> the relation's name on the instance


def memberships_changed(sender: Any, instance: Any, action: str, reverse: bool, model: type, pk_set: set[int] | None,
                        **kwargs: Any) -> None:
    """Groups of a user, permissions of a user or a group: added, removed, cleared."""
    if action not in ("post_add", "post_remove", "pre_clear") or reverse:
        return
    relation = _RELATIONS[sender]
    if action == "pre_clear":
        pk_set, verb = set(getattr(instance, relation).values_list("pk", flat=True)), "remove"
    else:
        verb = action.removeprefix("post_")
    if names := _names(model, pk_set):
        audit.record(f"{instance._meta.model_name}.{relation}.{verb}", actor=actor(), obj=instance,
                     target=str(instance), details={relation: names})


def connect() -> None:
    from axes.signals import user_locked_out

    user = get_user_model()
    user_logged_in.connect(logged_in, dispatch_uid="audit.login")
    user_logged_out.connect(logged_out, dispatch_uid="audit.logout")
    user_login_failed.connect(login_failed, dispatch_uid="audit.login_failed")
    user_locked_out.connect(locked_out, dispatch_uid="audit.lockout")
    for model in (user, Group):
        pre_save.connect(before_save, sender=model, dispatch_uid=f"audit.pre_save.{model.__name__}")
        post_save.connect(saved, sender=model, dispatch_uid=f"audit.save.{model.__name__}")
        post_delete.connect(deleted, sender=model, dispatch_uid=f"audit.delete.{model.__name__}")
    _RELATIONS.update({user.groups.through: "groups", user.user_permissions.through: "user_permissions",
                       Group.permissions.through: "permissions"})
    for through in _RELATIONS:
        m2m_changed.connect(memberships_changed, sender=through, dispatch_uid=f"audit.m2m.{through.__name__}")
