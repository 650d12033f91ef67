#!/usr/bin/env python3
"""Seeds fuzz/corpus/<target>/ from the test vectors (valid and invalid).

Files are named by the SHA-1 of their content, as libFuzzer does, so
re-running adds nothing twice. After fuzzing, minimise with
`cargo fuzz cmin <target>` (see README.md).
"""
import hashlib
import json
import pathlib
import sys

here = pathlib.Path(__file__).resolve().parent
vectors = here.parent / "vectors"
# Optional argument: write the corpus under another directory.
root = pathlib.Path(sys.argv[1]) if len(sys.argv) > 1 else here

LAYOUT_TARGETS = {
    "binary_publish_batch": "publish_batch",
    "binary_acked_publish_batch": "acked_publish_batch",
    "binary_publish_ack": "publish_ack",
    "binary_event_batch": "event_batch",
    "binary_shared_event_batch": "shared_event_batch",
}
FLAG_LAYOUTS = {0x0001: "publish_batch", 0x0009: "acked_publish_batch", 0x0010: "publish_ack",
                0x0002: "event_batch", 0x0022: "event_batch", 0x0004: "shared_event_batch", 0x0024: "shared_event_batch"}


def put(target, data):
    d = root / "corpus" / target
    d.mkdir(parents=True, exist_ok=True)
    (d / hashlib.sha1(data).hexdigest()).write_bytes(data)


frames = []
for path in sorted(vectors.rglob("*.json")):
    if "schema" in path.parts:
        continue
    for group in json.loads(path.read_text())["testGroups"]:
        for t in group["tests"]:
            frames.append(bytes.fromhex("".join(t["frame"].split())))

for i, f in enumerate(frames):
    put("frame_stream", bytes([i % 256]) + f)
    put("roundtrip", f)
    put("differential", f)
    put("broker_session", f)
    if len(f) >= 12:
        flags = int.from_bytes(f[6:8], "big")
        payload = f[12:]
        if flags == 0:
            put("json_message", payload)
        elif flags in FLAG_LAYOUTS:
            put(FLAG_LAYOUTS[flags], bytes([1 if flags & 0x20 else 0]) + payload)
# A few multi-frame streams.
for i in range(0, len(frames) - 3, 7):
    put("frame_stream", bytes([i % 256]) + b"".join(frames[i:i + 3]))
for d in sorted((root / "corpus").iterdir()):
    print(f"{d.name}: {len(list(d.iterdir()))} files")
