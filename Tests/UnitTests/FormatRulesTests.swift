import XCTest
@testable import SLMStoreKit
@testable import SLMFormats
@testable import SLMLocalStore
@testable import SLMRemote
@testable import SLMDevice
@testable import SLMPages
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

    /// Card keys too: both spellings are kept, ordered by bytes, and read back from the version
    /// object's canonical JSON as two keys.
    func testCardKeysAreNotUnicodeNormalized() throws {
        let card = try YAMLSubset.parse("q\u{e9}: 1\nqe\u{301}: 2\nplain: x\n")
        let bytes = card.canonicalBytes()
        XCTAssertEqual(String(decoding: bytes, as: UTF8.self), "{\"plain\":\"x\",\"qe\u{301}\":2,\"q\u{e9}\":1}")
        let back = try JSONValue.parse(bytes)
        XCTAssertEqual(back.canonicalBytes(), bytes)
        XCTAssertEqual(back["q\u{e9}"], .number("1"))
        XCTAssertEqual(back["qe\u{301}"], .number("2"))
        XCTAssertThrowsError(try YAMLSubset.parse("a: 1\na: 2\n")) { XCTAssertTrue("\($0)".contains("duplicate key")) }
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

    /// Format.md §11 byte for byte: the same two files give the same pack, index and tree.
    func testTheWorkedExampleOfFormatMdIsReproduced() throws {
        let dir = TestSupport.scratch()
        TestSupport.write(Array("hello\n".utf8), to: dir + "/src/hello.txt")
        TestSupport.write(Array(String(repeating: "ab", count: 40).utf8), to: dir + "/src/repeat.txt")
        let store = try Store.create(at: dir + "/store")
        _ = try store.addVersion(name: try ModelName("demo"), version: try SemVer("1.0.0"),
                                     inputs: try AddInputs.collect([dir + "/src"]), options: AddOptions())
        XCTAssertEqual(try store.resolve("demo@1.0.0").object.tree.hex, "f6ab8397e80223612958aa5e6f3d628a09cbbb82853331c79ef0969cc390cd8a")
        let pack = try XCTUnwrap(try store.packIDs().first)
        XCTAssertEqual(Hex.encode(TestSupport.read(store.packPath(pack))),
                       "534c4d5041434b000100000000000000" + "6bba86c7e069f56d5a10b435f1c8e49c" + "000000000600000006000000" + "68656c6c6f0a"
                       + "8a6b6a23cacdb5076ebdb7d7dfb415a4" + "010000005000000011000000" + "28b52ffd205045000010616201001beab0")
        XCTAssertEqual(Hex.encode(TestSupport.read(store.packIndexPath(pack))),
                       "534c4d49445800000100000002000000" + "5f00000000000000"
                       + "6bba86c7e069f56d5a10b435f1c8e49c" + "1000000000000000" + "06000000" + "06000000" + "00000000"
                       + "8a6b6a23cacdb5076ebdb7d7dfb415a4" + "3200000000000000" + "11000000" + "50000000" + "01000000"
                       + "526c36399204fd1fe063816237326b4a1d92ef33fc826d90a2358d8ba045cb84")
    }

    /// #43 (8): the file kind follows the path's suffix, byte for byte: `W.SAFETENSORS` is a
    /// plain file, while the same bytes under `w.safetensors` must parse as safetensors.
    func testTheSafetensorsAndGGUFSuffixTestIsCaseSensitive() throws {
        let dir = TestSupport.scratch()
        let notSafetensors = Array("this is not a safetensors file".utf8)
        for name in ["W.SAFETENSORS", "m.GGUF"] { TestSupport.write(notSafetensors, to: "\(dir)/upper/\(name)") }
        let store = try Store.create(at: dir + "/store")
        _ = try store.add(name: try ModelName("m"), version: try SemVer("1.0.0"), inputs: try AddInputs.collect([dir + "/upper"]))
        let tree = try store.readTree(try store.resolve(try VersionRef.parse("m@1.0.0")).object.tree)
        XCTAssertEqual(tree.files.map(\.kind), [.plain, .plain])
        TestSupport.write(notSafetensors, to: "\(dir)/lower/w.safetensors")
        XCTAssertThrowsError(try store.add(name: try ModelName("m"), version: try SemVer("1.1.0"), inputs: try AddInputs.collect([dir + "/lower"])))
    }

    /// #43 (9): an entries file lists a version's files in tree order, by path bytes.
    func testAnEntriesFileListsFilesInTreeOrderByPathBytes() throws {
        let dir = TestSupport.scratch()
        for name in ["b.bin", "a/c.bin", "A.bin", "a.bin"] { TestSupport.write(Array(name.utf8), to: "\(dir)/src/\(name)") }
        let store = try Store.create(at: dir + "/store")
        _ = try store.add(name: try ModelName("m"), version: try SemVer("1.0.0"), inputs: try AddInputs.collect([dir + "/src"]))
        _ = try store.push(to: LocalBackend(root: dir + "/remote"), refs: [], options: PushOptions())
        var manifest = try Manifest.decode(TestSupport.read(dir + "/remote/manifest.json"), source: "m")
        try manifest.loadVersions(of: nil, location: dir + "/remote") { path, limit in try FileSystem.readFile(dir + "/remote/" + path, limit: limit) }
        XCTAssertEqual(manifest.models["m"]?.versions.first?.files.map(\.path), ["A.bin", "a.bin", "a/c.bin", "b.bin"])
    }
}
