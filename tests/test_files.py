"""The one atomic writer: whole or nothing, unique temporary names, the permission bits open() gives."""

from __future__ import annotations

import os
import threading

import pytest

import xaiopt.files as files
from xaiopt.files import write_atomic


def test_text_and_bytes_are_written_whole_with_the_umask_bits(tmp_path):
    old = os.umask(0o027)
    try:
        p = write_atomic(tmp_path / "a.txt", "héllo\n")
        assert p.read_bytes() == "héllo\n".encode("utf-8")
        assert p.stat().st_mode & 0o777 == 0o640
        q = write_atomic(tmp_path / "b.bin", b"\x00\x01", mode=0o644, durable=True)
        assert q.read_bytes() == b"\x00\x01" and q.stat().st_mode & 0o777 == 0o644
    finally:
        os.umask(old)
    assert sorted(x.name for x in tmp_path.iterdir()) == ["a.txt", "b.bin"]


def test_a_failed_write_leaves_the_old_file_and_no_temporary(tmp_path, monkeypatch):
    target = tmp_path / "t.json"
    target.write_text("old")

    def broken_replace(src, dst):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(files.os, "replace", broken_replace)
    with pytest.raises(OSError, match="No space left"):
        write_atomic(target, "new")
    assert target.read_text() == "old" and [x.name for x in tmp_path.iterdir()] == ["t.json"]
    monkeypatch.undo()
    with pytest.raises(FileNotFoundError):
        write_atomic(tmp_path / "gone" / "t.json", "x")  # a removed directory: an OSError, nothing made
    assert not (tmp_path / "gone").exists()


def test_concurrent_writers_of_one_path_never_mix_or_collide(tmp_path):
    target = tmp_path / "index.html"
    payloads = [bytes([65 + k]) * (1 << 20) for k in range(8)]
    errors: list[BaseException] = []
    start = threading.Barrier(len(payloads))

    def writer(data: bytes) -> None:
        start.wait()
        try:
            for _ in range(5):
                write_atomic(target, data)
        except BaseException as err:  # a shared temporary name would lose its file to another writer
            errors.append(err)

    threads = [threading.Thread(target=writer, args=(d,)) for d in payloads]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    assert target.read_bytes() in payloads  # one writer's bytes, whole
    assert [x.name for x in tmp_path.iterdir()] == ["index.html"]
