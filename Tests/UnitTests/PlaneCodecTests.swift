import XCTest
@testable import SLMStoreKit
@testable import SLMFormats
@testable import SLMLocalStore
@testable import SLMRemote
@testable import SLMDevice
@testable import SLMPages
import SLMSynthetic
import SLMTestSupport

/// Codec 2 (byte planes for float tensors): exact round trips at every phase, the documented
/// test vector, and refusal of malformed payloads.
final class PlaneCodecTests: XCTestCase {
    func roundTrip(_ bytes: [UInt8], _ layout: FloatLayout, file: StaticString = #filePath, line: UInt = #line) throws {
        let enc = bytes.withUnsafeBytes { ChunkEncoder.encode($0, level: 3, layout: layout) }
        var out = [UInt8](repeating: 0, count: bytes.count)
        try enc.payload.withUnsafeBytes { p in
            try out.withUnsafeMutableBytes { try ChunkEncoder.decode(codec: enc.codec, payload: p, rawLength: bytes.count, into: $0, what: "t") }
        }
        XCTAssertSameBytes(out, bytes, "\(layout)", file: file, line: line)
    }

    func testEveryDtypeAndPhaseRoundTrips() throws {
        let data = TestSupport.bf16Like(70_001, seed: 3)
        for dtype in ["BF16", "F16", "F32"] {
            for phase in 0..<4 {
                let layout = CodecPolicy.floatLayout(dtype: dtype, phase: phase)!
                try roundTrip(data, layout)
                try roundTrip(Array(data.prefix(37)), layout)
                try roundTrip(TestSupport.random(5000, seed: UInt64(phase)), layout)
            }
        }
    }

    func testBF16WeightsCompressWellBelowPlainZstd() throws {
        let data = TestSupport.bf16Like(1 << 20, seed: 5)
        let planes = data.withUnsafeBytes { ChunkEncoder.encode($0, level: 3, layout: CodecPolicy.floatLayout(dtype: "BF16", phase: 0)) }
        let plain = data.withUnsafeBytes { ChunkEncoder.encode($0, level: 3) }
        XCTAssertEqual(planes.codec, .planes)
        XCTAssertLessThan(Double(planes.payload.count) / Double(data.count), 0.70)
        XCTAssertLessThan(planes.payload.count, plain.payload.count)
    }

    /// The vector in Format.md: two bf16 values 1.0 (0x3F80) and -2.0 (0xC000) after one leading
    /// byte, with both planes stored raw.
    func testDocumentedVectorDecodes() throws {
        let payload: [UInt8] = [0x02, 0x01, 0x01, 0x00,  // E=2, exponent split, phase 1, no plane compressed
                                0xAA,                    // head: 1 byte (phase 1 -> lead 1)
                                0xBB,                    // tail: 1 byte
                                0x02, 0x00, 0x00, 0x00, 0x7F, 0x80,   // plane 0 (exponents)
                                0x02, 0x00, 0x00, 0x00, 0x00, 0x80]   // plane 1 (sign + mantissa)
        var out = [UInt8](repeating: 0, count: 6)
        try payload.withUnsafeBytes { p in
            try out.withUnsafeMutableBytes { try ChunkEncoder.decode(codec: .planes, payload: p, rawLength: 6, into: $0, what: "t") }
        }
        XCTAssertEqual(out, [0xAA, 0x80, 0x3F, 0x00, 0xC0, 0xBB])
    }

    func testMalformedPayloadsAreRefused() {
        let bad: [[UInt8]] = [
            [0x03, 0x01, 0x00, 0x00],                         // element size 3
            [0x02, 0x07, 0x00, 0x00],                         // unknown transform
            [0x02, 0x01, 0x02, 0x00],                         // phase >= element size
            [0x02, 0x01, 0x00, 0x00, 0x09, 0x00, 0x00, 0x00],  // plane longer than the payload
            [0x02, 0x01, 0x00, 0x01, 0x02, 0x00, 0x00, 0x00, 0x28, 0xb5, 0x02, 0x00, 0x00, 0x00, 0x00, 0x00],  // bad zstd plane
        ]
        for payload in bad {
            var out = [UInt8](repeating: 0, count: 4)
            XCTAssertThrowsError(try payload.withUnsafeBytes { p in
                try out.withUnsafeMutableBytes { try ChunkEncoder.decode(codec: .planes, payload: p, rawLength: 4, into: $0, what: "t") }
            }, "\(payload)")
        }
    }

    func testSafetensorsTensorsUseThePlanesCodecInTheStore() throws {
        let dir = TestSupport.scratch()
        let store = try Store.create(at: dir + "/s")
        TestSupport.write(TestSupport.safetensors([("w", "BF16", [400_000], TestSupport.bf16Like(800_000, seed: 1))]), to: dir + "/m/model.safetensors")
        _ = try store.add(name: try ModelName("m"), version: try SemVer("1.0.0"), inputs: try AddInputs.collect([dir + "/m"]))
        let index = try store.loadChunkIndex()
        let tree = try store.readTree(try store.resolve("m@1.0.0").object.tree)
        let codecs = try tree.files[0].chunks.refs().compactMap { index.location(of: $0.id)?.codec }
        XCTAssertGreaterThan(codecs.filter { $0 == .planes }.count, codecs.count / 2)
        XCTAssertTrue(try store.verify().ok)
    }
}
