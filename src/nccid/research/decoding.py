"""Pixel decoding, with GDCM kept out of the calling process.

GDCM (``python-gdcm``) is the only decoder here for JPEG Lossless, the usual compression of
chest X-rays, and JPEG-LS, but it aborts the whole process (SIGABRT, no Python exception) on
some malformed streams, and a site chooses what it sends: one planted image would kill a
portal worker with every request on its threads, a DataLoader or an export. So GDCM only ever
runs in a child process (one a process, started on first need, kept for the next image), and
a child that dies is a ``PixelDecodeError``; the next image starts a new one. Every other
decoder (Pillow, pydicom's RLE) runs in the calling process as before.

The child is a plain ``subprocess`` speaking length-prefixed pickles on its stdin/stdout, not
a ``multiprocessing`` pool: a DataLoader worker is a daemonic process, and those may not start
``multiprocessing`` children.
"""

from __future__ import annotations

import atexit
import os
import pickle
import struct
import subprocess
import sys
import threading
from pathlib import Path
from typing import Any, BinaryIO

import numpy as np
import pydicom
from pydicom.pixels import get_decoder

ISOLATED_PLUGINS = ("gdcm",)  # decoders that may abort the process on a hostile stream
# What the child needs to decode: the Image Pixel module's group and Pixel Data's.
_PIXEL_GROUPS = (0x0028, 0x7FE0)
_LENGTH = struct.Struct(">Q")
UNDECODABLE = "the image's compressed pixel data could not be decoded"


class PixelDecodeError(RuntimeError):
    """The pixel data could not be decoded (the isolated decoder failed or died)."""


def decode_pixels(ds: pydicom.Dataset) -> np.ndarray:
    """``ds.pixel_array``, with any isolated decoder (GDCM) run in the child process."""
    syntax = getattr(getattr(ds, "file_meta", None), "TransferSyntaxUID", None)
    if syntax is None or not syntax.is_compressed:
        return ds.pixel_array
    try:
        plugins = list(get_decoder(syntax).available_plugins)
    except NotImplementedError:  # no decoder for this syntax at all: pydicom says so
        return ds.pixel_array
    here = [name for name in plugins if name not in ISOLATED_PLUGINS]
    if len(here) == len(plugins):
        return ds.pixel_array  # nothing isolated (or nothing at all: pydicom says what to install)
    for name in here:
        try:
            ds.pixel_array_options(decoding_plugin=name)
            return ds.pixel_array
        except Exception:  # noqa: BLE001, S112 - the isolated decoder may still read it
            continue
    return _CHILD.decode(_pixel_part(ds))


def _pixel_part(ds: pydicom.Dataset) -> pydicom.Dataset:
    """The elements decoding reads, so the child gets no names, dates or numbers."""
    part = pydicom.Dataset()
    for element in ds:
        if element.tag.group in _PIXEL_GROUPS:
            part.add(element)
    part.file_meta = pydicom.dataset.FileMetaDataset()
    part.file_meta.TransferSyntaxUID = ds.file_meta.TransferSyntaxUID
    return part


class _Child:
    """The decoding child of this process: started on first need, replaced once it dies,
    ended at exit. A forked copy (a DataLoader worker) starts its own rather than share the
    parent's pipes."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._process: subprocess.Popen | None = None
        self._owner = 0

    def decode(self, part: pydicom.Dataset) -> np.ndarray:
        request = pickle.dumps(part, protocol=pickle.HIGHEST_PROTOCOL)
        with self._lock:
            process = self._running()
            try:
                _send(process.stdin, request)
                answer = _receive(process.stdout)
            except (OSError, EOFError, ValueError):
                self._stop()
                raise PixelDecodeError(UNDECODABLE) from None
        ok, value = pickle.loads(answer)
        if not ok:
            raise PixelDecodeError(f"{UNDECODABLE} ({value})")
        return value

    def _running(self) -> subprocess.Popen:
        if self._owner != os.getpid():
            self._process, self._owner = None, os.getpid()  # forked: the parent's is not ours
        if self._process is None or self._process.poll() is not None:
            self._process = _start()
        return self._process

    def _stop(self) -> None:
        process, self._process = self._process, None
        if process is None or self._owner != os.getpid():
            return
        for stream in (process.stdin, process.stdout):
            try:
                stream.close()
            except OSError:
                pass
        try:
            process.wait(timeout=5)  # reads EOF on its stdin and ends
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()

    def close(self) -> None:
        with self._lock:
            self._stop()


def _start() -> subprocess.Popen:
    package_root = str(Path(__file__).resolve().parents[2])  # where ``nccid`` is importable
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(
        p for p in (package_root, os.environ.get("PYTHONPATH", "")) if p))
    return subprocess.Popen([sys.executable, "-m", "nccid.research.decoding"],
                            stdin=subprocess.PIPE, stdout=subprocess.PIPE, env=env,
                            close_fds=True)


def _send(stream: Any, payload: bytes) -> None:
    stream.write(_LENGTH.pack(len(payload)))
    stream.write(payload)
    stream.flush()


def _receive(stream: BinaryIO) -> bytes:
    head = stream.read(_LENGTH.size)
    if len(head) < _LENGTH.size:
        raise EOFError("the decoding child ended")
    (size,) = _LENGTH.unpack(head)
    payload = stream.read(size)
    if len(payload) < size:
        raise EOFError("the decoding child ended")
    return payload


def _serve(requests: BinaryIO, answers: BinaryIO) -> None:
    """The child: decode each dataset sent until its stdin ends."""
    while True:
        try:
            part = pickle.loads(_receive(requests))
        except EOFError:
            return
        try:
            answer: tuple[bool, Any] = (True, part.pixel_array)
        except Exception as exc:  # noqa: BLE001 - said back to the parent as its error
            answer = (False, type(exc).__name__)
        _send(answers, pickle.dumps(answer, protocol=pickle.HIGHEST_PROTOCOL))


_CHILD = _Child()
atexit.register(_CHILD.close)

if __name__ == "__main__":
    # Answers go on a copy of stdout; anything a decoder prints goes to stderr instead.
    answers = os.fdopen(os.dup(1), "wb")
    os.dup2(2, 1)
    _serve(sys.stdin.buffer, answers)
