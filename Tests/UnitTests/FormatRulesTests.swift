import XCTest
@testable import SLMStoreKit
import SLMTestSupport

/// The places where two writers could have disagreed, each pinned to one rule (Format.md).
final class FormatRulesTests: XCTestCase {
    func parse(_ header: String, data: Int = 0) throws -> SafetensorsHeader {
        try SafetensorsHeader.parse(headerJSON: Array(header.utf8), headerLength: UInt64(header.utf8.count),
                                    fileSize: UInt64(8 + header.utf8.count + data), path: "t.safetensors")
    }

    /// Two zero-size tensors at one offset: ordered by their names' UTF-8 bytes ("qe" + U+0301 is
    /// 71 65 cc 81, "qf" is 71 66), not by Swift's Unicode-aware String order.
    func testTensorsAtOneOffsetAreOrderedByTheirNamesUTF8Bytes() throws {
        let h = try parse(#"{"qf":{"dtype":"F32","shape":[0],"data_offsets":[0,0]},"qe\#u{301}":{"dtype":"F32","shape":[0],"data_offsets":[0,0]}}"#)
        XCTAssertEqual(h.tensors.map { Array($0.name.utf8) }, [[0x71, 0x65, 0xcc, 0x81], [0x71, 0x66]])
    }

    /// "é" precomposed (NFC) and "e" + U+0301 (NFD) are different UTF-8, so different tensors.
    func testTensorNamesAreNotUnicodeNormalized() throws {
        let h = try parse(#"{"q\#u{e9}":{"dtype":"U8","shape":[1],"data_offsets":[0,1]},"qe\#u{301}":{"dtype":"U8","shape":[1],"data_offsets":[1,2]}}"#, data: 2)
        XCTAssertEqual(h.tensors.count, 2)
        let size = h.dataStart + 2
        let bytes = [UInt8](repeating: 7, count: Int(size))
        let tree = TreeObject(files: [FileEntry(path: "m.safetensors", size: size, sha256: SHA256Hasher.hash(bytes),
                                                chunks: [ChunkRef(id: ChunkID(of: bytes), rawLength: UInt32(size))], safetensors: h)])
        let back = try TreeObject.decode(tree.encoded(), source: "t")
        XCTAssertEqual(back.files[0].safetensors!.tensors.map { Array($0.name.utf8) }, h.tensors.map { Array($0.name.utf8) })
        XCTAssertThrowsError(try parse(#"{"a":{"dtype":"U8","shape":[1],"data_offsets":[0,1]},"a":{"dtype":"U8","shape":[1],"data_offsets":[1,2]}}"#, data: 2)) {
            XCTAssertTrue("\($0)".contains("duplicate key"))
        }
    }

    /// One rule for YAML plain scalars: a number exactly when the text is a JSON number.
    func testYAMLPlainScalarsBecomeNumbersOnlyWhenTheyAreJSONNumbers() throws {
        let card = try YAMLSubset.parse("a: 12\nb: -0.5e3\nc: .5\nd: 0x1F\ne: +12\nf: 1_000\ng: .inf\nh: yes\ni: ~\nj: true\nk: 007\n")
        XCTAssertEqual(card.canonicalString(), #"{"a":12,"b":-0.5e3,"c":".5","d":"0x1F","e":"+12","f":"1_000","g":".inf","h":"yes","i":null,"j":true,"k":"007"}"#)
    }

    func testDependenciesAreSortedByNameAndAModelNamedTwiceIsRefused() throws {
        let deps = try Dependency.canonical([.init(name: "tok", range: "^1"), .init(name: "base", range: "2.0.0")])
        XCTAssertEqual(deps.map(\.name), ["base", "tok"])
        XCTAssertThrowsError(try Dependency.canonical([.init(name: "tok", range: "^1"), .init(name: "tok", range: "^2")]))
    }
}
