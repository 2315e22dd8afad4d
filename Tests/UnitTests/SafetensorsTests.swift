import XCTest
@testable import SLMStoreKit
@testable import SLMFormats
@testable import SLMLocalStore
@testable import SLMRemote
@testable import SLMDevice
@testable import SLMPages
import SLMSynthetic
import SLMTestSupport

/// The safetensors header is parsed and every malformation named in the spec is refused.
final class SafetensorsTests: XCTestCase {
    func parse(_ bytes: [UInt8]) throws -> SafetensorsHeader {
        let dir = TestSupport.scratch()
        let path = dir + "/m.safetensors"
        TestSupport.write(bytes, to: path)
        return try SafetensorsHeader.read(path: path)
    }

    func assertRejected(_ bytes: [UInt8], _ fragment: String, file: StaticString = #filePath, line: UInt = #line) {
        XCTAssertThrowsError(try parse(bytes), file: file, line: line) { error in
            let message = "\(error)"
            XCTAssertTrue(message.contains(fragment), "\"\(message)\" should mention \"\(fragment)\"", file: file, line: line)
            XCTAssertTrue(message.contains("m.safetensors"), "error should name the file: \(message)", file: file, line: line)
        }
    }

    func testValidFileGivesTensorsInDataOrder() throws {
        let bytes = TestSupport.safetensors([("b", "F32", [2], [UInt8](repeating: 1, count: 8)),
                                             ("a", "BF16", [2, 3], [UInt8](repeating: 2, count: 12))],
                                            metadata: ["format": "pt"])
        let h = try parse(bytes)
        XCTAssertEqual(h.tensors.map(\.name), ["b", "a"])
        XCTAssertEqual(h.tensors[1].shape, [2, 3])
        XCTAssertEqual(h.tensors[1].begin, 8)
        XCTAssertEqual(h.metadata["format"], "pt")
    }

    func testTruncatedFileIsRejected() {
        assertRejected([1, 2, 3], "truncated")
    }

    func testHeaderLengthBeyondFileIsRejected() {
        var w = ByteWriter()
        w.u64(1000)
        assertRejected(w.bytes + Array("{}".utf8), "exceeds the file size")
    }

    func testHeaderThatIsNotJSONIsRejected() {
        assertRejected(TestSupport.rawSafetensors(header: Array("{not json".utf8), data: []), "not valid JSON")
    }

    func testHeaderThatIsNotAnObjectIsRejected() {
        assertRejected(TestSupport.rawSafetensors(header: Array("[1,2]".utf8), data: []), "not a JSON object")
    }

    func testOffsetsOutOfRangeAreRejected() {
        let header = #"{"a":{"dtype":"U8","shape":[16],"data_offsets":[0,16]}}"#
        assertRejected(TestSupport.rawSafetensors(header: Array(header.utf8), data: [UInt8](repeating: 0, count: 8)), "truncated file")
    }

    func testOverlappingTensorsAreRejected() {
        let header = #"{"a":{"dtype":"U8","shape":[8],"data_offsets":[0,8]},"b":{"dtype":"U8","shape":[8],"data_offsets":[4,12]}}"#
        assertRejected(TestSupport.rawSafetensors(header: Array(header.utf8), data: [UInt8](repeating: 0, count: 12)), "overlaps")
    }

    func testGapBetweenTensorsIsRejected() {
        let header = #"{"a":{"dtype":"U8","shape":[4],"data_offsets":[0,4]},"b":{"dtype":"U8","shape":[4],"data_offsets":[8,12]}}"#
        assertRejected(TestSupport.rawSafetensors(header: Array(header.utf8), data: [UInt8](repeating: 0, count: 12)), "gap")
    }

    func testTrailingUncoveredBytesAreRejected() {
        let header = #"{"a":{"dtype":"U8","shape":[4],"data_offsets":[0,4]}}"#
        assertRejected(TestSupport.rawSafetensors(header: Array(header.utf8), data: [UInt8](repeating: 0, count: 6)), "not covered")
    }

    func testDtypeTimesShapeMismatchIsRejected() {
        let header = #"{"a":{"dtype":"F32","shape":[3],"data_offsets":[0,8]}}"#
        assertRejected(TestSupport.rawSafetensors(header: Array(header.utf8), data: [UInt8](repeating: 0, count: 8)), "does not match")
    }

    func testUnknownDtypeIsRejected() {
        let header = #"{"a":{"dtype":"Q4","shape":[8],"data_offsets":[0,8]}}"#
        assertRejected(TestSupport.rawSafetensors(header: Array(header.utf8), data: [UInt8](repeating: 0, count: 8)), "unknown dtype")
    }

    func testShapeOverflowIsRejected() {
        let header = #"{"a":{"dtype":"F32","shape":[4294967296,4294967296],"data_offsets":[0,8]}}"#
        assertRejected(TestSupport.rawSafetensors(header: Array(header.utf8), data: [UInt8](repeating: 0, count: 8)), "does not match")
    }
}
