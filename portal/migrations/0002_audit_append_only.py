"""The database itself refuses to change or remove audit events."""

from django.db import migrations

FORBID = """
CREATE FUNCTION portal_auditevent_append_only() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'portal_auditevent is append-only: % is not allowed', TG_OP
        USING ERRCODE = 'insufficient_privilege';
END;
$$;
CREATE TRIGGER portal_auditevent_no_update_delete
    BEFORE UPDATE OR DELETE ON portal_auditevent
    FOR EACH ROW EXECUTE FUNCTION portal_auditevent_append_only();
"""

ALLOW = """
DROP TRIGGER portal_auditevent_no_update_delete ON portal_auditevent;
DROP FUNCTION portal_auditevent_append_only();
"""


class Migration(migrations.Migration):
    dependencies = [("portal", "0001_initial")]
    operations = [migrations.RunSQL(FORBID, ALLOW)]
