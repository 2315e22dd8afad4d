import XCTest
@testable import SLMStoreKit
@testable import SLMFormats
@testable import SLMLocalStore
@testable import SLMRemote
@testable import SLMDevice
@testable import SLMPages
import SLMSynthetic
import SLMTestSupport

/// Codec 3 (tensor deltas): exact round trips for every float dtype and phase, the documented
/// test vector, refusal of malformed payloads, and which chunks of a version qualify.
final class DeltaCodecTests: XCTestCase {
    /// `base` nudged the way a fine-tune moves weights: most elements keep their bits, the
    /// others move by a unit or two in the last place.
    func nudged(_ base: [UInt8], elementSize e: Int, seed: UInt64) -> [UInt8] {
        var out = base
        var rng = SplitMix(seed)
        var i = 0
        while i + e <= out.count {
            if rng.next() % 4 == 0 { out[i] = out[i] &+ (rng.next() % 2 == 0 ? 1 : 255) }
            i += e
        }
        return out
    }

    /// Encodes `new` against `base`, which sits at `offset` in the one base chunk `baseChunk`
    /// (`base` itself unless given).
    func encode(_ new: [UInt8], _ base: [UInt8], _ layout: FloatLayout, in baseChunk: [UInt8]? = nil, at offset: UInt32 = 0) -> [UInt8] {
        let chunk = baseChunk ?? base
        return new.withUnsafeBytes { n in
            base.withUnsafeBytes { b in
                DeltaCodec.encode(new: n, base: b, layout: layout, bases: [ChunkRef(id: ChunkID(of: chunk), rawLength: UInt32(chunk.count))],
                                  baseOffset: offset)
            }
        }
    }

    func decode(_ payload: [UInt8], base: [UInt8], rawLength: Int) throws -> [UInt8] {
        var out = [UInt8](repeating: 0, count: rawLength)
        try payload.withUnsafeBytes { p in
            let h = try DeltaCodec.header(p, rawLength: rawLength, what: "t")
            try base.withUnsafeBytes { b in
                try out.withUnsafeMutableBytes { try DeltaCodec.decode(p, header: h, base: b, rawLength: rawLength, into: $0, what: "t") }
            }
        }
        return out
    }

    func testEveryDtypeAndPhaseRoundTrips() throws {
        let base = TestSupport.bf16Like(40_003, seed: 3)
        for dtype in ["BF16", "F16", "F32"] {
            for phase in 0..<4 {
                let layout = CodecPolicy.floatLayout(dtype: dtype, phase: phase)!
                for (n, b) in [(base.count, base), (37, Array(base.prefix(37))), (9, Array(base.prefix(9)))] {
                    let new = nudged(b, elementSize: layout.elementSize, seed: UInt64(phase))
                    XCTAssertSameBytes(try decode(encode(new, b, layout), base: b, rawLength: n), new, "\(dtype) phase \(phase) n \(n)")
                }
                // Unrelated bytes (the worst case) still round-trip exactly.
                let other = TestSupport.random(base.count, seed: 9)
                XCTAssertSameBytes(try decode(encode(other, base, layout), base: base, rawLength: base.count), other, "\(dtype) random")
            }
        }
    }

    func testSignChangesAndExtremesRoundTrip() throws {
        // +0, -0, the largest and smallest finite values, infinities and NaN, moved across each other.
        let values: [UInt16] = [0x0000, 0x8000, 0x7F7F, 0xFF7F, 0x7F80, 0xFF80, 0x7FC1, 0x0001, 0x8001]
        let base = values.flatMap { [UInt8($0 & 0xff), UInt8($0 >> 8)] }
        let new = values.reversed().flatMap { [UInt8($0 & 0xff), UInt8($0 >> 8)] }
        let layout = CodecPolicy.floatLayout(dtype: "BF16", phase: 0)!
        XCTAssertSameBytes(try decode(encode(new, base, layout), base: base, rawLength: new.count), new)
    }

    func testANudgedTensorEncodesFarBelowItsFullRecord() throws {
        let base = TestSupport.bf16Like(1 << 20, seed: 5)
        let new = nudged(base, elementSize: 2, seed: 1)
        let layout = CodecPolicy.floatLayout(dtype: "BF16", phase: 0)!
        let full = new.withUnsafeBytes { ChunkEncoder.encode($0, level: 3, layout: layout) }
        let delta = encode(new, base, layout)
        XCTAssertLessThan(Double(delta.count), 0.35 * Double(full.payload.count))
    }

    /// The vector in Format.md §5: a 6-byte chunk at phase 1 (one stray byte, bf16 1.0078125 and
    /// -2.0, one stray byte) against bytes 3..<9 of a 10-byte base chunk holding 1.0 and 2.0.
    func testDocumentedVector() throws {
        let base: [UInt8] = [0x00, 0x00, 0x00, 0x11, 0x80, 0x3F, 0x00, 0x40, 0x22, 0x00]
        let baseID = ChunkID(of: base)
        XCTAssertEqual(baseID.hex, "c8cf9ebd67918b1695ac1b6c703446c1", "update Format.md §5 if this id changes")
        let new: [UInt8] = [0xAA, 0x81, 0x3F, 0x00, 0xC0, 0xBB]
        let payload: [UInt8] = [0x02, 0x01, 0x01, 0x00, 0x01, 0x00, 0x00, 0x00,  // E=2, exponent split, phase 1, raw planes, 1 base, reserved
                                0x03, 0x00, 0x00, 0x00,                           // base offset 3
                                0x00, 0x00, 0x00, 0x00]                           // full record length: not given
            + baseID.canonicalBytes + [0x0A, 0x00, 0x00, 0x00]                   // base chunk, 10 bytes
            + [0xAA, 0xBB]                                                        // head, tail
            + [0x02, 0x00, 0x00, 0x00, 0x00, 0xFF]                                // plane 0: high bytes of the zigzag codes 2, 0xFFFE
            + [0x02, 0x00, 0x00, 0x00, 0x02, 0xFE]                                // plane 1: low bytes
        let region = Array(base[3..<9])
        XCTAssertEqual(encode(new, region, CodecPolicy.floatLayout(dtype: "BF16", phase: 1)!, in: base, at: 3), payload)
        XCTAssertEqual(try decode(payload, base: region, rawLength: 6), new)
    }

    /// The SIMD loops (16 or 8 elements a step) against the one-element formula, for every
    /// length of scalar tail: the same planes, the same count of changed elements.
    func testLaneLoopsMatchTheElementFormulaForEveryTailLength() {
        for e in [2, 4] {
            for count in 0..<(3 * 16 + 1) {
                let base = TestSupport.random(count * e, seed: UInt64(count))
                let new = nudged(base, elementSize: e, seed: UInt64(count) + 100)
                var planes = [UInt8](repeating: 0xEE, count: count * e)
                let changed = new.withUnsafeBytes { n in base.withUnsafeBytes { b in planes.withUnsafeMutableBufferPointer {
                    DeltaCodec.differencePlanes(n.baseAddress!, b.baseAddress!, count: count, elementSize: e, into: $0.baseAddress!)
                } } }
                var expected = [UInt8](repeating: 0, count: count * e)
                var expectedChanged = 0
                for i in 0..<count {
                    var z: UInt32 = 0
                    if e == 2 {
                        let d = DeltaCodec.ordered16(new.readLE(UInt16.self, at: 2 * i)) &- DeltaCodec.ordered16(base.readLE(UInt16.self, at: 2 * i))
                        z = UInt32(DeltaCodec.zigzag16(d))
                    } else {
                        z = DeltaCodec.zigzag32(DeltaCodec.ordered32(new.readLE(UInt32.self, at: 4 * i)) &- DeltaCodec.ordered32(base.readLE(UInt32.self, at: 4 * i)))
                    }
                    for j in 0..<e { expected[j * count + i] = UInt8(truncatingIfNeeded: z >> UInt32(8 * (e - 1 - j))) }
                    if z != 0 { expectedChanged += 1 }
                }
                XCTAssertEqual(planes, expected, "e \(e) count \(count)")
                XCTAssertEqual(changed, expectedChanged, "e \(e) count \(count)")
            }
        }
    }

    /// 131,072 changed bf16 elements: more than a 16-bit sum of the lane counters can hold.
    func testAChunkOfMoreThan65535ChangedElementsIsCountedExactly() throws {
        let count = 1 << 17
        let base = [UInt8](repeating: 0, count: 2 * count)
        let new = [UInt8](repeating: 0x3F, count: 2 * count)
        let changed = new.withUnsafeBytes { n in base.withUnsafeBytes { b in
            let planes = UnsafeMutablePointer<UInt8>.allocate(capacity: 2 * count)
            defer { planes.deallocate() }
            return DeltaCodec.differencePlanes(n.baseAddress!, b.baseAddress!, count: count, elementSize: 2, into: planes)
        } }
        XCTAssertEqual(changed, count)
        let layout = CodecPolicy.floatLayout(dtype: "BF16", phase: 0)!
        XCTAssertSameBytes(try decode(encode(new, base, layout), base: base, rawLength: new.count), new)
    }

    func testAMostlyUnchangedChunkIsWrittenSparse() throws {
        let base = TestSupport.bf16Like(1 << 16, seed: 7)
        let layout = CodecPolicy.floatLayout(dtype: "BF16", phase: 0)!
        let new = nudged(base, elementSize: 2, seed: 3)  // a quarter of the elements move
        let payload = encode(new, base, layout)
        XCTAssertNotEqual(payload[3] & DeltaCodec.sparseFlag, 0)
        XCTAssertSameBytes(try decode(payload, base: base, rawLength: base.count), new)
    }

    func testAChunkWhoseElementsMostlyChangeIsWrittenDense() throws {
        let base = TestSupport.bf16Like(1 << 16, seed: 7)
        let new = TestSupport.random(base.count, seed: 11)
        let payload = encode(new, base, CodecPolicy.floatLayout(dtype: "F32", phase: 0)!)
        XCTAssertEqual(payload[3] & DeltaCodec.sparseFlag, 0)
        XCTAssertSameBytes(try decode(payload, base: base, rawLength: base.count), new)
    }

    func testTheSparseLayoutSavesOverDensePlanesWhereFewElementsMove() throws {
        // One element in twenty moves by one unit in the last place, as bf16 weights do after a
        // small fine-tune: the dense planes would pay at least a bit per zero byte under zstd.
        let base = TestSupport.bf16Like(1 << 18, seed: 8)
        var new = base
        var rng = SplitMix(4)
        for i in stride(from: 0, to: new.count, by: 2) where rng.next() % 20 == 0 { new[i] = new[i] &+ 1 }
        let layout = CodecPolicy.floatLayout(dtype: "BF16", phase: 0)!
        let sparse = encode(new, base, layout)
        XCTAssertNotEqual(sparse[3] & DeltaCodec.sparseFlag, 0)
        // The dense layout of the same differences, for comparison.
        var planes = [UInt8](repeating: 0, count: base.count)
        let count = base.count / 2
        new.withUnsafeBytes { n in base.withUnsafeBytes { b in planes.withUnsafeMutableBufferPointer { p in
            _ = DeltaCodec.differencePlanes(n.baseAddress!, b.baseAddress!, count: count, elementSize: 2, into: p.baseAddress!)
        } } }
        let dense = planes.withUnsafeBytes { p in
            (0..<2).reduce(0) { $0 + (DeltaCodec.compressed(UnsafeRawBufferPointer(rebasing: p[$1 * count..<($1 + 1) * count]))?.count ?? count) }
        }
        XCTAssertLessThan(Double(sparse.count), 0.85 * Double(dense))
        XCTAssertSameBytes(try decode(sparse, base: base, rawLength: base.count), new)
    }

    /// The sparse vector in Format.md §5: four bf16 elements (1.0, 2.0, 2.0, 1.0), of which the
    /// third moves one unit in the last place.
    func testDocumentedSparseVector() throws {
        let base: [UInt8] = [0x80, 0x3F, 0x00, 0x40, 0x00, 0x40, 0x80, 0x3F]
        let new: [UInt8] = [0x80, 0x3F, 0x00, 0x40, 0x01, 0x40, 0x80, 0x3F]
        let baseID = ChunkID(of: base)
        XCTAssertEqual(baseID.hex, "ecb1b129a0a05dff9b2303e0878e844b", "update Format.md §5 if this id changes")
        let payload: [UInt8] = [0x02, 0x01, 0x00, 0x80, 0x01, 0x00, 0x00, 0x00,  // E=2, exponent split, phase 0, sparse, raw map and planes, 1 base
                                0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00]   // base offset 0, full record length not given
            + baseID.canonicalBytes + [0x08, 0x00, 0x00, 0x00]                   // base chunk, 8 bytes
            + [0x01, 0x00, 0x00, 0x00, 0x04]                                      // presence map: element 2 changed
            + [0x01, 0x00, 0x00, 0x00, 0x00]                                      // plane 0 over the one changed element
            + [0x01, 0x00, 0x00, 0x00, 0x02]                                      // plane 1: zigzag code 2 (difference +1)
        XCTAssertEqual(encode(new, base, CodecPolicy.floatLayout(dtype: "BF16", phase: 0)!), payload)
        XCTAssertEqual(try decode(payload, base: base, rawLength: 8), new)
    }

    func testMalformedSparsePayloadsAreRefused() throws {
        let base: [UInt8] = [0x80, 0x3F, 0x00, 0x40, 0x00, 0x40, 0x80, 0x3F]
        let new: [UInt8] = [0x80, 0x3F, 0x00, 0x40, 0x01, 0x40, 0x80, 0x3F]
        let good = encode(new, base, CodecPolicy.floatLayout(dtype: "BF16", phase: 0)!)
        let mapAt = DeltaCodec.fixedHeaderSize + DeltaCodec.baseEntrySize + 4
        XCTAssertEqual(try decode(good, base: base, rawLength: 8), new)
        var bad = good
        bad[mapAt] = 0x14  // marks element 4 of a 4-element chunk
        XCTAssertThrowsError(try decode(bad, base: base, rawLength: 8), "map past the chunk")
        bad = good
        bad[mapAt] = 0x06  // two changed elements, planes hold one
        XCTAssertThrowsError(try decode(bad, base: base, rawLength: 8), "map and planes disagree")
        bad = good
        bad[3] = 0x40  // map-is-a-frame without the sparse bit
        XCTAssertThrowsError(try bad.withUnsafeBytes { try DeltaCodec.header($0, rawLength: 8, what: "t") }, "frame flag alone")
        bad = good
        bad[3] = 0xC0  // the raw map read as a zstd frame
        XCTAssertThrowsError(try decode(bad, base: base, rawLength: 8), "raw map taken for a frame")
        bad = good
        bad[mapAt - 4] = 2  // map length 2 for a 4-element chunk
        XCTAssertThrowsError(try decode(bad, base: base, rawLength: 8), "map length")
        bad = Array(good.prefix(mapAt - 2))
        XCTAssertThrowsError(try decode(bad, base: base, rawLength: 8), "truncated before the map")
    }

    func testMalformedHeadersAreRefused() {
        let id = ChunkID(of: [1, 2, 3]).canonicalBytes
        func header(_ e: UInt8, _ t: UInt8, _ phase: UInt8, _ flags: UInt8, _ k: UInt8, reserved: [UInt8] = [0, 0, 0],
                    offset: UInt32 = 0, bases: [UInt32] = [100]) -> [UInt8] {
            var b: [UInt8] = [e, t, phase, flags, k] + reserved
            b += (0..<4).map { UInt8(truncatingIfNeeded: offset >> (8 * $0)) } + [0, 0, 0, 0]
            for len in bases { b += id + (0..<4).map { UInt8(truncatingIfNeeded: len >> (8 * $0)) } }
            return b
        }
        let cases: [(String, [UInt8], Int)] = [
            ("element size 3", header(3, 1, 0, 0, 1), 10),
            ("unknown transform", header(2, 9, 0, 0, 1), 10),
            ("phase past the element", header(2, 1, 2, 0, 1), 10),
            ("plane flag beyond E", header(2, 1, 0, 4, 1), 10),
            ("no base", header(2, 1, 0, 0, 0, bases: []), 10),
            ("too many bases", header(2, 1, 0, 0, 17, bases: Array(repeating: 100, count: 17)), 10),
            ("reserved not zero", header(2, 1, 0, 0, 1, reserved: [0, 1, 0]), 10),
            ("offset past the first base", header(2, 1, 0, 0, 1, offset: 100), 10),
            ("bases too short", header(2, 1, 0, 0, 2, offset: 50, bases: [100, 20]), 100),
            ("a base that is not needed", header(2, 1, 0, 0, 2, bases: [100, 20]), 50),
            ("base of length 0", header(2, 1, 0, 0, 1, bases: [0]), 10),
            ("truncated base list", Array(header(2, 1, 0, 0, 1).dropLast(3)), 10),
            ("shorter than the fixed header", Array(header(2, 1, 0, 0, 1).prefix(15)), 10),
        ]
        for (what, payload, n) in cases {
            XCTAssertThrowsError(try payload.withUnsafeBytes { try DeltaCodec.header($0, rawLength: n, what: "t") }, what)
        }
        // A well-formed header with a body that does not match its length.
        let base = TestSupport.bf16Like(64, seed: 1)
        var payload = encode(nudged(base, elementSize: 2, seed: 2), base, CodecPolicy.floatLayout(dtype: "BF16", phase: 0)!)
        payload.append(0)
        XCTAssertThrowsError(try decode(payload, base: base, rawLength: 64), "trailing byte")
        payload.removeLast(2)
        XCTAssertThrowsError(try decode(payload, base: base, rawLength: 64), "short plane")
    }

    func testOnlyChunksOfMatchingFloatTensorsAreCandidates() throws {
        let e = TestSupport.bf16Like(300_000, seed: 1), f = TestSupport.bf16Like(300_000, seed: 2)
        let g = TestSupport.bf16Like(300_000, seed: 3), h = TestSupport.bf16Like(300_000, seed: 4)
        func tree(_ tensors: [(String, String, [Int], [UInt8])]) throws -> TreeObject {
            let bytes = TestSupport.safetensors(tensors)
            let n = Int(bytes[0]) | Int(bytes[1]) << 8 | Int(bytes[2]) << 16
            let header = try SafetensorsHeader.parse(headerJSON: Array(bytes[8..<8 + n]), headerLength: UInt64(n), fileSize: UInt64(bytes.count), path: "t")
            // One chunk per 64 KiB, aligned to the data start, like a chunker would cut a tensor.
            var chunks: [ChunkRef] = []
            var at = 0
            let starts = [0, Int(header.dataStart)] + header.tensors.map { Int(header.dataStart + $0.begin) }
            var cuts = Set(starts)
            for s in starts { var k = s; while k < bytes.count { cuts.insert(k); k += 65_536 } }
            let sorted = cuts.filter { $0 < bytes.count }.sorted() + [bytes.count]
            for (a, b) in zip(sorted, sorted.dropFirst()) where b > a {
                chunks.append(ChunkRef(id: ChunkID(of: Array(bytes[a..<b])), rawLength: UInt32(b - a)))
                at = b
            }
            XCTAssertEqual(at, bytes.count)
            return TreeObject(files: [FileEntry(path: "m.safetensors", size: UInt64(bytes.count), sha256: SHA256Hasher.hash(bytes),
                                                chunks: chunks, safetensors: header)])
        }
        let old = try tree([("a", "BF16", [150_000], e), ("b", "BF16", [150_000], f), ("c", "BF16", [150_000], g), ("d", "I16", [150_000], h)])
        let new = try tree([("a", "BF16", [150_000], nudged(e, elementSize: 2, seed: 1)),   // qualifies
                            ("b", "BF16", [300, 500], nudged(f, elementSize: 2, seed: 2)),  // shape changed
                            ("c", "F16", [150_000], nudged(g, elementSize: 2, seed: 3)),    // dtype changed
                            ("d", "I16", [150_000], nudged(h, elementSize: 2, seed: 4))])   // not a float tensor
        let candidates = try DeltaPlanner.candidates(target: new, base: old)
        let header = new.files[0].safetensors!
        let a = header.tensors.first { $0.name == "a" }!
        XCTAssertFalse(candidates.isEmpty)
        for c in candidates {
            XCTAssertGreaterThanOrEqual(c.offset, header.dataStart + a.begin)
            XCTAssertLessThanOrEqual(c.offset + UInt64(c.rawLength), header.dataStart + a.end)
            XCTAssertFalse(c.bases.isEmpty)
        }
    }
}
