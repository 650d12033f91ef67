"""Every test vector through the generated package: one-shot decoding,
streaming (one byte at a time, and every frame back to back), and the
re-encoding of every canonical case (and of every case that names the
bytes an encoder must write instead, in ``encoded``)."""

import glob
import json
import os
import sys
import unittest

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.dirname(HERE))
VECTORS = os.path.join(HERE, "..", "..", "..", "vectors")

import felix_wire as fw  # noqa: E402


def load_cases():
    cases = []
    for path in sorted(glob.glob(os.path.join(VECTORS, "**", "*.json"), recursive=True)):
        if os.sep + "schema" + os.sep in path:
            continue
        with open(path, encoding="utf-8") as f:
            doc = json.load(f)
        for group in doc["testGroups"]:
            for t in group["tests"]:
                t["bytes"] = bytes.fromhex("".join(t["frame"].split()))
                cases.append(t)
    return cases


CASES = load_cases()


def decode_streaming(data, cap):
    """Feeds ``data`` one byte at a time; returns the frames, or raises."""
    dec = fw.FrameDecoder(cap)
    frames = []
    for i in range(len(data)):
        frames.extend(dec.feed(data[i:i + 1]))
    if not dec.at_boundary():
        raise fw.IncompleteError(None, len(data), "the stream ended inside a frame")
    return frames


class Vectors(unittest.TestCase):
    def test_there_are_vectors(self):
        self.assertGreater(len(CASES), 150)

    def test_decode(self):
        for t in CASES:
            cap = t.get("maxFrameBytes", fw.DEFAULT_MAX_FRAME_BYTES)
            with self.subTest(t["id"]):
                if t["result"] == "valid":
                    frame, used = fw.decode_frame(t["bytes"], cap)
                    self.assertEqual(used, len(t["bytes"]))
                    self.assertEqual(fw.to_neutral(frame), t["decoded"])
                else:
                    with self.assertRaises(fw.DecodeError) as ctx:
                        fw.decode_frame(t["bytes"], cap)
                    self.assertEqual(ctx.exception.error_class.value, t["errorClass"])
                    self.assertIsInstance(ctx.exception, fw.DECODE_ERRORS[ctx.exception.error_class])

    def test_streaming_agrees(self):
        for t in CASES:
            cap = t.get("maxFrameBytes", fw.DEFAULT_MAX_FRAME_BYTES)
            with self.subTest(t["id"]):
                if t["result"] == "valid":
                    frames = decode_streaming(t["bytes"], cap)
                    self.assertEqual([fw.to_neutral(f) for f in frames], [t["decoded"]])
                elif t["errorClass"] == "incomplete":
                    dec = fw.FrameDecoder(cap)
                    self.assertEqual(dec.feed(t["bytes"]), [])  # it simply waits
                else:
                    with self.assertRaises(fw.DecodeError) as ctx:
                        decode_streaming(t["bytes"], cap)
                    self.assertEqual(ctx.exception.error_class.value, t["errorClass"])

    def test_encode_canonical(self):
        for t in CASES:
            if t["result"] == "valid" and t.get("canonical"):
                with self.subTest(t["id"]):
                    frame = fw.from_neutral(t["decoded"])
                    self.assertEqual(fw.encode(frame).hex(), t["bytes"].hex())

    def test_encode_where_writers_change_the_frame(self):
        cases = [t for t in CASES if "encoded" in t]
        self.assertTrue(cases, "no vector names its encoded bytes")
        for t in cases:
            with self.subTest(t["id"]):
                frame = fw.from_neutral(t["decoded"])
                self.assertEqual(fw.encode(frame).hex(), "".join(t["encoded"].split()))

    def test_every_valid_frame_back_to_back(self):
        valid = [t for t in CASES if t["result"] == "valid" and "maxFrameBytes" not in t]
        stream = b"".join(t["bytes"] for t in valid)
        dec = fw.FrameDecoder()
        frames = []
        for i in range(0, len(stream), 7):  # pieces that straddle frames
            frames.extend(dec.feed(stream[i:i + 7]))
        self.assertEqual([fw.to_neutral(f) for f in frames], [t["decoded"] for t in valid])
        self.assertEqual(dec.stream_offset, len(stream))


if __name__ == "__main__":
    unittest.main()
