import XCTest
@testable import SLMStoreKit
@testable import SLMFormats
@testable import SLMLocalStore
@testable import SLMRemote
@testable import SLMDevice
@testable import SLMPages
import SLMTestSupport

/// Findings 5 and 6 of #28: a local file or a remote's metadata built to inflate is refused
/// before it costs memory or leaves the store unusable.
final class BoundedParseTests: XCTestCase {
    /// A safetensors file with `count` zero-size U8 tensors named by `name(i)`.
    func zeroTensorFile(_ path: String, count: Int, name: (Int) -> String) {
        var json = "{"
        json.reserveCapacity(count * 80)
        for i in 0..<count {
            if i > 0 { json += "," }
            json += "\"\(name(i))\":{\"dtype\":\"U8\",\"shape\":[0],\"data_offsets\":[0,0]}"
        }
        json += "}"
        let header = Array(json.utf8)
        var bytes = withUnsafeBytes(of: UInt64(header.count).littleEndian) { Array($0) }
        bytes += header
        TestSupport.write(bytes, to: path)
    }

    func assertAddRefused(_ dir: String, mentioning fragment: String, file: StaticString = #filePath, line: UInt = #line) {
        let store = dir + "/store"
        XCTAssertEqual(TestSupport.cli(["init"], store: store).status, 0)
        let before = TestSupport.snapshot(store)
        let r = TestSupport.cli(["add", "m@1.0.0", dir + "/src"], store: store)
        XCTAssertNotEqual(r.status, 0, file: file, line: line)
        XCTAssertEqual(r.stderr.split(separator: "\n").count, 1, r.stderr, file: file, line: line)
        XCTAssertTrue(r.stderr.contains(fragment) && r.stderr.contains(dir + "/src"), r.stderr, file: file, line: line)
        XCTAssertEqual(TestSupport.snapshot(store), before, "the store changed", file: file, line: line)
        XCTAssertEqual(TestSupport.cli(["verify"], store: store).status, 0, file: file, line: line)
    }

    func testAHeaderListingMoreTensorsThanAFileMayIsRefusedBeforeTheStoreIsTouched() throws {
        let dir = TestSupport.scratch()
        zeroTensorFile(dir + "/src/model.safetensors", count: 70_000) { "t\($0)" }
        assertAddRefused(dir, mentioning: "tensors a file may list")
    }

    /// A file whose chunk list alone would pass the 64 MiB tree bound (a sparse 1 TB file: at
    /// least 4 million chunks of the largest size): refused before a byte is read or written,
    /// where before the version was committed and broke show, gc and push.
    func testAFileWhoseTreeWouldPassTheTreeLimitIsRefusedBeforeAnythingIsWritten() throws {
        let dir = TestSupport.scratch()
        try FileSystem.makeDirectories(dir + "/src")
        _ = FileManager.default.createFile(atPath: dir + "/src/weights.bin", contents: nil)
        XCTAssertEqual(truncate(dir + "/src/weights.bin", 1 << 40), 0)
        assertAddRefused(dir, mentioning: "tree object of at least")
    }

    func testJSONWithMoreValuesThanAllowedIsRefusedBeforeAnyIsBuilt() throws {
        let bomb = Array(("[" + String(repeating: "{},", count: 100_000) + "{}]").utf8)
        XCTAssertThrowsError(try JSONValue.parse(bomb, maxValues: JSONValue.remoteValueLimit(forBytes: bomb.count))) {
            XCTAssertTrue("\($0)".contains("more than the"), "\($0)")
        }
        // Commas and brackets inside strings are not values.
        XCTAssertEqual(JSONValue.approximateValueCount(Array(#"{"a":"[,{\",","b":[1,2]}"#.utf8)), 5)
        let honest = Array(#"{"id":"0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef","v":"1.0.0"}"#.utf8)
        XCTAssertNoThrow(try JSONValue.parse(honest, maxValues: JSONValue.remoteValueLimit(forBytes: honest.count)))
    }

    func testAVersionObjectBuiltToInflateIsRefusedBeforeItIsParsed() throws {
        let bomb = Array(("{\"x\":[" + String(repeating: "{},", count: VersionObject.maxValues) + "{}]}").utf8)
        XCTAssertThrowsError(try VersionObject.decode(bomb, source: "objects/ab/cd")) {
            XCTAssertTrue("\($0)".contains("objects/ab/cd") && "\($0)".contains("values"), "\($0)")
        }
    }

    func testAReleaseWithJunkAroundTheSignedPartIsRefusedBeforeTheJunkIsParsed() throws {
        let key = try Ed25519PrivateKey.generate()
        let good = try SignedRelease(serial: 1, remote: "r", issued: 0, expires: 1, models: [:], nextKeys: nil).signed(by: [key])
        var text = String(decoding: good, as: UTF8.self)
        text.removeLast(2)  // "}\n"
        text += ",\"junk\":[" + String(repeating: "0,", count: 10_000) + "0]}\n"
        XCTAssertThrowsError(try SignedRelease.decode(Array(text.utf8), source: "release.json")) {
            XCTAssertTrue("\($0)".contains("release.json") && "\($0)".contains("values"), "\($0)")
        }
    }

    /// A 24 MiB manifest.json of `{}`: pull refuses it, and its peak memory stays near the
    /// device budget instead of the ~400 MiB a parse cost (GNU time, the real binary).
    func testAnInflatingManifestIsRefusedWithinTheDeviceBudget() throws {
        guard FileManager.default.isExecutableFile(atPath: "/usr/bin/time") else { throw XCTSkip("GNU time is not installed") }
        let dir = TestSupport.scratch()
        TestSupport.write(TestSupport.safetensors([("w", "BF16", [1000], TestSupport.bf16Like(2000, seed: 1))]), to: dir + "/src/model.safetensors")
        XCTAssertEqual(TestSupport.cli(["add", "m@1.0.0", dir + "/src"], store: dir + "/pub").status, 0)
        XCTAssertEqual(TestSupport.cli(["push", dir + "/remote", "--no-web"], store: dir + "/pub").status, 0)
        let bomb = "{\"format\":2,\"models\":{},\"packs\":[],\"x\":[" + String(repeating: "{},", count: 8 << 20) + "{}]}"
        TestSupport.write(Array(bomb.utf8), to: dir + "/remote/manifest.json")
        let p = Process()
        p.executableURL = URL(fileURLWithPath: "/usr/bin/time")
        p.arguments = ["-f", "peak %M", TestSupport.binary, "--store", dir + "/edge", "pull", dir + "/remote", "m@^1"]
        let err = Pipe()
        p.standardError = err
        p.standardOutput = FileHandle.nullDevice
        try p.run()
        let stderr = String(decoding: err.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
        p.waitUntilExit()
        XCTAssertEqual(p.terminationStatus, 5, stderr)
        XCTAssertTrue(stderr.contains("manifest.json") && stderr.contains("values"), stderr)
        guard let line = stderr.split(separator: "\n").last(where: { $0.hasPrefix("peak ") }), let kib = Int(line.dropFirst(5)) else {
            throw XCTSkip("no peak RSS from /usr/bin/time: \(stderr)")
        }
        XCTAssertLessThan(kib, 100 << 10, "peak \(kib) KiB")
    }
}
