"""Runs every felix-wire vector through felix_codec.py, and drives it over
the codec driver protocol once, as felix-conformance does.

    python3 -m unittest discover -s conformance/testees/python -v
"""

import json
import pathlib
import subprocess
import sys
import unittest

HERE = pathlib.Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

import felix_codec  # noqa: E402

VECTORS = HERE.parent.parent.parent / "vectors"


def cases():
    for path in sorted(VECTORS.rglob("*.json")):
        if "schema" in path.parts:
            continue
        doc = json.loads(path.read_text())
        for group in doc["testGroups"]:
            for test in group["tests"]:
                yield path.relative_to(VECTORS), test


class Vectors(unittest.TestCase):
    def test_every_vector(self):
        counts = {"valid": 0, "invalid": 0, "encoded": 0}
        failures = []
        for path, t in cases():
            data = bytes.fromhex("".join(t["frame"].split()))
            cap = t.get("maxFrameBytes", felix_codec.DEFAULT_MAX_FRAME_BYTES)
            try:
                got = felix_codec.decode(data, cap)
                err = None
            except felix_codec.WireError as e:
                got, err = None, e
            if t["result"] == "valid":
                counts["valid"] += 1
                if err is not None:
                    failures.append(f"{t['id']}: rejected ({err.error_class}: {err})")
                elif got != t["decoded"]:
                    failures.append(f"{t['id']}: decoded {got}, want {t['decoded']}")
                if t["canonical"]:
                    counts["encoded"] += 1
                    enc = felix_codec.encode(t["decoded"])
                    if enc != data:
                        failures.append(f"{t['id']}: encoded {enc.hex()}, want {data.hex()}")
            else:
                counts["invalid"] += 1
                if err is None:
                    failures.append(f"{t['id']}: accepted, want {t['errorClass']}")
                elif err.error_class != t["errorClass"]:
                    failures.append(f"{t['id']}: {err.error_class} ({err}), want {t['errorClass']}")
        print(f"\nvectors: {counts['valid']} valid ({counts['encoded']} re-encoded), {counts['invalid']} invalid, {len(failures)} failures")
        self.assertGreater(counts["valid"] + counts["invalid"], 100)
        self.assertEqual(failures, [])


class DriverProtocol(unittest.TestCase):
    def test_hello_decode_encode_bye(self):
        requests = [
            {"op": "hello", "id": "0", "protocol": "felix-wire-codec-driver", "version": 1},
            {"op": "decode", "id": "1", "frame": "464c5831000100000000000d7b2274797065223a226f6b227d", "maxFrameBytes": 16777216},
            {"op": "decode", "id": "2", "frame": "464c58320001000000000000", "maxFrameBytes": 16777216},
            {"op": "encode", "id": "3", "decoded": {"flags": 0, "kind": "ok", "fields": {}}},
            {"op": "bye", "id": "4"},
        ]
        proc = subprocess.run(
            [sys.executable, str(HERE / "felix_codec.py")],
            input="".join(json.dumps(r) + "\n" for r in requests),
            capture_output=True, text=True, timeout=30, check=True,
        )
        answers = [json.loads(line) for line in proc.stdout.splitlines()]
        self.assertEqual([a["id"] for a in answers], ["0", "1", "2", "3", "4"])
        self.assertEqual(answers[0]["result"], "ok")
        self.assertEqual(answers[1]["decoded"], {"flags": 0, "kind": "ok", "fields": {}})
        self.assertEqual((answers[2]["result"], answers[2]["errorClass"]), ("error", "bad_magic"))
        self.assertEqual(answers[3]["frame"], "464c5831000100000000000d7b2274797065223a226f6b227d")


if __name__ == "__main__":
    unittest.main()
