import XCTest
@testable import SLMStoreKit
@testable import SLMFormats
@testable import SLMLocalStore
@testable import SLMRemote
@testable import SLMDevice
@testable import SLMPages
import SLMTestSupport

/// How pull planning reads a remote's pack indexes: entry by entry from the local cache file,
/// after the whole file was checked, never from a file the manifest's checksum disowns.
final class RemoteIndexReadTests: XCTestCase {
    var dir = ""
    var pack: PackID!
    var cache = ""

    override func setUpWithError() throws {
        dir = TestSupport.scratch()
        let store = try Store.create(at: dir + "/store")
        TestSupport.write(TestSupport.random(3_000_000, seed: 7), to: dir + "/src/w.bin")
        _ = try store.add(name: try ModelName("m"), version: try SemVer("1.0.0"), inputs: try AddInputs.collect([dir + "/src"]))
        _ = try store.push(to: LocalBackend(root: dir + "/remote"), refs: [])
        pack = try XCTUnwrap(try manifest().packs.first)
        cache = dir + "/cache"
    }

    func manifest() throws -> Manifest {
        try TestSupport.publishedManifest(dir + "/remote")
    }

    /// A reader that has read the manifest, as a pull's has.
    func reader() throws -> RemoteReader {
        let r = RemoteReader(remote: LocalBackend(root: dir + "/remote"), cacheDirectory: cache)
        _ = try r.manifest(models: nil)
        return r
    }

    func streamed(_ r: RemoteReader) throws -> [PackIndexEntry] {
        var out: [PackIndexEntry] = []
        try r.forEachIndexEntry(pack) { out.append($0) }
        return out
    }

    func cachedFile() throws -> String {
        let files = try FileSystem.listDirectory(cache)
        XCTAssertEqual(files.count, 1, "\(files)")
        return cache + "/" + files[0]
    }

    func testStreamedEntriesAreTheIndexInIdOrderAndComeFromTheCacheOnceFetched() throws {
        let whole = try PackIndex.decode(TestSupport.read("\(dir)/remote/packs/\(pack.hex).idx"), source: "idx")
        XCTAssertGreaterThan(whole.entries.count, 20)
        XCTAssertEqual(try streamed(try reader()), whole.entries)
        FileSystem.remove("\(dir)/remote/packs/\(pack.hex).idx")
        XCTAssertEqual(try streamed(try reader()), whole.entries, "read from the cache")
    }

    func testADamagedCacheFileIsFetchedAgainBeforeAnyEntryIsUsed() throws {
        let whole = try streamed(try reader())
        let file = try cachedFile()
        var bytes = TestSupport.read(file)
        bytes[PackFormat.indexHeaderSize + 20] ^= 0xff   // an offset inside the first entry
        TestSupport.write(bytes, to: file)
        XCTAssertEqual(try streamed(try reader()), whole)
        XCTAssertEqual(TestSupport.read(file), TestSupport.read("\(dir)/remote/packs/\(pack.hex).idx"), "the cache was repaired")
    }

    func testAnotherValidIndexCachedUnderThePacksNameIsNotBelieved() throws {
        let whole = try streamed(try reader())
        let other = PackIndex(packSize: 1 << 20, entries: [PackIndexEntry(id: ChunkID(high: 1, low: 2), offset: 16, storedLength: 10,
                                                                          rawLength: 10, codec: .raw)])
        TestSupport.write(other.encoded(), to: try cachedFile())
        XCTAssertEqual(try streamed(try reader()), whole)
    }

    func testARemoteServingAnIndexOtherThanTheManifestListsIsARemoteError() throws {
        let r = try reader()
        let other = PackIndex(packSize: 1 << 20, entries: [PackIndexEntry(id: ChunkID(high: 1, low: 2), offset: 16, storedLength: 10,
                                                                          rawLength: 10, codec: .raw)])
        TestSupport.write(other.encoded(), to: "\(dir)/remote/packs/\(pack.hex).idx")
        XCTAssertThrowsError(try streamed(r)) { error in
            guard case SLMError.remote(_, let problem) = error else { return XCTFail("\(error)") }
            XCTAssertTrue(problem.contains("the manifest lists"), problem)
        }
        let cached = FileSystem.exists(cache) ? try FileSystem.listDirectory(cache) : []
        XCTAssertEqual(cached, [], "nothing was cached")
    }
}
