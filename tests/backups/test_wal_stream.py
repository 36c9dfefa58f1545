"""Synchronous streaming with pg_receivewal: RPO 0 bytes while it runs; a stopped receiver is an alert."""

from __future__ import annotations

import threading

import pytest
from django.test import override_settings

from backups.wal import status, stream
from portal import pg
from tests.conftest import wait_for

pytestmark = pytest.mark.django_db(transaction=True)


def commit(target: pg.Target, rows: int = 100) -> None:
    with pg.connect(target) as conn:
        conn.execute("CREATE TABLE IF NOT EXISTS s (i int, t text)")
        conn.execute("INSERT INTO s SELECT g, repeat('y', 200) FROM generate_series(1, %s) g", [rows])


@override_settings(WAL_SLOT_WARN_BYTES=2 * 1024 * 1024)
def test_synchronous_streaming_leaves_nothing_at_risk_and_a_stopped_receiver_is_noticed(archiving):
    target = archiving.cluster.target()
    stream.configure(archiving, synchronous=True)
    stop = threading.Event()
    lines: list[str] = []
    receiver = threading.Thread(target=stream.receive, args=(archiving, stop, lines.append))
    receiver.start()
    try:
        with pg.connect(target) as conn:
            wait_for(lambda: conn.execute("SELECT sync_state FROM pg_stat_replication WHERE application_name = %s",
                                          [stream.application_name(archiving)]).fetchone() == ("sync",),
                     message="the receiver to be the synchronous standby")
        for _ in range(5):
            commit(target)
        sample = status.take_sample(archiving)
        assert sample.stream_active is True and sample.slot_wal_status == "reserved"
        assert sample.rpo_bytes == 0 and sample.rpo_seconds < 1.0
        assert sample.alert == "ok", sample.problems
        assert list(archiving.stream_folder.glob("*.partial"))
    finally:
        stream.configure(archiving, synchronous=False)  # commits must not wait for a receiver that is gone
        stop.set()
        receiver.join(timeout=30)
    commit(target, rows=30_000)  # WAL the slot now holds back for nobody
    sample = status.take_sample(archiving)
    assert sample.stream_active is False
    assert sample.slot_retained_bytes > 2 * 1024 * 1024
    assert sample.alert == "critical"
    assert any("no receiver is connected" in p["text"] for p in sample.problems)
    with pg.connect(target) as conn:
        assert conn.execute("SHOW max_slot_wal_keep_size").fetchone()[0] == "4GB"
