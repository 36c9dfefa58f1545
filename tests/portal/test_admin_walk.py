"""Every page of the admin, whatever app registered it (ours, Django's users and groups, django-q2's), sent bad input
as a browser or a script could: every add and change form with 10,000-character values, impossible dates and crons
that never fire in every field; every list with nonsense filters and a selection that names no item, for every
action. No server error, nothing saved, and no error message repeats the 10,000 characters."""

from __future__ import annotations

from typing import Any

import pytest
from django import forms
from django.contrib import admin
from django.contrib.auth.models import Group, User
from django.db.models import IntegerField, Model
from django.forms.models import model_to_dict
from django.urls import reverse
from django_q.models import Schedule

from backups.models import BackupPolicy, StorageLocation, WalArchive
from portal.adminguard import NOT_A_SELECTION
from portal.models import ManagedCluster, ManagedDatabase

LONG = "n" * 10_000
GARBAGE = ["2026-02-30 10:00 UTC", "2026-12-02 25:00 UTC", "0 2 31 2 *", "garbage\u00b2", "-1", "1e309"]
NONSENSE_QUERIES = ["q=%00", f"q={LONG}", "o=abc", "p=abc", "p=99999", "created__year=abc", "created__gte=2026-02-30",
                    "id__gt=abc", "status=nonsense", "e=1", "_popup=abc", "all=", f"{LONG}=1"]
NOT_IDS = [["abc"], ["\x00"], [LONG], ["1", "abc"], ["1.5"]]
MODELS = list(admin.site._registry)


@pytest.fixture
def superuser(db) -> User:
    return User.objects.create_superuser("root_walker", "root@example.edu", "correct horse battery staple")


@pytest.fixture
def objects(db) -> list[Model]:
    """One editable object of each kind, for the change forms."""
    cluster = ManagedCluster.objects.create(name="walked", port=5432, checked_at=None)
    database = ManagedDatabase.objects.create(cluster=cluster, name="walked_db")
    policy = BackupPolicy.objects.create(name="walked policy", kind="config", cluster=cluster)
    archive = WalArchive.objects.create(cluster=cluster, path="/srv/wal/walked")
    schedule = Schedule.objects.create(name="walked schedule", func="portal.tasks.reap_dead_jobs",
                                       schedule_type=Schedule.CRON, cron="* * * * *")
    return [cluster, database, policy, archive, schedule, StorageLocation.default_local(),
            Group.objects.create(name="walked group"), User.objects.create_user("walked_user")]


def url(model: type[Model], view: str, *args: object) -> str:
    return reverse(f"admin:{model._meta.app_label}_{model._meta.model_name}_{view}", args=args)


def names(bound: forms.BoundField) -> list[str]:
    """The names the field's widget reads from a POST (a split date and time reads two)."""
    widget = bound.field.widget
    if isinstance(widget, forms.MultiWidget):
        return [bound.html_name + suffix for suffix in widget.widgets_names]
    return [bound.html_name]


def post_data(response, value: str) -> dict[str, Any]:
    """`value` in every field of the page's form and of one new row of each inline."""
    data: dict[str, Any] = {}
    for bound in response.context["adminform"].form:
        data |= {name: value for name in names(bound)}
    for inline in response.context.get("inline_admin_formsets") or []:
        formset = inline.formset
        data |= {f"{formset.prefix}-TOTAL_FORMS": "1", f"{formset.prefix}-INITIAL_FORMS": "0"}
        for bound in formset.empty_form:
            data |= {name.replace("__prefix__", "0"): value for name in names(bound)}
    return data


def errors(response) -> list[str]:
    form = response.context["adminform"].form
    shown = [str(message) for messages in form.errors.values() for message in messages]
    for inline in response.context.get("inline_admin_formsets") or []:
        shown += [str(message) for row in inline.formset.errors for messages in row.values() for message in messages]
        shown += [str(message) for message in inline.formset.non_form_errors()]
    return shown


def snapshot(model: type[Model]) -> list[dict[str, Any]]:
    return [model_to_dict(obj) for obj in model._default_manager.order_by("pk")]


@pytest.mark.parametrize("model", MODELS, ids=lambda model: model._meta.label)
def test_every_add_and_change_form_refuses_bad_values(client, superuser, objects, model):
    client.force_login(superuser)
    pages = [url(model, "add")] + [url(model, "change", obj.pk) for obj in objects if isinstance(obj, model)]
    tried = 0
    for page in pages:
        shown = client.get(page)
        editable = shown.status_code == 200 and "adminform" in shown.context
        if not editable or not shown.context.get("has_change_permission", True):
            continue
        before = snapshot(model)
        answer = client.post(page, post_data(shown, LONG))
        assert answer.status_code == 200, page
        said = errors(answer)
        assert said and not any(LONG[:300] in message for message in said)
        assert any("(this has 10,000)" in message for message in said)
        for value in GARBAGE:
            assert client.post(page, post_data(shown, value)).status_code == 200, (page, value)
        assert snapshot(model) == before
        tried += 1
    assert tried or not admin.site._registry[model].has_add_permission(_request(superuser))


def _request(user: User):
    from django.test import RequestFactory

    request = RequestFactory().get("/admin/")
    request.user = user
    return request


@pytest.mark.parametrize("model", MODELS, ids=lambda model: model._meta.label)
def test_every_list_takes_nonsense_filters_and_selections(client, superuser, objects, model):
    client.force_login(superuser)
    changelist = url(model, "changelist")
    for query in NONSENSE_QUERIES:
        assert client.get(f"{changelist}?{query}").status_code in (200, 302), query
    action_form = client.get(changelist).context["action_form"]
    actions = [name for name, _ in action_form.fields["action"].choices if name] if action_form else []
    before = snapshot(model)
    for action in actions:
        for selection in NOT_IDS:
            answer = client.post(changelist, {"action": action, "_selected_action": selection, "index": 0},
                                 follow=True)
            assert answer.status_code == 200, (action, selection)
            numbered = isinstance(model._meta.pk, IntegerField)  # django-q2's tasks are named: "abc" may be one
            assert NOT_A_SELECTION in answer.content.decode() or not numbered
        nobody = {"action": action, "_selected_action": ["9" * 30], "index": 0}  # an id, of no item
        assert client.post(changelist, nobody, follow=True).status_code == 200
    assert client.post(changelist, {"action": LONG, "_selected_action": ["1"]}).status_code in (200, 302)
    assert snapshot(model) == before
