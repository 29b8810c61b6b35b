"""insightface training sets (MXNet indexed RecordIO) read directly, without MXNet.

MS1M-ArcFace, Glint360K and WebFace ship as a folder of three files:

    train.rec   records, back to back: magic lrecord data pad
    train.idx   one line per record: "key<TAB>byte offset of its first part"
    property    "num_classes,height,width" (not needed: classes come from the headers)

The framing (dmlc-core RecordIO): ``magic`` is the uint32 0xced7230a;
``lrecord`` a uint32 holding a 3-bit continuation flag (``cflag``, top bits)
and a 29-bit length; the data is padded with zeros to 4 bytes. A record whose
data contains the magic number at a 4-byte aligned position is written in
parts: cflag 1 (first), 2 (middle), 3 (last), the magic itself left out; a
reader joins the parts with the magic between them. cflag 0 is a whole record.

The data of a record starts with the image header ``IRHeader`` (struct
``<IfQQ``: flag uint32, label float32, id uint64, id2 uint64). When flag > 0,
``flag`` float32 labels follow the header and replace ``label``; the encoded
image (JPEG or PNG) comes after. insightface's packer makes record 0 a header
only, with labels (first identity record, end): the images are keys 1 ..
first-1 and the identity records after them hold each identity's image range.
Without such a record 0, every key of train.idx is an image. An image's class
is its header label (the first label when there are several).

``scan_recordio`` reads the index and, in one vectorised pass over a memory
map, every image's framing, header and the first and last bytes of its image,
so broken records are found (and counted) before training, as broken files are.

Example (a set of two images without record 0's ranges: a bundled JPEG of class 7, and one cut short):
    >>> import shutil, tempfile
    >>> folder, jpeg = tempfile.mkdtemp(), open("data/lfw_demo/heldout/Aaron_Tippin/Aaron_Tippin_0001.jpg", "rb").read()
    >>> def frame(data):   # a whole record (cflag 0): magic, lrecord, data, zero pad to 4 bytes
    ...     return struct.pack("<II", MAGIC, len(data)) + data + bytes(-len(data) % 4)
    >>> records = [frame(IR_HEADER.pack(0, 7.0, 0, 0) + jpeg), frame(IR_HEADER.pack(0, 3.0, 1, 0) + jpeg[:500])]
    >>> with open(os.path.join(folder, REC), "wb") as f, open(os.path.join(folder, IDX), "w") as idx:
    ...     _ = f.write(b"".join(records)), idx.write(f"0\\t0\\n1\\t{len(records[0])}\\n")
    >>> rs = scan_recordio(folder)
    >>> rs.labels.tolist(), [(os.path.basename(where), why.split(" (")[0]) for where, why in rs.skipped]
    ([7], [('train.rec#1', 'broken image')])
    >>> rs.image_bytes(rs.offsets[0]) == jpeg
    True
    >>> shutil.rmtree(folder)
"""
from __future__ import annotations

import dataclasses
import io
import os
import struct

import numpy as np
from PIL import Image

from mfn_tf2.images import IMAGE_ENDS, ImageError
from mfn_tf2.folders import DataError

MAGIC = 0xCED7230A
REC, IDX = "train.rec", "train.idx"
IR_HEADER = struct.Struct("<IfQQ")  # flag, label, id, id2
_LENGTH_BITS = 29
_FRAME = 8  # magic + lrecord
# Image signatures (first bytes) and the bytes a complete file ends with.
_JPEG, _PNG = b"\xff\xd8\xff", b"\x89PNG"
_ENDS = {_JPEG: IMAGE_ENDS["JPEG"], _PNG: IMAGE_ENDS["PNG"]}


class RecordError(ImageError):
    """One record that cannot be read; names the file and the record's key."""


def is_recordio_directory(path: str) -> bool:
    """True when ``path`` is a folder holding train.rec (an insightface data set)."""
    return os.path.isfile(os.path.join(path, REC))


def _split_lrecord(value):
    """(cflag, length) of lrecord value(s) (ints or uint32 arrays)."""
    return value >> _LENGTH_BITS, value & ((1 << _LENGTH_BITS) - 1)


def read_index(folder: str) -> tuple[np.ndarray, np.ndarray]:
    """(keys, offsets) of train.idx, both int64, in file order.

    Raises:
        DataError: a missing index or a line that is not "key offset".
    """
    path = os.path.join(folder, IDX)
    if not os.path.isfile(path):
        raise DataError(f"{path}: missing; an insightface data set needs train.rec and its "
                        "train.idx (key<TAB>offset lines)")
    keys, offsets = [], []
    with open(path, encoding="ascii", errors="replace") as f:
        for no, line in enumerate(f, 1):
            fields = line.split()
            if not fields:
                continue
            if len(fields) != 2 or not all(v.isdigit() for v in fields):
                raise DataError(f"{path}:{no}: expected 'key<TAB>offset', got {line.strip()[:40]!r}")
            keys.append(int(fields[0]))
            offsets.append(int(fields[1]))
    return np.array(keys, np.int64), np.array(offsets, np.int64)


def read_record(f, offset: int, name: str = REC) -> bytes:
    """The data of the record starting at ``offset`` of the open binary file ``f``.

    Parts of a multi-part record are joined with the magic number between them.

    Raises:
        RecordError: a bad magic number or flag, or a record cut short.
    """
    parts, expect_first = [], True
    while True:
        frame = os.pread(f.fileno(), _FRAME, offset)
        if len(frame) < _FRAME:
            raise RecordError(f"{name} at byte {offset}: cut short (file ends inside the record)")
        magic, value = struct.unpack("<II", frame)
        cflag, length = _split_lrecord(value)
        if magic != MAGIC:
            raise RecordError(f"{name} at byte {offset}: bad magic number {magic:#010x}")
        if (cflag in (0, 1)) != expect_first or cflag > 3:
            raise RecordError(f"{name} at byte {offset}: part flag {cflag} out of order")
        data = os.pread(f.fileno(), length, offset + _FRAME)
        if len(data) < length:
            raise RecordError(f"{name} at byte {offset}: cut short (file ends inside the record)")
        parts.append(data)
        if cflag in (0, 3):
            return struct.pack("<I", MAGIC).join(parts)
        offset += _FRAME + (length + 3) // 4 * 4
        expect_first = False


def unpack(record: bytes) -> tuple[tuple, np.ndarray, bytes]:
    """(IRHeader tuple, float32 labels, image bytes) of a record's data.

    Example:
        >>> data = IR_HEADER.pack(0, 7.0, 3, 0) + b"jpeg"
        >>> header, labels, image = unpack(data)
        >>> header[0], labels.tolist(), image
        (0, [7.0], b'jpeg')
    """
    if len(record) < IR_HEADER.size:
        raise RecordError(f"record of {len(record)} bytes is shorter than its image header")
    header = IR_HEADER.unpack_from(record)
    flag = header[0]
    start = IR_HEADER.size + 4 * flag
    if len(record) < start:
        raise RecordError(f"record header announces {flag} labels past the record's end")
    labels = (np.frombuffer(record, np.float32, flag, IR_HEADER.size) if flag
              else np.array([header[1]], np.float32))
    return header, labels, record[start:]


def _gather(mm: np.ndarray, starts: np.ndarray, width: int) -> np.ndarray:
    """(N, width) uint8: the bytes at each start (zeros past the file's end)."""
    idx = starts[:, None] + np.arange(width)
    inside = (idx >= 0) & (idx < mm.size)
    out = np.zeros(idx.shape, np.uint8)
    out[inside] = mm[idx[inside]]
    return out


def _image_checks(mm: np.ndarray, offsets: np.ndarray):
    """Vectorised framing/header/image checks of the records at ``offsets``.

    Returns:
        (labels float32 (N,), reasons list[str] ("" when fine), multi-part mask (N,));
        multi-part records are not checked here (their parts must be joined first).
    """
    head = _gather(mm, offsets, _FRAME + IR_HEADER.size + 4)
    words = head[:, :36].copy().view("<u4")  # (N, 9): magic, lrecord, flag, label, id..., label[0]
    cflag, length = _split_lrecord(words[:, 1].astype(np.int64))
    flag = words[:, 2].astype(np.int64)
    label = np.where(flag > 0, head[:, 32:36].copy().view("<f4")[:, 0],
                     head[:, 12:16].copy().view("<f4")[:, 0])
    image_start = offsets + _FRAME + IR_HEADER.size + 4 * np.minimum(flag, 1 << 20)
    end = offsets + _FRAME + length
    signature, tail = _gather(mm, image_start, 4), _gather(mm, end - 8, 8)
    is_jpeg = (signature[:, :3] == np.frombuffer(_JPEG, np.uint8)).all(1)
    is_png = (signature == np.frombuffer(_PNG, np.uint8)).all(1)
    ends = np.where(is_jpeg, (tail[:, 6:] == np.frombuffer(_ENDS[_JPEG], np.uint8)).all(1),
                    (tail == np.frombuffer(_ENDS[_PNG], np.uint8)).all(1))
    single = cflag == 0
    # The first true condition names the problem.
    problems = [(words[:, 0] != MAGIC, "bad magic number"),
                (~np.isin(cflag, (0, 1)), "a record continues here instead of starting"),
                (single & (end > mm.size), "cut short (file ends inside the record)"),
                (single & (end <= image_start), "no image after the header"),
                (single & ~(is_jpeg | is_png), "not a JPEG or PNG image")]
    reasons = [""] * len(offsets)
    seen = np.zeros(len(offsets), bool)
    for bad, why in problems:
        for k in np.flatnonzero(bad & ~seen):
            reasons[k] = why
        seen |= bad
    # A complete image ends with its format's end marker; PIL decides about the rest.
    for k in np.flatnonzero(single & ~seen & ~ends):
        reasons[k] = _pil_check(bytes(mm[image_start[k]:end[k]]))
    return label, reasons, cflag == 1


def _checks_in_chunks(mm: np.ndarray, offsets: np.ndarray, chunk: int = 1 << 16):
    """``_image_checks`` a chunk at a time (bounded memory on millions of records)."""
    parts = [_image_checks(mm, offsets[i:i + chunk]) for i in range(0, len(offsets), chunk)]
    if not parts:
        return np.zeros(0, np.float32), [], np.zeros(0, bool)
    return (np.concatenate([p[0] for p in parts]), [r for p in parts for r in p[1]],
            np.concatenate([p[2] for p in parts]))


def _pil_check(image: bytes) -> str:
    """"" when PIL decodes ``image`` whole, else why not (a truncated image)."""
    try:
        with Image.open(io.BytesIO(image)) as img:
            img.load()
        return ""
    except (OSError, SyntaxError, ValueError) as err:
        return f"broken image ({err})"


@dataclasses.dataclass(eq=False)
class RecordSet:
    """The images of an insightface RecordIO folder, after every check.

    Attributes:
        folder: the data set folder.
        keys, offsets: (N,) int64 key and byte offset of each usable image record.
        labels: (N,) int64 class label of each (the header's label).
        skipped: (f"{train.rec}#key", reason) of every record left out.
    """
    folder: str
    keys: np.ndarray
    offsets: np.ndarray
    labels: np.ndarray
    skipped: list

    @property
    def rec_path(self) -> str:
        return os.path.join(self.folder, REC)

    def image_bytes(self, offset: int) -> bytes:
        """The encoded image of the record at ``offset`` (opens the file per call: thread-safe)."""
        with open(self.rec_path, "rb") as f:
            return unpack(read_record(f, int(offset), self.rec_path))[2]

    def identities(self) -> dict[str, list[tuple[int, bool]]]:
        """{label as zero-padded text: [(offset, False), ...]} in key order.

        The layout of ``folders.scan_folder`` (an offset where a path was; no record
        needs the python decoder). The padding makes name order label order, so
        with every identity kept the kit's label i is the data set's label i.
        """
        width = len(str(int(self.labels.max()))) if len(self.labels) else 1
        found = {}
        for offset, label in zip(self.offsets.tolist(), self.labels.tolist()):
            found.setdefault(f"{label:0{width}d}", []).append((offset, False))
        return found


def _image_keys(folder: str, keys: np.ndarray, offsets: np.ndarray):
    """(image keys, their offsets, keys missing from the index) per record 0."""
    position = dict(zip(keys.tolist(), offsets.tolist()))
    if 0 not in position:
        return keys, offsets, []
    with open(os.path.join(folder, REC), "rb") as f:
        try:
            header, labels, _ = unpack(read_record(f, position[0], os.path.join(folder, REC)))
        except RecordError as err:
            raise DataError(f"{os.path.join(folder, REC)} record 0: {err}") from None
    if header[0] == 0:  # record 0 is an image: no range record
        return keys, offsets, []
    wanted = range(1, int(labels[0]))
    found = [k for k in wanted if k in position]
    missing = [k for k in wanted if k not in position]
    return (np.array(found, np.int64), np.array([position[k] for k in found], np.int64), missing)


def scan_recordio(folder: str) -> RecordSet:
    """Reads train.idx and checks every image record of train.rec.

    Args:
        folder: holds train.rec and train.idx.

    Returns:
        A RecordSet; broken records (bad framing, header or image, keys
        missing from train.idx) are left out and listed in ``skipped``.

    Raises:
        DataError: missing or malformed train.idx, unreadable record 0.
    """
    rec = os.path.join(folder, REC)
    keys, offsets = read_index(folder)
    keys, offsets, missing = _image_keys(folder, keys, offsets)
    skipped = [(f"{rec}#{k}", "key not in train.idx") for k in missing]
    mm = np.memmap(rec, np.uint8, mode="r") if os.path.getsize(rec) else np.zeros(0, np.uint8)
    label, reasons, multi = _checks_in_chunks(mm, offsets)
    with open(rec, "rb") as f:
        for k in np.flatnonzero(multi):  # rare: read the whole record
            try:
                _, labels, image = unpack(read_record(f, int(offsets[k]), rec))
                label[k], reasons[k] = labels[0], _pil_check(image)
            except RecordError as err:
                reasons[k] = str(err).split(": ", 1)[-1]
    ok = np.array([not r for r in reasons], bool)
    skipped += [(f"{rec}#{key}", why) for key, why in zip(keys.tolist(), reasons) if why]
    return RecordSet(folder, keys[ok], offsets[ok], label[ok].astype(np.int64), skipped)


__all__ = ["MAGIC", "REC", "IDX", "IR_HEADER", "RecordError", "RecordSet",
           "is_recordio_directory", "read_index", "read_record", "unpack",
           "scan_recordio"]
