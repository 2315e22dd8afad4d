import XCTest
@testable import SLMStoreKit
@testable import SLMFormats
@testable import SLMLocalStore
@testable import SLMRemote
@testable import SLMDevice
@testable import SLMPages
import SLMSynthetic
import SLMTestSupport

/// The backend seam: a directory backend on real files, the retry and rate wrappers, and which
/// locations open at all.
final class BackendTests: XCTestCase {
    var dir = ""
    var backend: LocalBackend!

    override func setUp() {
        dir = TestSupport.scratch()
        backend = LocalBackend(root: dir)
    }

    func testCreateOnlyWriteSucceedsOnceAndNeverReplaces() throws {
        XCTAssertTrue(try backend.write("refs/m/@versions/1.0.0", bytes: Array("a\n".utf8), ifMatching: nil))
        XCTAssertFalse(try backend.write("refs/m/@versions/1.0.0", bytes: Array("b\n".utf8), ifMatching: nil))
        XCTAssertEqual(try backend.read("refs/m/@versions/1.0.0", limit: 100), Array("a\n".utf8))
    }

    func testCompareAndSwapFailsAfterAnotherWriter() throws {
        try backend.write("manifest.json", bytes: [1])
        guard case let .changed(_, v1?) = try backend.readIfChanged("manifest.json", validator: nil, limit: 100) else { return XCTFail() }
        try backend.write("manifest.json", bytes: [2])   // another publisher
        XCTAssertFalse(try backend.write("manifest.json", bytes: [3], ifMatching: v1))
        guard case let .changed(bytes, v2?) = try backend.readIfChanged("manifest.json", validator: nil, limit: 100) else { return XCTFail() }
        XCTAssertEqual(bytes, [2])
        XCTAssertTrue(try backend.write("manifest.json", bytes: [3], ifMatching: v2))
    }

    func testConditionalReadSaysUnchangedAbsentOrChanged() throws {
        guard case .absent = try backend.readIfChanged("x", validator: nil, limit: 10) else { return XCTFail() }
        try backend.write("x", bytes: [7])
        guard case let .changed(_, v?) = try backend.readIfChanged("x", validator: nil, limit: 10) else { return XCTFail() }
        guard case .unchanged = try backend.readIfChanged("x", validator: v, limit: 10) else { return XCTFail() }
    }

    func testAFileOverTheLimitIsRefusedBeforeItIsRead() throws {
        try backend.write("big", bytes: [UInt8](repeating: 0, count: 1000))
        XCTAssertThrowsError(try backend.read("big", limit: 999))
    }

    func testListingIsRelativeToTheRootAndSkipsTemporaryFiles() throws {
        try backend.write("packs/a.idx", bytes: [1])
        try backend.write("refs/m/@versions/1.0.0", bytes: [1])
        TestSupport.write([1], to: dir + "/packs/.tmp-123-b.idx")
        XCTAssertEqual(try backend.list("packs", recursive: false), ["packs/a.idx"])
        XCTAssertEqual(try backend.list("refs", recursive: true), ["refs/m/@versions/1.0.0"])
        XCTAssertEqual(Set(try backend.list("", recursive: false)), ["packs", "refs"])
    }

    func testUploadStreamsALocalFileIntoPlace() throws {
        let bytes = TestSupport.random(9 << 20, seed: 4)
        TestSupport.write(bytes, to: dir + "/local.bin")
        try backend.upload("packs/p.pack", fromFile: dir + "/local.bin")
        XCTAssertSameBytes(TestSupport.read(dir + "/packs/p.pack"), bytes)
        XCTAssertEqual(backend.traffic.bytesSent, UInt64(bytes.count))
    }

    func testRangesReadExactlyTheBytesAsked() throws {
        try backend.write("f", bytes: Array(0..<100))
        XCTAssertEqual(try backend.readRange("f", range: 10..<20), Array(10..<20))
        let big = TestSupport.random(3 << 20, seed: 5)
        try backend.write("big", bytes: big)
        var pieces = 0
        var got: [UInt8] = []
        try backend.readRange("big", range: 100..<UInt64(big.count - 7)) { got.append(contentsOf: $0); pieces += 1 }
        XCTAssertSameBytes(got, Array(big[100..<(big.count - 7)]))
        XCTAssertGreaterThan(pieces, 1, "a long range is handed over in pieces, not held whole")
        XCTAssertThrowsError(try backend.readRange("f", range: 90..<110), "a short file is an error, not a short answer")
    }

    func testHTTPDatesParseOnlyInTheFormServersMustSend() {
        XCTAssertEqual(Timestamp.parseHTTPDate("Sun, 06 Nov 1994 08:49:37 GMT"), 784111777)
        XCTAssertEqual(Timestamp.parseHTTPDate("Sun, 29 Nov 2026 19:09:34 GMT").map { Timestamp.format($0) }, "2026-11-29T19:09:34Z")
        for obsolete in ["Sunday, 06-Nov-94 08:49:37 GMT", "Sun Nov  6 08:49:37 1994", "Sun, 06 Nov 1994 08:49:37 UTC",
                         "Sun, 32 Nov 1994 08:49:37 GMT", "Sun, 06 Nov 1994 25:49:37 GMT", "", "Sun, 06 Nov 1994 08:49 GMT"] {
            XCTAssertNil(Timestamp.parseHTTPDate(obsolete), obsolete)
        }
        XCTAssertEqual(Timestamp.compact(784111777), "19941106T084937Z")
    }

    // MARK: Wrappers

    /// A backend whose reads fail a set number of times first: the wrapper under test cannot be
    /// driven into exact failure counts through a real server as cheaply.
    final class Flaky: ReadableBackend, @unchecked Sendable {
        var failures: Int
        let error: SLMError
        var calls = 0
        init(failures: Int, error: SLMError) { self.failures = failures; self.error = error }
        var location: String { "flaky" }
        var traffic: Traffic { Traffic() }
        func read(_ path: String, limit: Int) throws -> [UInt8]? {
            calls += 1
            if failures > 0 { failures -= 1; throw error }
            return [42]
        }
        /// Ranges asked for; a failing range read delivers the first half of what was asked first.
        var ranges: [Range<UInt64>] = []
        func readRange(_ path: String, range: Range<UInt64>, into consume: (UnsafeRawBufferPointer) throws -> Void) throws {
            calls += 1
            ranges.append(range)
            let bytes = range.map { UInt8(truncatingIfNeeded: $0) }
            let cut = failures > 0 ? bytes.count / 2 : bytes.count
            try bytes[..<cut].withUnsafeBytes { try consume($0) }
            if failures > 0 { failures -= 1; throw error }
        }
        /// A failing whole-file read delivers a third of the file first, in two pieces.
        func readStream(_ path: String, limit: Int, into consume: (UnsafeRawBufferPointer) throws -> Void) throws -> Bool {
            calls += 1
            let bytes = (0..<300).map { UInt8(truncatingIfNeeded: $0 * 7) }
            let cut = failures > 0 ? 100 : 300
            try bytes[..<(cut / 2)].withUnsafeBytes { try consume($0) }
            try bytes[(cut / 2)..<cut].withUnsafeBytes { try consume($0) }
            if failures > 0 { failures -= 1; throw error }
            return true
        }
        func readIfChanged(_ path: String, validator: String?, limit: Int) throws -> ConditionalRead { .absent }
        func exists(_ path: String) throws -> Bool { false }
    }

    func fastPolicy() -> RetryPolicy {
        var p = RetryPolicy()
        p.initialBackoff = 0.001
        p.maxBackoff = 0.002
        return p
    }

    func testTransientFailuresAreRetried() throws {
        let flaky = Flaky(failures: 2, error: .remoteStatus(url: "u", status: 503, problem: ""))
        XCTAssertEqual(try Retrying(flaky, policy: fastPolicy()).read("x", limit: 10), [42])
        XCTAssertEqual(flaky.calls, 3)
    }

    func testARetriedRangeAsksOnlyForWhatTheFailedAttemptDidNotDeliver() throws {
        let flaky = Flaky(failures: 2, error: .transport(url: "u", problem: "reset", transient: true))
        var got: [UInt8] = []
        try Retrying(flaky, policy: fastPolicy()).readRange("p", range: 1000..<1400) { got.append(contentsOf: $0) }
        XCTAssertEqual(got, (1000..<1400).map { UInt8(truncatingIfNeeded: $0) }, "each byte once, in order")
        XCTAssertEqual(flaky.ranges, [1000..<1400, 1200..<1400, 1300..<1400])
    }

    func testARetriedWholeFileStreamHandsOverEachByteOnce() throws {
        let flaky = Flaky(failures: 2, error: .transport(url: "u", problem: "reset", transient: true))
        var got: [UInt8] = []
        XCTAssertTrue(try Retrying(flaky, policy: fastPolicy()).readStream("p", limit: 1000) { got.append(contentsOf: $0) })
        XCTAssertEqual(got, (0..<300).map { UInt8(truncatingIfNeeded: $0 * 7) }, "each byte once, in order")
        XCTAssertEqual(flaky.calls, 3)
    }

    func testALocalWholeFileStreamIsBoundedAndAnswersAbsence() throws {
        let dir = TestSupport.scratch()
        TestSupport.write(TestSupport.random(3 << 20, seed: 4), to: dir + "/objects/ab/cd")
        let backend = LocalBackend(root: dir)
        var got: [UInt8] = []
        var pieces = 0
        XCTAssertTrue(try backend.readStream("objects/ab/cd", limit: 3 << 20) { got.append(contentsOf: $0); pieces += 1 })
        XCTAssertEqual(got, TestSupport.random(3 << 20, seed: 4))
        XCTAssertGreaterThan(pieces, 1, "streamed in pieces, not whole")
        XCTAssertFalse(try backend.readStream("objects/ab/none", limit: 10) { _ in XCTFail("nothing to consume") })
        XCTAssertThrowsError(try backend.readStream("objects/ab/cd", limit: (3 << 20) - 1) { _ in XCTFail("refused before reading") }) {
            XCTAssertTrue("\($0)".contains("more than the"), "\($0)")
        }
    }

    func testPermanentFailuresAreNotRetried() {
        let flaky = Flaky(failures: 2, error: .remoteStatus(url: "u", status: 401, problem: ""))
        XCTAssertThrowsError(try Retrying(flaky, policy: fastPolicy()).read("x", limit: 10))
        XCTAssertEqual(flaky.calls, 1)
    }

    func testRetriesStopAfterTheAttemptLimit() {
        let flaky = Flaky(failures: 100, error: .transport(url: "u", problem: "reset", transient: true))
        XCTAssertThrowsError(try Retrying(flaky, policy: fastPolicy()).read("x", limit: 10)) { error in
            XCTAssertTrue("\(error)".contains("after 5 attempts"), "\(error)")
        }
        XCTAssertEqual(flaky.calls, 5)
    }

    func testACancelledOperationStopsRetryingWithCancelled() {
        let flaky = Flaky(failures: 100, error: .transport(url: "u", problem: "reset", transient: true))
        var p = fastPolicy()
        p.initialBackoff = 10
        p.maxBackoff = 10
        let start = Date()
        let cancelled = ManagedAtomicFlag()
        DispatchQueue.global().asyncAfter(deadline: .now() + 0.2) { cancelled.set() }
        XCTAssertThrowsError(try Retrying(flaky, policy: p, isCancelled: { cancelled.isSet }).read("x", limit: 10)) { error in
            XCTAssertEqual(error as? SLMError, .cancelled)
        }
        XCTAssertLessThan(Date().timeIntervalSince(start), 2, "a stop request cuts the backoff short")
    }

    func testTheRateLimitHoldsAcrossRequests() throws {
        try backend.write("f", bytes: [UInt8](repeating: 1, count: 200_000))
        let limited = RateLimited(backend, bytesPerSecond: 1_000_000)
        let start = Date()
        for _ in 0..<3 { _ = try limited.read("f", limit: 1 << 20) }
        XCTAssertGreaterThan(Date().timeIntervalSince(start), 0.5, "600 KB at 1 MB/s takes about 0.6 s")
    }

    // MARK: Opening

    func testUnknownSchemesAreRefusedNotTakenForDirectories() throws {
        for location in ["gs://b/p", "ftp://host/x", "s4://bucket/x"] {
            XCTAssertThrowsError(try Remotes.open(location)) { error in
                guard case SLMError.argument(let m) = error else { return XCTFail("\(error)") }
                XCTAssertTrue(m.contains(location), m)
            }
        }
    }

    func testHTTPRemotesAreReadOnly() throws {
        let r = try Remotes.open("http://127.0.0.1:9/store")
        XCTAssertNil(r as? any StoreBackend, "a static web server offers reads only")
        XCTAssertThrowsError(try Remotes.openWritable("http://127.0.0.1:9/store", for: "push")) { error in
            guard case SLMError.argument(let m) = error else { return XCTFail("\(error)") }
            XCTAssertTrue(m.contains("read-only"), m)
        }
    }

    func testDirectoryRemotesAreWritableThroughTheWrappers() throws {
        var options = Remotes.Options()
        options.maxBytesPerSecond = 1e9
        let w = try Remotes.openWritable(dir, options: options, for: "push")
        try w.write("x", bytes: [1])
        XCTAssertEqual(try w.read("x", limit: 1), [1])
    }
}
