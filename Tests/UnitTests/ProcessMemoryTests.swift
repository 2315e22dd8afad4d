import XCTest
@testable import SLMStoreKit
@testable import SLMFormats
@testable import SLMLocalStore
@testable import SLMRemote
@testable import SLMDevice
@testable import SLMPages
import SLMTestSupport

/// What an idle daemon gives back: code pages (file-backed, executable) leave the process's
/// resident set, and the process runs on unharmed.
final class ProcessMemoryTests: XCTestCase {
    /// Resident KiB of one kind from /proc/self/status ("RssFile", "RssAnon").
    func resident(_ key: String) throws -> Int {
        let text = try String(contentsOfFile: "/proc/self/status", encoding: .utf8)
        let line = try XCTUnwrap(text.split(separator: "\n").first { $0.hasPrefix(key + ":") })
        return try XCTUnwrap(Int(line.split(separator: " ", omittingEmptySubsequences: true)[1]))
    }

    func testReleasingCodePagesShrinksTheResidentSetAndLosesNothing() throws {
        // Run a good deal of code first: a store round trip.
        let dir = TestSupport.scratch()
        let store = try Store.create(at: dir + "/s")
        let bytes = TestSupport.random(3 << 20, seed: 9)
        TestSupport.write(bytes, to: dir + "/src/a.bin")
        guard case let .exact(name, version) = try VersionRef.parse("m@1.0.0") else { return XCTFail() }
        _ = try store.add(name: name, version: version, inputs: try AddInputs.collect([dir + "/src"]))
        let before = try resident("RssFile")
        HeapRelease.releaseCodePages()
        let after = try resident("RssFile")
        XCTAssertLessThan(after, before - 2048, "at least 2 MiB of code pages leave: \(before) -> \(after) KiB")
        // The same code runs again (faulted back in from the page cache) and gives the same bytes.
        let out = dir + "/out"
        _ = try store.checkout(tree: try store.readTree(try store.resolve("m@1.0.0").object.tree), versionLabel: "m@1.0.0", to: out, force: false)
        XCTAssertSameBytes(TestSupport.read(out + "/a.bin"), bytes)
    }
}
