"""The object store behaves the same on a local folder and on real S3 (SeaweedFS)."""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
import textwrap

import pytest

from nccid.warehouse.storage import StorageError, Warehouse


def test_write_read_list_exists_size_delete(backend):
    data = os.urandom(10_000)
    digest = backend.write_atomic("training/xray/P/1.2/1.2.3/1.2.3.4.dcm", data)
    backend.write_atomic("training/data/P/positive-RTEST.json", b"{}")
    backend.write_atomic("validation/ct/Q/9/9.1/9.1.1.dcm", b"ct")

    assert digest == hashlib.sha256(data).hexdigest()
    assert backend.read("training/xray/P/1.2/1.2.3/1.2.3.4.dcm") == data
    with backend.open("training/xray/P/1.2/1.2.3/1.2.3.4.dcm") as handle:
        assert handle.read() == data
    assert backend.exists("training/xray/P/1.2/1.2.3/1.2.3.4.dcm")
    assert not backend.exists("training/xray/P/1.2/1.2.3/missing.dcm")
    assert backend.size("training/xray/P/1.2/1.2.3/1.2.3.4.dcm") == 10_000
    assert backend.sha256("training/xray/P/1.2/1.2.3/1.2.3.4.dcm") == digest
    assert backend.list("training") == [
        "training/data/P/positive-RTEST.json", "training/xray/P/1.2/1.2.3/1.2.3.4.dcm"]
    assert backend.list() == sorted(backend.list("training") + ["validation/ct/Q/9/9.1/9.1.1.dcm"])
    assert backend.list("nothing-here") == []

    backend.delete("validation/ct/Q/9/9.1/9.1.1.dcm")
    assert not backend.exists("validation/ct/Q/9/9.1/9.1.1.dcm")
    with pytest.raises(FileNotFoundError):
        backend.read("validation/ct/Q/9/9.1/9.1.1.dcm")


def test_overwrite_replaces_whole_object(backend):
    backend.write_atomic("a/b.bin", b"x" * 5000)
    backend.write_atomic("a/b.bin", b"short")
    assert backend.read("a/b.bin") == b"short"
    assert backend.list("a") == ["a/b.bin"]


def test_big_file_streams_with_checksum(backend, tmp_path):
    source = tmp_path / "big.bin"
    block = os.urandom(1 << 20)
    with open(source, "wb") as handle:
        for _ in range(12):  # 12 MiB: above s3fs's multipart threshold
            handle.write(block)
    expected = hashlib.sha256(source.read_bytes()).hexdigest()
    assert backend.write_file_atomic("big/file.bin", source) == expected
    assert backend.size("big/file.bin") == 12 << 20
    assert backend.sha256("big/file.bin") == expected


@pytest.mark.parametrize("key", ["", "/abs", "a/../b", "a//b", ".tmp-x", "a/.tmp-y", "a/./b"])
def test_keys_that_could_escape_or_hide_are_refused(tmp_path, key):
    with pytest.raises(StorageError, match="invalid warehouse key"):
        Warehouse(str(tmp_path)).write_atomic(key, b"x")


def test_unsupported_scheme_is_a_clear_error():
    with pytest.raises(StorageError, match="unsupported warehouse URL scheme 'ftp'"):
        Warehouse("ftp://example/x")


def test_error_before_rename_leaves_no_object_and_no_temporary(tmp_path, monkeypatch):
    warehouse = Warehouse(str(tmp_path / "wh"))
    warehouse.write_atomic("s/old.dcm", b"old")

    def crash(*_args):
        raise OSError("disk vanished")

    monkeypatch.setattr(os, "replace", crash)
    with pytest.raises(OSError, match="disk vanished"):
        warehouse.write_atomic("s/new.dcm", b"new" * 1000)
    with pytest.raises(OSError):
        warehouse.write_atomic("s/old.dcm", b"replacement")
    monkeypatch.undo()

    assert not warehouse.exists("s/new.dcm")
    assert warehouse.read("s/old.dcm") == b"old"  # the old object is untouched
    assert sorted(os.listdir(tmp_path / "wh" / "s")) == ["old.dcm"]


def test_process_killed_before_rename_leaves_no_visible_object(tmp_path):
    """A real crash (the process dies between write and rename): readers see nothing."""
    root = tmp_path / "wh"
    script = textwrap.dedent(f"""
        import os
        from nccid.warehouse.storage import Warehouse
        os.replace = lambda *a: os._exit(9)   # die right before the rename
        Warehouse({str(root)!r}).write_atomic("s/half.dcm", b"partial" * 1000)
    """)
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, timeout=60)
    assert result.returncode == 9

    warehouse = Warehouse(str(root))
    assert not warehouse.exists("s/half.dcm")
    assert warehouse.list() == []
    leftovers = os.listdir(root / "s")
    assert len(leftovers) == 1 and leftovers[0].startswith(".tmp-")  # the crash's temporary
    # A retry stores the object whole.
    warehouse.write_atomic("s/half.dcm", b"whole")
    assert warehouse.read("s/half.dcm") == b"whole"
    assert warehouse.list() == ["s/half.dcm"]


@pytest.mark.s3
def test_s3_refuses_wrong_credentials(s3_server):
    bucket = s3_server.make_bucket("auth")
    good = Warehouse(f"s3://{bucket}", s3_server.options)
    good.write_atomic("k.bin", b"secret-free")
    bad = Warehouse(f"s3://{bucket}", {**s3_server.options, "secret": "not-the-secret"})
    with pytest.raises((PermissionError, OSError)):
        bad.read("k.bin")


@pytest.mark.s3
def test_s3_writes_are_objects_in_the_bucket(s3_server):
    bucket = s3_server.make_bucket("raw")
    warehouse = Warehouse(f"s3://{bucket}/pre/fix", s3_server.options)
    warehouse.write_atomic("training/xray/P/1/1.1/1.1.1.dcm", b"dicom")
    # Seen through an independent client, under the URL's prefix.
    assert s3_server.filesystem().cat_file(f"{bucket}/pre/fix/training/xray/P/1/1.1/1.1.1.dcm") == b"dicom"


def test_delete_many_removes_the_named_objects_and_ignores_missing_ones(backend):
    for name in ("a", "b", "c"):
        backend.write_atomic(f"training/data/NCCID-TEST/{name}.json", b"{}")
    deleted = backend.delete_many(["training/data/NCCID-TEST/a.json", "training/data/NCCID-TEST/b.json",
                                   "training/data/NCCID-TEST/never-written.json"])
    assert deleted == (2 if backend.is_local else 3)  # S3 does not say a key was missing
    assert backend.list("training/data/NCCID-TEST") == ["training/data/NCCID-TEST/c.json"]
    assert backend.delete_many([]) == 0
