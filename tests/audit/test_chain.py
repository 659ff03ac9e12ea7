"""The audit hash chain on real Redis: appends, idempotency, and detection of every kind of tampering."""

from __future__ import annotations

import json
import threading

import pytest

from warden.audit import AuditLog, content_hash_of, link_hash


def _filled(redis_client, thread_id: str = "t-chain", events: int = 5, tenant: str = "acme") -> AuditLog:
    log = AuditLog(redis_client, tenant)
    for number in range(events):
        log.append(thread_id, "note", {"number": number}, event_id=f"e{number}", turn=1, node="test")
    return log


def _rewrite_stream(client, key: str, transform) -> None:
    """Replace a stream with the entries ``transform`` returns; it gets (id, parsed entry) rows."""
    rows = [(stream_id, json.loads(fields[b"entry"])) for stream_id, fields in client.xrange(key)]
    client.delete(key)
    for number, entry in enumerate(transform(rows), start=1):
        client.xadd(key, {"entry": json.dumps(entry)}, id=f"{number}-0")


def test_chain_verifies_after_appends(redis_client):
    log = _filled(redis_client)
    report = log.verify("t-chain")
    assert report.ok, report.error
    assert report.count == 5
    assert log.head("t-chain")["hash"] == report.head_hash


def test_append_same_event_id_once(redis_client):
    log = _filled(redis_client, events=2)
    seq = log.append("t-chain", "note", {"number": 99}, event_id="e1")
    assert seq == 2
    assert log.head("t-chain")["count"] == 2
    assert [item.data for item in log.read("t-chain")] == [{"number": 0}, {"number": 1}]


def test_concurrent_appends_keep_one_chain(redis_client):
    log = AuditLog(redis_client, "acme")

    def writer(name: str) -> None:
        for number in range(25):
            log.append("t-race", "note", {"writer": name}, event_id=f"{name}-{number}")

    threads = [threading.Thread(target=writer, args=(f"w{index}",)) for index in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    report = log.verify("t-race")
    assert report.ok, report.error
    assert report.count == 100


def test_edited_data_detected(redis_client):
    log = _filled(redis_client)
    data_key = log.keys("t-chain")[3]
    redis_client.hset(data_key, "3", json.dumps({"number": 300}))
    report = log.verify("t-chain")
    assert not report.ok
    assert report.broken_at == 3
    assert "data does not match" in report.error


def test_edited_envelope_detected(redis_client):
    log = _filled(redis_client)

    def edit(rows):
        rows[1][1]["kind"] = "forged"
        return [entry for _id, entry in rows]

    _rewrite_stream(redis_client, log.keys("t-chain")[0], edit)
    report = log.verify("t-chain")
    assert not report.ok
    assert report.broken_at == 2
    assert "edited" in report.error


def test_edit_with_recomputed_content_hash_detected(redis_client):
    log = _filled(redis_client)

    def edit(rows):
        entry = rows[2][1]
        entry["node"] = "forged"
        entry["content_hash"] = content_hash_of(entry)
        entry["hash"] = link_hash(entry["prev_hash"], entry["content_hash"])
        return [entry for _id, entry in rows]

    _rewrite_stream(redis_client, log.keys("t-chain")[0], edit)
    report = log.verify("t-chain")
    assert not report.ok
    assert report.broken_at == 4
    assert "does not link" in report.error


def test_deleted_entry_detected(redis_client):
    log = _filled(redis_client)
    stream = log.keys("t-chain")[0]
    second = redis_client.xrange(stream)[1][0]
    redis_client.xdel(stream, second)
    report = log.verify("t-chain")
    assert not report.ok
    assert report.broken_at == 2
    assert "deleted" in report.error


def test_reordered_entries_detected(redis_client):
    log = _filled(redis_client)

    def swap(rows):
        entries = [entry for _id, entry in rows]
        entries[1], entries[2] = entries[2], entries[1]
        return entries

    _rewrite_stream(redis_client, log.keys("t-chain")[0], swap)
    report = log.verify("t-chain")
    assert not report.ok
    assert report.broken_at == 2


def test_truncated_tail_detected(redis_client):
    log = _filled(redis_client)
    stream = log.keys("t-chain")[0]
    last = redis_client.xrange(stream)[-1][0]
    redis_client.xdel(stream, last)
    report = log.verify("t-chain")
    assert not report.ok
    assert "truncated" in report.error
    assert report.count == 4


def test_deleted_head_detected(redis_client):
    log = _filled(redis_client)
    redis_client.delete(log.keys("t-chain")[1])
    report = log.verify("t-chain")
    assert not report.ok
    assert "head record is missing" in report.error


def test_deleted_stream_detected(redis_client):
    log = _filled(redis_client)
    redis_client.delete(log.keys("t-chain")[0])
    report = log.verify("t-chain")
    assert not report.ok
    assert report.count == 0


def test_rewritten_stream_and_head_needs_anchor(redis_client):
    log = _filled(redis_client)
    anchor = log.head("t-chain")

    # An attacker with write access rebuilds a consistent, shorter chain and head.
    def forge(rows):
        entries = [entry for _id, entry in rows][:3]
        previous = "0" * 64
        for entry in entries:
            entry["prev_hash"] = previous
            entry["content_hash"] = content_hash_of(entry)
            entry["hash"] = link_hash(previous, entry["content_hash"])
            previous = entry["hash"]
        return entries

    stream, head, _dedup, data = log.keys("t-chain")
    _rewrite_stream(redis_client, stream, forge)
    forged = [json.loads(fields[b"entry"]) for _id, fields in redis_client.xrange(stream)]
    redis_client.hset(head, mapping={"count": 3, "hash": forged[-1]["hash"]})
    redis_client.hdel(data, "4", "5")
    assert log.verify("t-chain").ok
    report = log.verify("t-chain", anchor=anchor)
    assert not report.ok
    assert "anchored hash" in report.error


def test_verify_all_names_only_broken_thread(redis_client):
    log = _filled(redis_client, "t-good")
    _filled(redis_client, "t-bad")
    redis_client.hset(log.keys("t-bad")[3], "1", json.dumps({"number": -1}))
    reports = {report.thread_id: report for report in log.verify_all()}
    assert sorted(reports) == ["t-bad", "t-good"]
    assert reports["t-good"].ok
    assert not reports["t-bad"].ok
    assert reports["t-bad"].broken_at == 1


def test_tenants_are_separate(redis_client):
    _filled(redis_client, "t-1", tenant="acme")
    _filled(redis_client, "t-2", tenant="globex")
    assert AuditLog(redis_client, "acme").thread_ids() == ["t-1"]
    assert AuditLog(redis_client, "globex").thread_ids() == ["t-2"]


def test_thread_keys_share_hash_tag(redis_client):
    log = AuditLog(redis_client, "acme")
    keys = log.keys("odd{id}")
    tags = {key[key.index("{") : key.index("}") + 1] for key in keys}
    assert len(tags) == 1
    log.append("odd{id}", "note", {"x": 1}, event_id="e")
    assert log.thread_ids() == ["odd{id}"]


def test_invalid_tenant_rejected(redis_client):
    with pytest.raises(ValueError, match="must not contain"):
        AuditLog(redis_client, "a:b")


def test_forget_thread_keeps_verifiable_chain(redis_client):
    log = _filled(redis_client)
    assert log.forget_thread("t-chain", reason="customer request") == 5
    report = log.verify("t-chain")
    assert report.ok, report.error
    items = log.read("t-chain")
    assert [item.erased for item in items] == [True] * 5 + [False]
    assert items[-1].entry["kind"] == "erasure"
    assert items[-1].data == {"seqs": [1, 2, 3, 4, 5], "reason": "customer request"}
    assert all(item.entry["data_hash"] for item in items)
    assert log.forget_thread("t-chain") == 0


def test_data_deleted_without_erasure_detected(redis_client):
    log = _filled(redis_client)
    redis_client.hdel(log.keys("t-chain")[3], "2")
    report = log.verify("t-chain")
    assert not report.ok
    assert report.broken_at == 2
    assert "no erasure entry" in report.error


def test_forget_customer_erases_their_threads(redis_client):
    log = AuditLog(redis_client, "acme")
    log.append("t-emma-1", "note", {"text": "emma one"}, event_id="a", customer_id="emma")
    log.append("t-emma-2", "note", {"text": "emma two"}, event_id="a", customer_id="emma")
    log.append("t-other", "note", {"text": "other"}, event_id="a", customer_id="other")
    assert log.forget_customer("emma") == {"t-emma-1": 1, "t-emma-2": 1}
    assert [item.data for item in log.read("t-other")] == [{"text": "other"}]
    for thread_id in ("t-emma-1", "t-emma-2"):
        assert log.verify(thread_id).ok
        assert log.read(thread_id)[0].erased
    dump = b"".join(redis_client.dump(key) or b"" for key in redis_client.scan_iter())
    assert b"emma one" not in dump
    assert b"emma two" not in dump


def test_ttl_applies_to_audit_keys_only(redis_client):
    log = AuditLog(redis_client, "acme", ttl_seconds=3600)
    log.append("t-ttl", "note", {"x": 1}, event_id="e")
    for key in log.keys("t-ttl"):
        assert 0 < redis_client.ttl(key) <= 3600, key
    forever = AuditLog(redis_client, "acme")
    forever.append("t-keep", "note", {"x": 1}, event_id="e")
    assert redis_client.ttl(forever.keys("t-keep")[0]) == -1
