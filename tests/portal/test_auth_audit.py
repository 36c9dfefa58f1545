"""Logins, failed logins, lockouts, logouts and changes of users and groups are audit events."""

from __future__ import annotations

import pytest
from django.contrib.auth.models import Group, User

from portal.models import AuditEvent
from portal.roles import DBA

LOGIN = "/admin/login/?next=/admin/"
PASSWORD = "correct horse battery staple"


def attempt(client, username: str, password: str):
    return client.post(LOGIN, {"username": username, "password": password}, REMOTE_ADDR="10.1.2.3")


def test_eleven_wrong_passwords_lock_the_user_out_and_the_login_page_says_so(client, operator, settings):
    responses = [attempt(client, operator.username, f"wrong-{i}") for i in range(11)]
    assert [r.status_code for r in responses[:9]] == [200] * 9, "a wrong password is a form error first"
    assert responses[-1].status_code == 429
    assert "locked out for 15 minutes" in responses[-1].content.decode()
    assert 'name="username"' in responses[-1].content.decode(), "the login page itself, with the reason"

    right = attempt(client, operator.username, PASSWORD)
    assert right.status_code == 429, "the right password does not get in while locked out"
    assert "_auth_user_id" not in client.session

    failed = AuditEvent.objects.filter(action="auth.login_failed", target=operator.username)
    assert failed.count() >= settings.AXES_FAILURE_LIMIT
    assert all(event.details == {"address": "10.1.2.3"} for event in failed)
    assert "wrong" not in str(list(failed.values_list("details", flat=True))), "no password in the trail"
    lockouts = AuditEvent.objects.filter(action="auth.lockout", target=operator.username)
    assert lockouts.count() == 3, "the 10th, the 11th and the right password after them: each refused, each recorded"
    assert {(e.outcome, e.details["address"]) for e in lockouts} == {("denied", "10.1.2.3")}


def test_the_lockout_is_per_user_and_address(client, operator, auditor):
    for i in range(11):
        attempt(client, operator.username, f"wrong-{i}")
    other = attempt(client, auditor.username, PASSWORD)
    assert other.status_code == 302, "another user from the same address still gets in"
    elsewhere = client.post(LOGIN, {"username": operator.username, "password": PASSWORD}, REMOTE_ADDR="10.9.9.9")
    assert elsewhere.status_code == 302, "the same user from another address still gets in"


def test_a_login_and_a_logout_are_audited(client, operator):
    assert attempt(client, operator.username, PASSWORD).status_code == 302
    client.post("/admin/logout/")
    actions = list(AuditEvent.objects.filter(actor=operator.username).order_by("id").values_list("action", flat=True))
    assert actions == ["auth.login", "auth.logout"]


@pytest.fixture
def superuser(db) -> User:
    return User.objects.create_superuser("sam_super", password=PASSWORD)


def user_form(user: User, groups: list[Group]) -> dict[str, object]:
    return {"username": user.username, "first_name": "", "last_name": "", "email": "", "is_active": "on",
            "is_staff": "on", "groups": [g.pk for g in groups], "user_permissions": [],
            "last_login_0": "", "last_login_1": "", "date_joined_0": user.date_joined.strftime("%Y-%m-%d"),
            "date_joined_1": user.date_joined.strftime("%H:%M:%S")}


def test_a_user_added_to_the_dba_group_is_audited_with_who_did_it(client, superuser, operator):
    client.force_login(superuser)
    dba_group = Group.objects.get(name=DBA)
    response = client.post(f"/admin/auth/user/{operator.pk}/change/",
                           user_form(operator, [*operator.groups.all(), dba_group]))
    assert response.status_code == 302, response.content.decode()[:2000]
    added = AuditEvent.objects.filter(action="user.groups.add", object_id=str(operator.pk)).order_by("id")
    assert [(e.actor, e.details) for e in added] == [
        ("system", {"groups": ["Operator"]}),  # when the fixture made the user
        (superuser.username, {"groups": [DBA]}),
    ]


def test_a_removed_membership_and_a_password_change_are_audited_without_the_password(client, superuser, operator):
    client.force_login(superuser)
    client.post(f"/admin/auth/user/{operator.pk}/change/", user_form(operator, []))
    removed = AuditEvent.objects.get(action="user.groups.remove", object_id=str(operator.pk))
    assert removed.actor == superuser.username and removed.details == {"groups": ["Operator"]}

    response = client.post(f"/admin/auth/user/{operator.pk}/password/",
                           {"password1": "a new long passphrase 42", "password2": "a new long passphrase 42",
                            "usable_password": "true"})
    assert response.status_code == 302
    change = AuditEvent.objects.filter(action="user.change", object_id=str(operator.pk)).latest("id")
    assert change.actor == superuser.username and change.details == {"changed": ["password"]}
    assert "pbkdf2" not in str(change.details) and "md5" not in str(change.details)


def test_group_permission_changes_are_audited(superuser):
    group = Group.objects.create(name="Night shift")
    from django.contrib.auth.models import Permission

    group.permissions.add(Permission.objects.get(codename="run_backup"))
    assert AuditEvent.objects.filter(action="group.create", target="Night shift").exists()
    event = AuditEvent.objects.get(action="group.permissions.add", object_id=str(group.pk))
    assert event.details == {"permissions": ["portal.run_backup"]} and event.actor == "system"
