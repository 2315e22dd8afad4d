import XCTest
@testable import SLMStoreKit
@testable import SLMFormats
@testable import SLMLocalStore
@testable import SLMRemote
@testable import SLMDevice
@testable import SLMPages
import SLMTestSupport
import SLMSynthetic

/// The multi-pack index (Format.md §6.1), the bounded live set and the listing cache: what keeps
/// every command's cost to what it touches in a store of millions of chunks.
final class LargeStoreTests: XCTestCase {
    var dir = ""
    var store: Store!

    override func setUp() {
        dir = TestSupport.scratch()
        store = try! Store.create(at: dir + "/store")
    }

    /// Adds `files` as `ref`, cut into packs of about 256 KiB so a few MiB make many packs.
    @discardableResult
    func add(_ ref: String, _ files: [String: [UInt8]]) throws -> AddResult {
        let src = dir + "/src-\(FileSystem.randomHex(4))"
        for (name, bytes) in files { TestSupport.write(bytes, to: "\(src)/\(name)") }
        guard case let .exact(name, version) = try VersionRef.parse(ref) else { fatalError() }
        var options = AddOptions()
        options.packTargetSize = 256 << 10
        return try store.add(name: name, version: version, inputs: try AddInputs.collect([src]), options: options)
    }

    func checkout(_ ref: String) throws -> [UInt8] {
        let r = try store.resolve(ref)
        let out = dir + "/out-\(FileSystem.randomHex(4))"
        let tree = try store.readTree(r.object.tree)
        _ = try store.checkout(tree: tree, versionLabel: ref, to: out, force: false)
        return TestSupport.read("\(out)/\(tree.files[0].path)")
    }

    /// A large pull lands in few packs: their records, not only their number, call for the
    /// multi-pack index, or every later command would read them all into memory.
    func testManyRecordsInFewPacksOutsideTheMultiPackIndexGetItRewritten() throws {
        let r = try add("m@1.0.0", ["a.bin": TestSupport.random(3_000_000, seed: 7)])
        let packs = try store.packsOutsideMultiPackIndex().count
        XCTAssertLessThan(packs, Store.uncoveredPackLimit)
        XCTAssertGreaterThan(r.newChunks, 20)
        store.refreshMultiPackIndexIfBehind(recordLimit: r.newChunks + 1)
        XCTAssertFalse(FileSystem.exists(store.multiPackIndexPath), "fewer records than the limit: left alone")
        store.refreshMultiPackIndexIfBehind(recordLimit: r.newChunks)
        XCTAssertTrue(FileSystem.exists(store.multiPackIndexPath))
        XCTAssertEqual(try store.packsOutsideMultiPackIndex(), [])
        XCTAssertEqual(try store.loadChunkIndex().inMemoryRecords, 0)
        XCTAssertEqual(try checkout("m@1.0.0"), TestSupport.random(3_000_000, seed: 7))
    }

    func testMultiPackIndexLocatesEveryEntryOfEveryPackAsItsPackIndexDoes() throws {
        for n in 0..<9 { try add("m@1.\(n).0", ["a.bin": TestSupport.random(400_000, seed: UInt64(n))]) }
        let r = try store.maintenance()
        XCTAssertGreaterThanOrEqual(r.packs, 9)
        let index = try store.loadChunkIndex()
        XCTAssertEqual(index.inMemoryRecords, 0, "covered packs are searched in the multi-pack index, not read into memory")
        var checked = 0
        for pack in try store.packIDs() {
            for e in try store.readPackIndex(pack).entries {
                XCTAssertEqual(index.location(of: e.id), e.location(in: pack))
                checked += 1
            }
        }
        XCTAssertEqual(UInt64(checked), r.entries)
        XCTAssertNil(index.location(of: ChunkID(high: 1, low: 2)))
        XCTAssertNil(index.location(of: ChunkID(high: .max, low: .max)))
    }

    func testMultiPackIndexFileHasTheLayoutFormatMdGives() throws {
        try add("m@1.0.0", ["a.bin": TestSupport.random(1_000_000, seed: 3)])
        _ = try store.maintenance()
        let bytes = TestSupport.read(store.multiPackIndexPath)
        let packs = try store.packIDs().sorted()
        let entries = try packs.map { try store.readPackIndex($0).entries.count }.reduce(0, +)
        XCTAssertEqual(Array(bytes[0..<8]), Array("SLMMIDX\0".utf8))
        XCTAssertEqual(bytes.readLE(UInt32.self, at: 8), 1)
        XCTAssertEqual(Int(bytes.readLE(UInt32.self, at: 12)), packs.count)
        XCTAssertEqual(Int(bytes.readLE(UInt64.self, at: 16)), entries)
        XCTAssertEqual(bytes.count, 24 + 24 * packs.count + 40 * entries + 65536 * 4 + 32)
        XCTAssertEqual(Hex.encode(bytes[24..<40]), packs[0].hex)
        XCTAssertEqual(bytes.readLE(UInt64.self, at: 24 + 16 * packs.count), try store.readPackIndex(packs[0]).packSize)
        // The fan-out (by the ids' first two bytes) sits after the entries; its last count is the entry count.
        let fanOut = 24 + 24 * packs.count + 40 * entries
        XCTAssertEqual(Int(bytes.readLE(UInt32.self, at: fanOut + 4 * 65535)), entries)
        let firstBucket = Int(bytes[24 + 24 * packs.count]) << 8 | Int(bytes[24 + 24 * packs.count + 1])
        XCTAssertEqual(bytes.readLE(UInt32.self, at: fanOut + 4 * firstBucket), 1, "one entry up to the first id's bucket")
        XCTAssertEqual(Array(bytes.suffix(32)), SHA256Hasher.hash(Array(bytes.dropLast(32))).bytes)
        // Entries are sorted by id, and the first one's fields are those of its pack index.
        let first = 24 + 24 * packs.count
        let id = ChunkID(canonical: bytes[first..<first + 16])!
        let pack = packs[Int(bytes.readLE(UInt32.self, at: first + 32))]
        let e = try XCTUnwrap(try store.readPackIndex(pack).entries.first { $0.id == id })
        XCTAssertEqual(bytes.readLE(UInt64.self, at: first + 16), e.offset)
        XCTAssertEqual(bytes.readLE(UInt32.self, at: first + 24), e.storedLength)
        XCTAssertEqual(bytes.readLE(UInt32.self, at: first + 28), e.rawLength)
        XCTAssertEqual(bytes[first + 36], e.codec.rawValue)
        let allIDs = try packs.flatMap { try store.readPackIndex($0).entries.map(\.id) }.sorted()
        XCTAssertEqual(id, allIDs[0])
    }

    func testAddWritesTheMultiPackIndexOnceSixteenPacksAreOutsideIt() throws {
        var n = 0
        while try store.packsOutsideMultiPackIndex().count < Store.uncoveredPackLimit - 1 {
            try add("m@1.0.\(n)", ["a.bin": TestSupport.random(200_000, seed: UInt64(n))])
            n += 1
        }
        XCTAssertFalse(FileSystem.exists(store.multiPackIndexPath))
        try add("m@2.0.0", ["a.bin": TestSupport.random(600_000, seed: 99)])
        XCTAssertTrue(FileSystem.exists(store.multiPackIndexPath))
        XCTAssertEqual(try store.packsOutsideMultiPackIndex(), [])
    }

    func testPacksAddedAfterTheMultiPackIndexAreReadFromTheirOwnIndexes() throws {
        let a = TestSupport.random(1_000_000, seed: 4), b = TestSupport.random(1_000_000, seed: 5)
        try add("m@1.0.0", ["a.bin": a])
        _ = try store.maintenance()
        try add("m@1.1.0", ["a.bin": b])
        XCTAssertGreaterThan(try store.loadChunkIndex().inMemoryRecords, 0)
        XCTAssertSameBytes(try checkout("m@1.0.0"), a)
        XCTAssertSameBytes(try checkout("m@1.1.0"), b)
    }

    func testAMultiPackIndexListingPacksGCRemovedSkipsTheirEntries() throws {
        let a = TestSupport.random(1_000_000, seed: 6), b = TestSupport.random(1_000_000, seed: 7)
        try add("m@1.0.0", ["a.bin": a])
        try add("m@1.1.0", ["a.bin": b])
        _ = try store.maintenance()
        let stale = TestSupport.read(store.multiPackIndexPath)
        try store.removeVersion(try store.resolve("m@1.0.0"))
        _ = try store.gc()
        // As if gc had been killed before it wrote the index again.
        TestSupport.write(stale, to: store.multiPackIndexPath)
        let index = try store.loadChunkIndex()
        let tree = try store.readTree(try store.resolve("m@1.1.0").object.tree)
        for c in try tree.files[0].chunks.refs() { XCTAssertNotNil(index.location(of: c.id)) }
        let gone = try store.readTree(try store.readVersion(try XCTUnwrap(try store.readVersion(try store.resolve("m@1.1.0").id).parent)).tree)
        for c in try gone.files[0].chunks.refs() { XCTAssertNil(index.location(of: c.id), "an entry of a deleted pack is never returned") }
        XCTAssertSameBytes(try checkout("m@1.1.0"), b)
        let report = try store.verify()
        XCTAssertTrue(report.ok, "\(report.problems)")
        XCTAssertTrue(report.notes.contains { $0.contains("since removed") }, "\(report.notes)")
    }

    func testAMalformedMultiPackIndexIsPassedOverForThePackIndexes() throws {
        let a = TestSupport.random(1_000_000, seed: 8)
        try add("m@1.0.0", ["a.bin": a])
        _ = try store.maintenance()
        let good = TestSupport.read(store.multiPackIndexPath)
        for bad in [Array(good.prefix(good.count - 7)), [UInt8](repeating: 0, count: 8) + good.dropFirst(8), Array(good.prefix(20))] {
            TestSupport.write(bad, to: store.multiPackIndexPath)
            XCTAssertThrowsError(try MultiPackIndex.open(store.multiPackIndexPath))
            XCTAssertGreaterThan(try store.loadChunkIndex().inMemoryRecords, 0)
            XCTAssertSameBytes(try checkout("m@1.0.0"), a)
            XCTAssertFalse(try store.verify().ok, "verify reports a malformed multi-pack index")
        }
        _ = try store.maintenance()
        XCTAssertTrue(try store.verify().ok)
    }

    func testAnEntryPointingOutsideItsPackIsNeverReturned() throws {
        try add("m@1.0.0", ["a.bin": TestSupport.random(1_000_000, seed: 9)])
        _ = try store.maintenance()
        var bytes = TestSupport.read(store.multiPackIndexPath)
        let packs = Int(bytes.readLE(UInt32.self, at: 12))
        let first = 24 + 24 * packs
        let id = ChunkID(canonical: bytes[first..<first + 16])!
        // The offset of the first entry, moved past the end of its pack (the checksum is not
        // checked on open: bounds are checked on every lookup instead).
        for k in 0..<8 { bytes[first + 16 + k] = 0xff }
        TestSupport.write(bytes, to: store.multiPackIndexPath)
        XCTAssertNil(try store.loadChunkIndex().location(of: id))
        let report = try store.verify()
        XCTAssertTrue(report.problems.contains { $0.message.contains("checksum mismatch") }, "\(report.problems)")
    }

    func testVerifyReportsAMultiPackIndexThatDisagreesWithThePackIndexes() throws {
        try add("m@1.0.0", ["a.bin": TestSupport.random(1_000_000, seed: 10)])
        _ = try store.maintenance()
        var bytes = TestSupport.read(store.multiPackIndexPath)
        let first = 24 + 24 * Int(bytes.readLE(UInt32.self, at: 12))
        bytes[first + 28] ^= 1  // a raw length
        bytes.replaceSubrange(bytes.count - 32..<bytes.count, with: SHA256Hasher.hash(Array(bytes.dropLast(32))).bytes)
        TestSupport.write(bytes, to: store.multiPackIndexPath)
        let report = try store.verify()
        XCTAssertTrue(report.problems.contains { $0.message.contains("does not match the pack indexes") }, "\(report.problems)")
    }

    func testGCKeepsExactlyOneCopyOfAChunkStoredInTwoPacks() throws {
        let a = TestSupport.random(600_000, seed: 11)
        try add("m@1.0.0", ["a.bin": a])
        // A second copy of every record, as a pull from another remote could leave.
        let pack = try store.packIDs()[0]
        let copy = PackID.random()
        try FileSystem.writeAtomically(TestSupport.read(store.packPath(pack)), to: store.packPath(copy))
        try FileSystem.writeAtomically(TestSupport.read(store.packIndexPath(pack)), to: store.packIndexPath(copy))
        _ = try store.maintenance()
        let r = try store.gc(rewriteBelow: 0.5)
        XCTAssertEqual(r.packsDeleted, 1)
        XCTAssertEqual(try store.packIDs().count, 1)
        XCTAssertSameBytes(try checkout("m@1.0.0"), a)
        XCTAssertTrue(try store.verify().ok)
    }

    func testChunkIDSetHoldsEachIdOnceInOrder() {
        var b = ChunkIDSet.Builder()
        var expected = Set<ChunkID>()
        var rng = SystemRandomNumberGenerator()
        for _ in 0..<300_000 {
            // Few distinct values, many repeats, as versions sharing chunks give.
            let id = ChunkID(high: UInt64.random(in: 0..<5000, using: &rng), low: 7)
            b.insert(id)
            expected.insert(id)
        }
        let set = b.build()
        XCTAssertEqual(set.count, expected.count)
        XCTAssertEqual(Array(set.members), expected.sorted())
        for id in expected { XCTAssertTrue(set.contains(id)) }
        XCTAssertFalse(set.contains(ChunkID(high: 5000, low: 7)))
        var more = ChunkIDSet.Builder()
        more.insert(ChunkID(high: 9_999, low: 0))
        more.insert(ChunkID(high: 0, low: 7))
        let both = set.union(more.build())
        XCTAssertEqual(both.count, expected.count + 1)
        XCTAssertTrue(both.contains(ChunkID(high: 9_999, low: 0)))
    }

    func testListingFiguresComeFromTheCacheAndAreComputedAgainWhenItIsDamaged() throws {
        try add("m@1.0.0", ["a.bin": TestSupport.random(500_000, seed: 12)])
        let id = try store.resolve("m@1.0.0").id
        let computed = try store.cachedListing(of: id, index: { XCTFail("add already cached the figures"); return try self.store.loadChunkIndex() })
        XCTAssertEqual(computed.stats.rawBytes, 500_000)
        TestSupport.write(Array("garbage".utf8), to: store.versionStatsCacheRoot + "/" + id.hex)
        var loads = 0
        let again = try store.cachedListing(of: id, index: { loads += 1; return try self.store.loadChunkIndex() })
        XCTAssertEqual(loads, 1)
        XCTAssertEqual(again.stats.storedBytes, computed.stats.storedBytes)
        XCTAssertEqual(again.created, try store.readVersion(id).created)
    }

    func testASpilledLiveSetGivesBackEveryIdOnceInTheRangeItsTopBitsName() throws {
        let spill = try ChunkIDSpill(directory: TestSupport.scratch(), bits: 3)
        var all = Set<ChunkID>()
        var rng = SplitMix(7)
        for i in 0..<20_000 {
            let id = ChunkID(high: rng.next(), low: rng.next())
            all.insert(id)
            try spill.append(id)
            if i % 3 == 0 { try spill.append(id) }  // trees repeat ids
        }
        try spill.finish()
        var back: [ChunkID] = []
        for r in 0..<spill.ranges {
            try spill.forEachID(in: r) { id in
                XCTAssertEqual(spill.range(of: id), r)
                back.append(id)
            }
        }
        XCTAssertEqual(back, all.sorted())
    }
}
