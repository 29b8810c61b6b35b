"""insightface's file formats written from their spec, for tests (no MXNet, no downloads).

``write_rec``: an indexed RecordIO training set as insightface's packer lays it
out (record 0 = image-key range, images, then one record per identity with its
image range), with dmlc-core's framing (a record whose data holds the magic
number at an aligned position is split into parts). ``write_bin``: a
verification set, a pickle of (list of encoded images, list of issame bools).
"""
import pickle
import struct
from pathlib import Path

MAGIC = 0xCED7230A
HEADER = struct.Struct("<IfQQ")  # flag, label, id, id2


def frame(data: bytes) -> bytes:
    """dmlc-core's WriteRecord: magic, lrecord (cflag << 29 | length), data, zero pad to 4 bytes;
    the data is cut at every 4-byte aligned copy of the magic number (cflag 1, 2, ..., 3)."""
    magic = struct.pack("<I", MAGIC)
    cuts = [i for i in range(0, len(data) // 4 * 4, 4) if data[i:i + 4] == magic]
    pieces, start = [], 0
    for i in cuts:
        pieces.append(data[start:i])
        start = i + 4
    pieces.append(data[start:])
    out = b""
    for k, piece in enumerate(pieces):
        cflag = 0 if len(pieces) == 1 else 1 if k == 0 else 3 if k == len(pieces) - 1 else 2
        out += magic + struct.pack("<I", cflag << 29 | len(piece)) + piece + b"\0" * (-len(piece) % 4)
    return out


def header(label, key: int = 0) -> bytes:
    """IRHeader (+ the float labels when ``label`` is a list: flag = their count)."""
    if isinstance(label, (list, tuple)):
        return HEADER.pack(len(label), 0.0, key, 0) + struct.pack(f"<{len(label)}f", *label)
    return HEADER.pack(0, float(label), key, 0)


def write_rec(records: list, out: Path, *, range_record: bool = True, num_classes=None) -> Path:
    """Writes train.rec, train.idx and property.

    Args:
        records: (label, encoded image bytes) in key order, grouped by label.
        out: the folder (created).
        range_record: insightface's layout (record 0 + identity records); False
            writes images only, keys from 0.
        num_classes: the property file's count (default: distinct labels).

    Returns:
        out.
    """
    out.mkdir(parents=True, exist_ok=True)
    labels = [label for label, _ in records]
    body = []  # (key, data)
    first = 1 if range_record else 0
    body += [(first + k, header(label, first + k) + image) for k, (label, image) in enumerate(records)]
    if range_record:
        ids = sorted(set(labels))
        id_start = first + len(records)
        keys = {}
        for k, y in enumerate(labels):
            keys.setdefault(y, []).append(first + k)
        for n, label in enumerate(ids):
            body.append((id_start + n, header([float(keys[label][0]), float(keys[label][-1] + 1)])))
        body.insert(0, (0, header([float(id_start), float(id_start + len(ids))])))
    parts, idx, size = [], [], 0
    for key, data in body:
        idx.append(f"{key}\t{size}\n")
        parts.append(frame(data))
        size += len(parts[-1])
    (out / "train.rec").write_bytes(b"".join(parts))
    (out / "train.idx").write_text("".join(idx))
    (out / "property").write_text(f"{num_classes or len(set(labels))},112,112\n")
    return out


def tree_records(root: Path) -> list:
    """(label, file bytes) of an identity-folder tree: label = sorted folder index."""
    people = sorted(p for p in root.iterdir() if p.is_dir())
    return [(label, f.read_bytes()) for label, person in enumerate(people) for f in sorted(person.iterdir())]


def write_bin(images: list, issame: list, out: Path) -> Path:
    """insightface's verification .bin: pickle of (images, issame); pair i is images 2i, 2i+1."""
    with open(out, "wb") as f:
        pickle.dump((list(images), [bool(s) for s in issame]), f, protocol=pickle.HIGHEST_PROTOCOL)
    return out
