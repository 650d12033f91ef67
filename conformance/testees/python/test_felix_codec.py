"""Runs every felix-wire vector through felix_codec.py, directly and over the
codec driver protocol (as felix-conformance does), plus a few edge cases the
vectors do not pin down.

    python3 -m unittest discover -s conformance/testees/python -v
"""

import collections
import json
import pathlib
import subprocess
import sys
import unittest

HERE = pathlib.Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

import felix_codec  # noqa: E402

VECTORS = HERE.parent.parent.parent / "vectors"
CODEC = HERE / "felix_codec.py"


def vector_files():
    """Every vector file: *.json under vectors/ except schema/."""
    return [p for p in sorted(VECTORS.rglob("*.json")) if "schema" not in p.relative_to(VECTORS).parts]


def cases():
    """(file relative to vectors/, test) for every test of every vector file."""
    for path in vector_files():
        doc = json.loads(path.read_text(encoding="utf-8"))
        if doc.get("formatVersion") != 1:
            raise AssertionError("%s: unknown formatVersion %r" % (path, doc.get("formatVersion")))
        for group in doc["testGroups"]:
            for test in group["tests"]:
                yield str(path.relative_to(VECTORS)), test


def frame_of(test):
    return bytes.fromhex("".join(test["frame"].split()))


def cap_of(test):
    return test.get("maxFrameBytes", felix_codec.DEFAULT_MAX_FRAME_BYTES)


def encode_expectation(test):
    """The bytes encoding `decoded` must give, or None (decode only)."""
    if test["result"] != "valid":
        return None
    if "encoded" in test:
        return bytes.fromhex("".join(test["encoded"].split()))
    return frame_of(test) if test.get("canonical") else None


def check(test, decoded_or_error, encoded=None):
    """Judges one case as vectors/README.md says; returns a list of problems.

    `decoded_or_error` is the neutral form or an error class string;
    `encoded` the frame bytes encoded from `decoded` (canonical cases, and
    cases that name the bytes an encoder must write in `encoded`)."""
    problems = []
    if test["result"] == "valid":
        if isinstance(decoded_or_error, str):
            problems.append("rejected with %s" % decoded_or_error)
        elif decoded_or_error != test["decoded"]:
            problems.append("decoded %s, want %s" % (json.dumps(decoded_or_error), json.dumps(test["decoded"])))
        want = encode_expectation(test)
        if want is not None and encoded != want:
            shown = encoded.hex() if isinstance(encoded, bytes) else repr(encoded)
            problems.append("encoded %s, want %s" % (shown, want.hex()))
    else:
        if not isinstance(decoded_or_error, str):
            problems.append("accepted as %s, want %s" % (json.dumps(decoded_or_error), test["errorClass"]))
        elif decoded_or_error != test["errorClass"]:
            problems.append("%s, want %s" % (decoded_or_error, test["errorClass"]))
    return problems


class Vectors(unittest.TestCase):
    def test_every_vector(self):
        tally = collections.OrderedDict()
        total = 0
        for path, t in cases():
            total += 1
            row = tally.setdefault(path, {"cases": 0, "passed": 0, "encodes": 0, "encodes_passed": 0})
            row["cases"] += 1
            with self.subTest(id=t["id"]):
                try:
                    got = felix_codec.decode(frame_of(t), cap_of(t))
                except felix_codec.WireError as e:
                    got = e.error_class
                encoded = None
                if encode_expectation(t) is not None:
                    row["encodes"] += 1
                    try:
                        encoded = felix_codec.encode(t["decoded"])
                    except felix_codec.WireError as e:
                        encoded = "error " + e.error_class
                    if encoded == encode_expectation(t):
                        row["encodes_passed"] += 1
                problems = check(t, got, encoded)
                if not [p for p in problems if not p.startswith("encoded")]:
                    row["passed"] += 1
                self.assertEqual(problems, [], t["id"])
        sys.stderr.write("\n")
        for path, row in tally.items():
            sys.stderr.write("  %-50s %3d/%-3d decode  %3d/%-3d encode\n" % (
                path, row["passed"], row["cases"], row["encodes_passed"], row["encodes"]))
        self.assertGreater(total, 100, "vectors not found under %s" % VECTORS)


class DriverProtocol(unittest.TestCase):
    def exchange(self, requests):
        proc = subprocess.run(
            [sys.executable, str(CODEC)],
            input="".join(json.dumps(r) + "\n" for r in requests).encode("utf-8"),
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, timeout=120,
        )
        self.assertEqual(proc.returncode, 0, proc.stderr.decode("utf-8", "replace"))
        answers = [json.loads(line) for line in proc.stdout.decode("ascii").splitlines()]
        self.assertEqual([a["id"] for a in answers], [r["id"] for r in requests])
        return answers

    def test_hello_decode_encode_bye(self):
        """The exchange of docs/conformance.md."""
        a = self.exchange([
            {"op": "hello", "id": "0", "protocol": "felix-wire-codec-driver", "version": 1},
            {"op": "decode", "id": "1", "frame": "464c5831000100000000000d7b2274797065223a226f6b227d",
             "maxFrameBytes": 16777216},
            {"op": "decode", "id": "2", "frame": "464c58320001000000000000", "maxFrameBytes": 16777216},
            {"op": "encode", "id": "3", "decoded": {"flags": 0, "kind": "ok", "fields": {}}},
            {"op": "frobnicate", "id": "4"},
            {"op": "bye", "id": "5"},
        ])
        self.assertEqual(a[0], {"id": "0", "result": "ok", "name": "felix-codec-py", "version": felix_codec.IMPL_VERSION})
        self.assertEqual(a[1], {"id": "1", "result": "ok", "decoded": {"flags": 0, "kind": "ok", "fields": {}}})
        self.assertEqual((a[2]["result"], a[2]["errorClass"]), ("error", "bad_magic"))
        self.assertEqual(a[3], {"id": "3", "result": "ok", "frame": "464c5831000100000000000d7b2274797065223a226f6b227d"})
        self.assertEqual(a[4]["result"], "unsupported")
        self.assertEqual(a[5], {"id": "5", "result": "ok"})

    def test_every_vector_over_the_driver(self):
        """What `felix-conformance codec` does, in one process."""
        requests = [{"op": "hello", "id": "h", "protocol": "felix-wire-codec-driver", "version": 1}]
        tests = []
        for _, t in cases():
            n = len(tests)
            tests.append(t)
            req = {"op": "decode", "id": "d%d" % n, "frame": frame_of(t).hex()}
            if "maxFrameBytes" in t:
                req["maxFrameBytes"] = t["maxFrameBytes"]
            else:
                req["maxFrameBytes"] = felix_codec.DEFAULT_MAX_FRAME_BYTES
            requests.append(req)
            if encode_expectation(t) is not None:
                requests.append({"op": "encode", "id": "e%d" % n, "decoded": t["decoded"]})
        requests.append({"op": "bye", "id": "b"})
        answers = {a["id"]: a for a in self.exchange(requests)}
        for n, t in enumerate(tests):
            with self.subTest(id=t["id"]):
                d = answers["d%d" % n]
                got = d["decoded"] if d["result"] == "ok" else d.get("errorClass", d["result"])
                encoded = None
                if "e%d" % n in answers:
                    e = answers["e%d" % n]
                    encoded = bytes.fromhex(e["frame"]) if e["result"] == "ok" else e["result"]
                self.assertEqual(check(t, got, encoded), [])


def frame(flags, payload):
    if isinstance(payload, str):
        payload = payload.encode("utf-8")
    return b"FLX1" + (1).to_bytes(2, "big") + flags.to_bytes(2, "big") + len(payload).to_bytes(4, "big") + payload


class EdgeCases(unittest.TestCase):
    """Inputs the vectors do not cover (yet); the answers follow the docs."""

    def error_of(self, data, cap=felix_codec.DEFAULT_MAX_FRAME_BYTES):
        with self.assertRaises(felix_codec.WireError) as cm:
            felix_codec.decode(data, cap)
        return cm.exception.error_class

    def test_json_strictness(self):
        bad = {
            '{"type":"publish_ok","request_id":\u0661}': "malformed_json",  # Arabic-Indic digit one
            '{"type":"publish_ok","request_id":NaN}': "malformed_json",
            '{"type":"publish_ok","request_id":Infinity}': "malformed_json",
            '{"type":"publish_ok","request_id":-}': "malformed_json",
            '{"type":"publish_ok","request_id":+1}': "malformed_json",
            '{"type":"publish_ok","request_id":.5}': "malformed_json",
            '{"type":"publish_ok","request_id":1.}': "malformed_json",
            '{"type":"error","message":"\\ud800\\u0041"}': "malformed_json",
            '{"type":"error","message":"\\udc00"}': "malformed_json",
            '{"type":"error","message":"\\u12"}': "malformed_json",
            '{"type":"error","message":"a\tb"}': "malformed_json",
            '\ufeff{"type":"ok"}': "malformed_json",
            '{"type":"ok",}': "malformed_json",
            '{"type":"ok"': "malformed_json",
            '{"type":"ok" "x":1}': "malformed_json",
            '{"type":"ok","x":[1,]}': "malformed_json",
            '{"type":"ok","x":tru}': "malformed_json",
            '{"type":"ok","type":"ok"}': "duplicate_field",
            '{"type":"subscribe","tenant_id":"t","namespace":"n","stream":"s","start":{"offset":1,"offset":2}}':
                "duplicate_field",
            '{"type":"publish_ok","request_id":1' + "0" * 5000 + "}": "out_of_range",
            '{"type":"publish_ok","request_id":-1' + "0" * 5000 + "}": "out_of_range",
            '{"type":"publish_ok","request_id":1E3}': "wrong_type",
            '{"type":"publish_ok","request_id":false}': "wrong_type",
            '{"type":"publish_ok","request_id":[1]}': "wrong_type",
            '{"type":"publish_ok","request_id":{}}': "wrong_type",
            '{"type":"auth_ok","server_flags":65535}': None,
            '{"type":"publish","tenant_id":"t","namespace":"n","stream":"s","payload":null}': "wrong_type",
            '{"type":"publish","tenant_id":"t","namespace":"n","stream":"s","payload":"===="}': "invalid_base64",
            '{"type":"publish","tenant_id":"t","namespace":"n","stream":"s","payload":"YQ=="}': None,
            '{"type":"publish","tenant_id":"t","namespace":"n","stream":"s","payload":"YQ"}': "invalid_base64",
            '{"type":"publish","tenant_id":"t","namespace":"n","stream":"s","payload":"Y\\u0051=="}': None,
            '{"type":"publish","tenant_id":"t","namespace":"n","stream":"s","payload":"\u00e9A=="}': "invalid_base64",
            '{"type":"publish_batch","tenant_id":"t","namespace":"n","stream":"s","payloads":[null]}': "wrong_type",
            '{"type":"cache_value","tenant_id":"t","namespace":"n","cache":"c","key":"k","value":null}': None,
            '{"type":"subscribe","tenant_id":"t","namespace":"n","stream":"s","start":"none"}': "invalid_enum_value",
            '{"type":"subscribe","tenant_id":"t","namespace":"n","stream":"s","start":7}': "wrong_type",
            '{"type":"subscribe","tenant_id":"t","namespace":"n","stream":"s","start":{"offset":1.5}}': "wrong_type",
            '{"type":"publish","tenant_id":"t","namespace":"n","stream":"s","payload":"","ack":"none"}': None,
            '{"type":"publish","tenant_id":"t","namespace":"n","stream":"s","payload":"","ack":1}': "wrong_type",
            '{"type":"subscribe_cursor_error","reason":"in_future","requested":1,"available":2}': None,
            '{"type":7,"type":"ok"}': "duplicate_field",
            '{"type":"Ok"}': "unknown_type",
        }
        for text, want in bad.items():
            with self.subTest(text=text[:80]):
                if want is None:
                    felix_codec.decode(frame(0, text))
                else:
                    self.assertEqual(self.error_of(frame(0, text)), want)

    def test_minus_zero_is_zero(self):
        # RFC 8259 reads -0 as the integer zero; the docs do not single it out.
        got = felix_codec.decode(frame(0, '{"type":"publish_ok","request_id":-0}'))
        self.assertEqual(got["fields"], {"request_id": 0})

    def test_nesting_counts_every_container(self):
        deep = '{"type":"ok","x":' + "[" * 63 + "]" * 63 + "}"
        felix_codec.decode(frame(0, deep))
        too_deep = '{"type":"ok","x":' + "[" * 64 + "]" * 64 + "}"
        self.assertEqual(self.error_of(frame(0, too_deep)), "malformed_json")
        objs = '{"type":"ok","x":' + '{"a":' * 63 + "1" + "}" * 63 + "}"
        felix_codec.decode(frame(0, objs))

    def test_big_string_is_fast(self):
        text = '{"type":"error","message":"' + "x\\n\u00e9" * 1000000 + '"}'
        got = felix_codec.decode(frame(0, text))
        self.assertEqual(len(got["fields"]["message"]), 3000000)

    def test_header_check_order(self):
        # A bad magic wins over everything after it, and so on down the list.
        self.assertEqual(self.error_of(b"FLX2\x00\x02\xff\xff\xff\xff\xff\xff"), "bad_magic")
        self.assertEqual(self.error_of(b"FLX1\x00\x02\xff\xff\xff\xff\xff\xff"), "bad_version")
        self.assertEqual(self.error_of(b"FLX1\x00\x01\x00\x7f\xff\xff\xff\xff"), "unknown_flags")
        self.assertEqual(self.error_of(b"FLX1\x00\x01\x00\x3f\xff\xff\xff\xff"), "invalid_flag_combination")
        self.assertEqual(self.error_of(b"FLX1\x00\x01\x00\x00\x00\x00\x00\x02{", cap=1), "frame_too_large")
        self.assertEqual(self.error_of(b"FLX1\x00\x01\x00\x00\x00\x00\x00\x02{", cap=2), "incomplete")
        self.assertEqual(self.error_of(b"FLX1\x00\x01\x00\x00\x00\x00\x00\x02{}"), "missing_field")

    def test_binary_edges(self):
        self.assertEqual(self.error_of(frame(0x10, b"\x05")), "invalid_enum_byte")
        self.assertEqual(self.error_of(frame(0x10, b"")), "unexpected_end")
        self.assertEqual(self.error_of(frame(0x09, b"\x00" * 8)), "unexpected_end")
        self.assertEqual(self.error_of(frame(0x02, b"\x00" * 7)), "unexpected_end")
        self.assertEqual(self.error_of(frame(0x04, b"\x00\x00\x00\x01\x00\x00\x00")), "count_too_large")
        self.assertEqual(self.error_of(frame(0x01, b"\x00\x02\xed\xa0\x00\x00\x00\x00\x00\x00\x00\x00")),
                         "invalid_utf8")  # an encoded surrogate is not UTF-8

    def test_encode_escapes(self):
        s = '"\\/\b\f\n\r\t\x00\x1f\x7f\u2028\u00e9\U0001F600'
        got = felix_codec.encode({"flags": 0, "kind": "error", "fields": {"message": s}})
        self.assertEqual(got[12:].decode("utf-8"),
                         '{"type":"error","message":"\\"\\\\/\\b\\f\\n\\r\\t\\u0000\\u001f\x7f\u2028\u00e9\U0001F600"}')
        back = felix_codec.decode(got)
        self.assertEqual(back["fields"]["message"], s)

    def test_encode_presence(self):
        got = felix_codec.encode({"flags": 0, "kind": "cache_value", "fields": {
            "tenant_id": "t", "namespace": "n", "cache": "c", "key": "k", "value": None, "request_id": None}})
        self.assertEqual(got[12:], b'{"type":"cache_value","tenant_id":"t","namespace":"n","cache":"c","key":"k","value":null}')

    def test_encode_rejects_bad_neutral_forms(self):
        cases = [
            ({"flags": 0, "kind": "nope", "fields": {}}, "unknown_type"),
            ({"flags": 1, "kind": "ok", "fields": {}}, "invalid_flag_combination"),
            ({"flags": 0, "kind": "error", "fields": {}}, "missing_field"),
            ({"flags": 0, "kind": "publish_ok", "fields": {"request_id": True}}, "wrong_type"),
            ({"flags": 0, "kind": "publish_ok", "fields": {"request_id": 1 << 64}}, "out_of_range"),
            ({"flags": 0, "kind": "publish", "fields": {"tenant_id": "t", "namespace": "n", "stream": "s",
                                                        "payload": "6", "ack": None}}, "wrong_type"),
            ({"flags": 0, "kind": "publish", "fields": {"tenant_id": "t", "namespace": "n", "stream": "s",
                                                        "payload": "", "ack": "all"}}, "invalid_enum_value"),
            ({"flags": 2, "kind": "binary_event_batch",
              "fields": {"subscription_id": 1, "base_offset": 3, "payloads": []}}, "invalid_flag_combination"),
            ({"flags": 0x22, "kind": "binary_event_batch",
              "fields": {"subscription_id": 1, "base_offset": None, "payloads": []}}, "missing_field"),
            ({"flags": 9, "kind": "binary_acked_publish_batch",
              "fields": {"request_id": 1, "ack_mode": "none", "tenant_id": "", "namespace": "",
                         "stream": "", "payloads": []}}, "invalid_enum_value"),
        ]
        for neutral, want in cases:
            with self.subTest(neutral=neutral):
                with self.assertRaises(felix_codec.WireError) as cm:
                    felix_codec.encode(neutral)
                self.assertEqual(cm.exception.error_class, want)

    def test_encode_cuts_ack_text_on_a_character_boundary(self):
        text = "a" + "\u00e9" * 300  # 601 bytes
        got = felix_codec.encode({"flags": 0x10, "kind": "binary_publish_ack",
                                  "fields": {"status": "error", "request_id": 1, "message": text}})
        msg = felix_codec.decode(got)["fields"]["message"]
        self.assertEqual(len(msg.encode("utf-8")), 511)
        self.assertTrue(text.startswith(msg))


if __name__ == "__main__":
    unittest.main()
