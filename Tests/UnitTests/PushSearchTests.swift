import XCTest
@testable import SLMStoreKit
@testable import SLMFormats
@testable import SLMLocalStore
@testable import SLMRemote
@testable import SLMDevice
@testable import SLMPages
import SLMTestSupport

/// What a push reads of a remote: the pack indexes where its chunks may be, through a cache,
/// each checked against the checksum the remote's manifest lists.
final class PushSearchTests: XCTestCase {
    var dir = ""
    var store: Store!
    var remote: LocalBackend!

    override func setUpWithError() throws {
        dir = TestSupport.scratch()
        store = try Store.create(at: dir + "/store")
        remote = LocalBackend(root: dir + "/remote")
    }

    func add(_ ref: String, _ bytes: [UInt8]) throws {
        TestSupport.write(bytes, to: "\(dir)/src-\(ref)/w.bin")
        guard case let .exact(name, version) = try VersionRef.parse(ref) else { fatalError() }
        _ = try store.add(name: name, version: version, inputs: try AddInputs.collect(["\(dir)/src-\(ref)"]))
    }

    func push(_ ref: String, wholeSearchLimit: Int = RemoteSetup.wholeSearchLimit) throws -> PushResult {
        var o = PushOptions()
        o.packTargetSize = 256 << 10
        o.wholeSearchLimit = wholeSearchLimit
        return try store.push(to: remote, refs: [try VersionRef.parse(ref)], options: o)
    }

    func manifest() throws -> Manifest {
        try TestSupport.publishedManifest(dir + "/remote")
    }

    func testOnALargeRemoteAPushSearchesOnlyThePacksOfTheModelsItPushes() throws {
        let base = TestSupport.random(2_000_000, seed: 1)
        try add("a@1.0.0", TestSupport.random(2_000_000, seed: 2))
        try add("b@1.0.0", base)
        try add("b@1.1.0", base + TestSupport.random(300_000, seed: 3))
        _ = try push("a@1.0.0", wholeSearchLimit: 0)
        _ = try push("b@1.0.0", wholeSearchLimit: 0)
        let m = try manifest()
        let bPacks = m.models["b"]!.versions[0].packs
        XCTAssertGreaterThan(m.packs.count, bPacks.count)
        let r = try push("b@1.1.0", wholeSearchLimit: 0)
        XCTAssertLessThanOrEqual(r.packIndexesSearched, bPacks.count, "a's packs are not searched")
        XCTAssertLessThan(r.bytesCopied, 600_000, "b@1.0.0's chunks are found, not sent again")
        let listed = try manifest().models["b"]!.versions.first { $0.version == "1.1.0" }!.packs
        XCTAssertTrue(Set(bPacks).isSubset(of: Set(listed)), "the manifest lists the packs holding the unchanged chunks too")
        let device = try Store.create(at: dir + "/device")
        var o = PullOptions()
        o.installDirectory = dir + "/install"
        _ = try device.pull(from: remote, ref: try VersionRef.parse("b@1.1.0"), options: o)
        XCTAssertEqual(TestSupport.read(dir + "/install/current/w.bin"), base + TestSupport.random(300_000, seed: 3))
    }

    func testASmallRemoteIsSearchedWholeSoAChunkOfAnotherModelIsNotSentAgain() throws {
        let shared = TestSupport.random(1_500_000, seed: 4)
        try add("a@1.0.0", shared)
        try add("c@1.0.0", shared)
        _ = try push("a@1.0.0")
        let r = try push("c@1.0.0")
        XCTAssertEqual(r.chunksCopied, 0)
    }

    /// The remote's copies of indexes this store uploaded or read before are not downloaded
    /// again: here they are damaged after the first push, and the second push still succeeds.
    func testASecondPushReadsThePackIndexesItHasSeenFromItsCache() throws {
        let base = TestSupport.random(1_500_000, seed: 5)
        try add("m@1.0.0", base)
        try add("m@1.1.0", base + TestSupport.random(100_000, seed: 6))
        _ = try push("m@1.0.0")
        for name in try FileSystem.listDirectory(dir + "/remote/packs") where name.hasSuffix(".idx") {
            TestSupport.flipByte(in: "\(dir)/remote/packs/\(name)", at: 40)
        }
        let r = try push("m@1.1.0")
        XCTAssertGreaterThan(r.packIndexesSearched, 0)
        XCTAssertLessThan(r.bytesCopied, 400_000)
    }

    /// A remote index that is not the one its manifest lists (by checksum) is refused: a push
    /// never decides what the remote holds from a forged index.
    func testAPackIndexDifferentFromTheOneTheManifestListsIsRefused() throws {
        try add("m@1.0.0", TestSupport.random(1_500_000, seed: 7))
        try add("m@1.1.0", TestSupport.random(1_500_000, seed: 8))
        _ = try push("m@1.0.0")
        // The publisher's cache is gone (another machine); the first index is forged meanwhile.
        let other = try Store.open(at: dir + "/store")
        FileSystem.removeTree(other.remoteIndexCache(for: remote.location))
        let indexes = try FileSystem.listDirectory(dir + "/remote/packs").filter { $0.hasSuffix(".idx") }.sorted()
        XCTAssertGreaterThan(indexes.count, 1)
        // A valid index, but another pack's.
        TestSupport.write(TestSupport.read("\(dir)/remote/packs/\(indexes[1])"), to: "\(dir)/remote/packs/\(indexes[0])")
        let before = TestSupport.snapshot(dir + "/remote")
        XCTAssertThrowsError(try push("m@1.1.0")) { error in
            guard case SLMError.remote(_, let problem) = error else { return XCTFail("\(error)") }
            XCTAssertTrue(problem.contains("checksum"), problem)
        }
        XCTAssertEqual(TestSupport.snapshot(dir + "/remote"), before, "nothing was written")
    }

    /// A manifest larger than readers accept is never written: the one there stays.
    func testAManifestTooLargeForReadersIsNotWritten() throws {
        try add("m@1.0.0", TestSupport.random(300_000, seed: 9))
        _ = try push("m@1.0.0")
        let before = TestSupport.read(dir + "/remote/manifest.json")
        let reader = RemoteReader(remote: remote, cacheDirectory: nil)
        XCTAssertThrowsError(try RemoteSetup.replaceManifest(remote, reader: reader, known: RemoteSetup.PackChecksums(),
                                                             sizeLimit: before.count - 1)) { error in
            XCTAssertTrue("\(error)".contains("more than the \(before.count - 1) a reader accepts"), "\(error)")
        }
        XCTAssertEqual(TestSupport.read(dir + "/remote/manifest.json"), before)
    }
}
