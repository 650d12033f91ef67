"""The package's API beyond the vectors: typed values, error details, the
streaming decoder's cap, and encode-side checks."""

import doctest
import os
import sys
import unittest

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import felix_wire as fw  # noqa: E402


def header(flags, length):
    return b"FLX1" + (1).to_bytes(2, "big") + flags.to_bytes(2, "big") + length.to_bytes(4, "big")


class Api(unittest.TestCase):
    def test_round_trip_typed_values(self):
        frames = [
            fw.Subscribe(tenant_id="t1", namespace="default", stream="s", start=fw.StartPositionOffset(5)),
            fw.Subscribe(tenant_id="t1", namespace="default", stream="s", start=fw.StartPosition.EARLIEST),
            fw.CachePut(tenant_id="t", namespace="n", cache="c", key="k", value=b"\x00\xff", ttl_ms=2**64 - 1),
            fw.CacheValue(tenant_id="t", namespace="n", cache="c", key="k"),
            fw.OkMessage(),
            fw.BinaryAckedPublishBatch(request_id=7, ack_mode=fw.AckMode.PER_BATCH, tenant_id="t",
                                       namespace="n", stream="s", payloads=[b"a", b""]),
            fw.BinarySharedEventBatch(payloads=[b"x"], base_offset=2**53 + 1),
            fw.BinaryPublishAck(status=fw.AckStatus.ERROR, request_id=1, message="no"),
        ]
        for frame in frames:
            with self.subTest(frame=frame):
                data = fw.encode(frame)
                self.assertEqual(fw.decode_frame(data + b"next"), (frame, len(data)))

    def test_null_rules_on_the_wire(self):
        put = fw.CachePut(tenant_id="t", namespace="n", cache="c", key="k", value=b"")
        self.assertTrue(fw.encode(put).endswith(b'"value":"","ttl_ms":null}'))
        miss = fw.CacheValue(tenant_id="t", namespace="n", cache="c", key="k")
        self.assertTrue(fw.encode(miss).endswith(b'"key":"k","value":null}'))
        self.assertEqual(fw.encode(fw.OkMessage())[12:], b'{"type":"ok"}')

    def test_errors_name_field_and_offset(self):
        data = header(0, 27) + b'{"type":"auth_ok","x":true}'
        with self.assertRaises(fw.MissingFieldError) as ctx:
            fw.decode_frame(data)
        self.assertEqual(ctx.exception.field, "auth_ok.server_flags")
        self.assertEqual(ctx.exception.offset, 12)
        data = header(0, 36) + b'{"type":"auth_ok","server_flags":-1}'
        with self.assertRaises(fw.OutOfRangeError) as ctx:
            fw.decode_frame(data)
        self.assertEqual((ctx.exception.field, ctx.exception.offset), ("auth_ok.server_flags", 45))
        data = header(0x10, 11) + b"\x05" + bytes(10)
        with self.assertRaises(fw.InvalidEnumByteError) as ctx:
            fw.decode_frame(data)
        self.assertEqual((ctx.exception.field, ctx.exception.offset), ("binary_publish_ack.status", 12))

    def test_incomplete_is_distinct_from_invalid(self):
        data = fw.encode(fw.ErrorMessage(message="boom"))
        with self.assertRaises(fw.IncompleteError):
            fw.decode_frame(data[:-1])
        self.assertFalse(issubclass(fw.IncompleteError, fw.BadMagicError))

    def test_the_cap_is_checked_before_the_payload_is_buffered(self):
        dec = fw.FrameDecoder(max_frame_bytes=16)
        with self.assertRaises(fw.FrameTooLargeError):
            dec.feed(header(1, 17) + bytes(5))
        self.assertEqual(dec.buffered, 12)  # the header only, never the payload
        with self.assertRaises(fw.FrameTooLargeError):  # errors are final
            dec.feed(b"")

    def test_a_frame_of_exactly_the_cap_is_accepted(self):
        frame = fw.BinarySharedEventBatch(payloads=[bytes(8)])
        data = fw.encode(frame)
        self.assertEqual(fw.FrameDecoder(max_frame_bytes=len(data) - 12).feed(data), [frame])

    def test_decoder_cap_can_change_between_frames(self):
        small = fw.encode(fw.Auth(tenant_id="t", token="x"))
        big = fw.encode(fw.Publish(tenant_id="t", namespace="n", stream="s", payload=bytes(100)))
        dec = fw.FrameDecoder(max_frame_bytes=64)
        self.assertEqual(len(dec.feed(small)), 1)
        dec.max_frame_bytes = 1024
        self.assertEqual(len(dec.feed(big)), 1)

    def test_encode_checks_values(self):
        cases = [
            (fw.AuthOk(server_flags=65536), fw.ErrorClass.OUT_OF_RANGE),
            (fw.AuthOk(server_flags=True), fw.ErrorClass.WRONG_TYPE),
            (fw.ErrorMessage(message=None), fw.ErrorClass.MISSING_FIELD),
            (fw.ErrorMessage(message="\ud800"), fw.ErrorClass.INVALID_UTF8),
            (fw.BinaryAckedPublishBatch(request_id=1, ack_mode=fw.AckMode.NONE, tenant_id="t",
                                        namespace="n", stream="s", payloads=[]),
             fw.ErrorClass.INVALID_ENUM_VALUE),
            (fw.BinaryPublishBatch(tenant_id="x" * 65536, namespace="n", stream="s", payloads=[]),
             fw.ErrorClass.OUT_OF_RANGE),
        ]
        for frame, cls in cases:
            with self.subTest(frame=repr(frame)[:60]):
                with self.assertRaises(fw.EncodeError) as ctx:
                    fw.encode(frame)
                self.assertEqual(ctx.exception.error_class, cls)

    def test_ack_text_is_cut_on_a_character_boundary(self):
        ack = fw.BinaryPublishAck(status=fw.AckStatus.ERROR, request_id=1, message="a" + "é" * 300)
        frame, _ = fw.decode_frame(fw.encode(ack))
        self.assertEqual(len(frame.message.encode()), 511)
        self.assertEqual(frame.message, "a" + "é" * 255)

    def test_from_neutral_checks_flags(self):
        with self.assertRaises(fw.EncodeError) as ctx:
            fw.from_neutral({"flags": 4, "kind": "binary_shared_event_batch",
                             "fields": {"base_offset": 1, "payloads": []}})
        self.assertEqual(ctx.exception.error_class, fw.ErrorClass.INVALID_FLAG_COMBINATION)


def load_tests(loader, tests, ignore):
    """The examples in the package's docstrings run as tests too."""
    tests.addTests(doctest.DocTestSuite(fw))
    tests.addTests(doctest.DocTestSuite(fw.codec))
    return tests


if __name__ == "__main__":
    unittest.main()
