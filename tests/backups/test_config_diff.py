"""The admin shows what changed between two versions of a configuration source."""

from __future__ import annotations

import pytest
from django.urls import reverse

from backups.models import ConfigFileVersion
from tests.backups.conftest import config_versions


@pytest.fixture
def two_versions(embedded_cluster, backup_root, tmp_path, settings) -> list[ConfigFileVersion]:
    before = "database:\n  host: db1.paws360.edu\n  pool: 10\nlog_level: info\n"
    after = "database:\n  host: db1.paws360.edu\n  pool: 25\nlog_level: info\n<script>alert(1)</script>\n"
    return config_versions(embedded_cluster, tmp_path / "paws360-api.yml", settings, before, after)


def test_an_auditor_sees_the_diff_of_two_versions(client, auditor, two_versions):
    old, new = two_versions
    client.force_login(auditor)
    page = client.get(reverse("admin:backups_configfileversion_diff", args=[old.pk, new.pk]))
    assert page.status_code == 200
    html = page.content.decode()
    assert '<span class="diff_chg">10</span>' in html and '<span class="diff_chg">25</span>' in html
    assert "<script>alert(1)</script>" not in html and "&lt;script&gt;alert(1)&lt;/script&gt;" in html


def test_identical_versions_say_so(client, auditor, embedded_cluster, two_versions):
    old, new = (ConfigFileVersion.objects.filter(source="pg_hba.conf").order_by("created"))
    client.force_login(auditor)
    page = client.get(reverse("admin:backups_configfileversion_diff", args=[old.pk, new.pk]))
    assert "The two versions are identical." in page.content.decode()


def test_a_version_links_to_the_others_and_the_action_compares_two(client, dba, two_versions):
    old, new = two_versions
    client.force_login(dba)
    page = client.get(reverse("admin:backups_configfileversion_change", args=[new.pk]))
    assert reverse("admin:backups_configfileversion_diff", args=[old.pk, new.pk]).encode() in page.content
    response = client.post(reverse("admin:backups_configfileversion_changelist"),
                           {"action": "compare", "_selected_action": [new.pk, old.pk]})
    assert response.status_code == 302
    assert response.url == reverse("admin:backups_configfileversion_diff", args=[old.pk, new.pk])


def test_someone_without_a_role_sees_nothing(client, db, two_versions):
    from tests.conftest import make_user

    client.force_login(make_user("nobody", None))
    old, new = two_versions
    assert client.get(reverse("admin:backups_configfileversion_diff", args=[old.pk, new.pk])).status_code == 403
