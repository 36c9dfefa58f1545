"""Single-table recovery (Scenario 3): deleted students come back without duplicates; the new-table policy leaves
production's table alone; a table the backup lacks is named with the ones it has; a merge that violates a
constraint rolls back and leaves production as it was."""

from __future__ import annotations

import pytest

from portal import scratch
from recovery import single_table
from recovery.models import RecoveryRequest, RecoveryStep
from tests.recovery.conftest import database_names, query, run, submit

pytestmark = pytest.mark.django_db(transaction=True)
Policy = RecoveryRequest.MergePolicy
STUDENTS = "SELECT count(*), count(DISTINCT id), md5(string_agg(s::text, ',' ORDER BY id)) FROM paws360.students s"


def students(database) -> tuple:
    return query(database, STUDENTS)[0]


def delete_students(database, last_id: int) -> None:
    query(database, "DELETE FROM paws360.enrollments WHERE student_id <= %s", [last_id])
    query(database, "DELETE FROM paws360.students WHERE id <= %s", [last_id])


def recover(database, requester, approver, policy: str, tables=("paws360.students",)) -> RecoveryRequest:
    request = submit(database, requester, approver, kind=RecoveryRequest.Kind.TABLE, tables=list(tables),
                     merge_policy=policy)
    return run(request)


def no_scratch_left(request: RecoveryRequest) -> bool:
    """No scratch database of the recovery on the scratch cluster, and none of any single-table recovery on
    production's cluster."""
    assert request.database is not None
    places = [(request.database.cluster, single_table.SCRATCH_PREFIX),
              (scratch.named(), scratch.key_prefix(single_table.SCRATCH_PREFIX, request.pk))]
    return all(query(cluster.target(), "SELECT count(*) FROM pg_database WHERE starts_with(datname, %s)",
                     [prefix]) == [(0,)] for cluster, prefix in places)


def test_deleted_students_are_back_without_duplicates(sample_database, good_backup, operator, dba):
    backed_up = students(sample_database)
    delete_students(sample_database, 25)
    enrollments = query(sample_database, "SELECT count(*) FROM paws360.enrollments")

    request = recover(sample_database, operator, dba, Policy.INSERT_MISSING)

    assert request.status == RecoveryRequest.Status.SUCCEEDED, request.error
    assert students(sample_database) == backed_up, "the same rows, each once"
    assert query(sample_database, "SELECT count(*) FROM paws360.enrollments") == enrollments, "other tables untouched"
    result = request.verification["tables"]["paws360.students"]
    assert result["preview"]["only_in_backup"] == 25 and result["inserted"] == 25
    assert result["preview"]["samples"]["only_in_backup"] == ["1", "2", "3", "4", "5"]
    assert result["preview"]["only_in_production"] == result["preview"]["differing"] == 0
    assert result["after"]["only_in_backup"] == 0
    assert request.scratch_cluster == scratch.named(), "restored into scratch beside production, merged over"
    assert f"on the scratch cluster {scratch.named()}" in request.steps.get(name=single_table.SCRATCH).log
    assert no_scratch_left(request)
    assert request.verification["rto"]["measured"] == "from the first step to the merge committed and checked"
    assert {s.status for s in request.steps.all()} == {RecoveryStep.Status.SUCCEEDED}


def test_the_new_table_policy_creates_students_restored_with_the_backups_rows(sample_database, good_backup,
                                                                             operator):
    backed_up = students(sample_database)
    delete_students(sample_database, 3)
    damaged = students(sample_database)

    request = recover(sample_database, operator, None, Policy.NEW_TABLE)

    assert request.status == RecoveryRequest.Status.SUCCEEDED, request.error
    assert not request.needs_approval, "a new table beside production's needs no approval"
    new_table = request.verification["tables"]["paws360.students"]["new_table"]
    assert new_table.startswith("paws360.students_restored_")
    restored = query(sample_database, STUDENTS.replace("paws360.students", new_table))[0]
    assert restored == backed_up
    assert students(sample_database) == damaged, "production's table is untouched"
    assert request.verification["tables"]["paws360.students"]["preview"]["only_in_backup"] == 3
    assert no_scratch_left(request)


def test_replace_rows_makes_the_table_the_backups(sample_database, good_backup, operator, dba):
    backed_up = students(sample_database)
    delete_students(sample_database, 5)
    query(sample_database, "UPDATE paws360.students SET gpa = 0.00 WHERE id BETWEEN 6 AND 9")
    query(sample_database, "INSERT INTO paws360.students (id, user_id, student_number, first_name, last_name, "
                           "date_of_birth, major, enrolled_at, status) VALUES (99999, 10, 'S999999999', 'New', "
                           "'Student', '2000-01-01', 'Biology', now(), 'active')")

    request = recover(sample_database, operator, dba, Policy.REPLACE_ROWS)

    assert request.status == RecoveryRequest.Status.SUCCEEDED, request.error
    assert students(sample_database) == backed_up
    result = request.verification["tables"]["paws360.students"]
    assert (result["deleted"], result["updated"], result["inserted"]) == (1, 4, 5)
    assert result["preview"]["samples"]["differing"] == ["6", "7", "8", "9"]
    assert result["preview"]["samples"]["only_in_production"] == ["99999"]


def test_a_table_that_is_not_in_the_backup_is_an_error_that_lists_its_tables(sample_database, good_backup,
                                                                             operator):
    request = recover(sample_database, operator, None, Policy.NEW_TABLE, tables=["paws360.grades"])

    assert request.status == RecoveryRequest.Status.FAILED
    assert request.error == (f"paws360.grades is not in backup #{good_backup.pk}; it has: audit.audit_log, "
                             "paws360.courses, paws360.enrollments, paws360.notifications, paws360.sessions, "
                             "paws360.students, paws360.users")
    assert no_scratch_left(request)


def test_a_merge_that_violates_a_foreign_key_rolls_back(sample_database, good_backup, operator, dba):
    delete_students(sample_database, 5)
    query(sample_database, "UPDATE paws360.students SET gpa = 0.00 WHERE id BETWEEN 6 AND 9")
    # A student enrolled after the backup: replacing the rows would delete a row an enrollment still references.
    query(sample_database, "INSERT INTO paws360.students (id, user_id, student_number, first_name, last_name, "
                           "date_of_birth, major, enrolled_at, status) VALUES (99999, 10, 'S999999999', 'New', "
                           "'Student', '2000-01-01', 'Biology', now(), 'active')")
    query(sample_database, "INSERT INTO paws360.enrollments (student_id, course_id, term, enrolled_at) "
                           "VALUES (99999, 1, '2025FA', now())")
    before = students(sample_database)

    request = recover(sample_database, operator, dba, Policy.REPLACE_ROWS)

    assert request.status == RecoveryRequest.Status.FAILED
    assert "violates foreign key constraint" in request.error and "enrollments" in request.error
    assert students(sample_database) == before, "the whole merge rolled back"
    steps = {s.name: s.status for s in request.steps.all()}
    assert steps[single_table.COMPARE] == RecoveryStep.Status.SUCCEEDED
    assert steps[single_table.MERGE] == RecoveryStep.Status.FAILED
    assert steps[single_table.DROP] == RecoveryStep.Status.SUCCEEDED
    assert request.scratch_cluster == scratch.named() and no_scratch_left(request), "dropped from the scratch cluster"
    assert database_names(sample_database) == {sample_database.name}


def test_a_merge_that_violates_a_unique_constraint_rolls_back(sample_database, good_backup, operator, dba):
    delete_students(sample_database, 1)
    # Student 1's number, given to someone else since: inserting the missing student 1 back must fail.
    query(sample_database, "INSERT INTO paws360.students (id, user_id, student_number, first_name, last_name, "
                           "date_of_birth, major, enrolled_at, status) VALUES (99999, 10, 'S000000001', 'New', "
                           "'Student', '2000-01-01', 'Biology', now(), 'active')")
    before = students(sample_database)

    request = recover(sample_database, operator, dba, Policy.INSERT_MISSING)

    assert request.status == RecoveryRequest.Status.FAILED
    assert "duplicate key value violates unique constraint" in request.error
    assert students(sample_database) == before
    assert no_scratch_left(request)
