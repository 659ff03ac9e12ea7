"""The ``python -m ingestion`` command."""

from __future__ import annotations

import json

from tests.ingestion.conftest import run_ingestion_cli


def test_missing_source_exits_nonzero(tmp_path):
    result = run_ingestion_cli(
        "--source", str(tmp_path / "absent"), "--index", str(tmp_path / "index")
    )

    assert result.returncode == 2
    assert "source not found" in result.stderr
    assert not (tmp_path / "index").exists()


def test_foreign_index_folder_exits_nonzero(tmp_path):
    (tmp_path / "kb").mkdir()
    (tmp_path / "kb" / "a.md").write_text("# A\n\ntext", encoding="utf-8")
    (tmp_path / "index").mkdir()
    (tmp_path / "index" / "other.txt").write_text("x", encoding="utf-8")

    result = run_ingestion_cli(
        "--source",
        str(tmp_path / "kb"),
        "--index",
        str(tmp_path / "index"),
        "--no-progress",
    )

    assert result.returncode == 1
    assert "is not empty and contains no manifest.json" in result.stderr


def test_build_prints_per_file_report(tmp_path):
    kb = tmp_path / "kb"
    kb.mkdir()
    (kb / "a.md").write_text("# Returns\n\nReturn within 30 days.", encoding="utf-8")
    (kb / "b.bin").write_bytes(b"\x00\x01")

    result = run_ingestion_cli("--source", str(kb), "--index", str(tmp_path / "index"))

    assert result.returncode == 0, result.stderr
    assert "kb/a.md" in result.stdout
    assert "added" in result.stdout
    assert "unsupported extension '.bin'" in result.stdout
    assert "1 added, 0 updated, 0 unchanged, 0 removed, 1 skipped" in result.stdout
    assert "embedding" in result.stderr


def test_build_stores_fusion_flags(tmp_path):
    kb = tmp_path / "kb"
    kb.mkdir()
    (kb / "a.md").write_text("# Returns\n\nReturn within 30 days.", encoding="utf-8")

    result = run_ingestion_cli(
        "--source",
        str(kb),
        "--index",
        str(tmp_path / "index"),
        "--no-progress",
        "--fusion-method",
        "convex",
        "--dense-weight",
        "0.8",
    )

    assert result.returncode == 0, result.stderr
    manifest = json.loads((tmp_path / "index" / "manifest.json").read_text("utf-8"))
    assert manifest["fusion"]["method"] == "convex"
    assert manifest["fusion"]["dense_weight"] == 0.8
    assert manifest["fusion"]["rrf_k"] == 60


def test_invalid_dense_weight_exits_before_build(tmp_path):
    kb = tmp_path / "kb"
    kb.mkdir()
    (kb / "a.md").write_text("# A\n\ntext", encoding="utf-8")

    result = run_ingestion_cli(
        "--source", str(kb), "--index", str(tmp_path / "index"), "--dense-weight", "2"
    )

    assert result.returncode == 2
    assert "invalid fusion dense_weight 2.0" in result.stderr
    assert "from 0 to 1" in result.stderr
    assert not (tmp_path / "index").exists()
