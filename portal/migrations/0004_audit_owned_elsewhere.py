"""The audit table is no longer Django's to alter or flush, and TRUNCATE is refused like UPDATE and DELETE.

Its ownership moves to the audit owner role outside migrations: `manage.py audit_privileges --sql`, run by a
superuser (`bin/portal up` does it on the embedded default).
"""

from django.db import migrations

FORBID_TRUNCATE = """
CREATE TRIGGER portal_auditevent_no_truncate
    BEFORE TRUNCATE ON portal_auditevent
    FOR EACH STATEMENT EXECUTE FUNCTION portal_auditevent_append_only();
"""

ALLOW_TRUNCATE = "DROP TRIGGER portal_auditevent_no_truncate ON portal_auditevent;"


class Migration(migrations.Migration):
    dependencies = [("portal", "0003_roles")]
    operations = [
        migrations.AlterModelOptions(name="auditevent", options={"ordering": ["-id"], "managed": False}),
        migrations.RunSQL(FORBID_TRUNCATE, ALLOW_TRUNCATE),
    ]
