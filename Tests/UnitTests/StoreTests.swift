import XCTest
@testable import SLMStoreKit
@testable import SLMFormats
@testable import SLMLocalStore
@testable import SLMRemote
@testable import SLMDevice
@testable import SLMPages
import SLMSynthetic
import SLMTestSupport

/// Adding and reading back through the library: exact bytes, dedup, immutability, damage.
final class StoreTests: XCTestCase {
    var dir = ""
    var store: Store!

    override func setUp() {
        dir = TestSupport.scratch()
        store = try! Store.create(at: dir + "/store")
    }

    func addFiles(_ ref: String, _ files: [String: [UInt8]]) throws -> AddResult {
        let src = dir + "/src-\(FileSystem.randomHex(4))"
        for (name, bytes) in files { TestSupport.write(bytes, to: "\(src)/\(name)") }
        guard case let .exact(name, version) = try VersionRef.parse(ref) else { fatalError() }
        return try store.add(name: name, version: version, inputs: try AddInputs.collect([src]))
    }

    func checkoutBytes(_ ref: String) throws -> [String: [UInt8]] {
        let r = try store.resolve(ref)
        let out = dir + "/out-\(FileSystem.randomHex(4))"
        _ = try store.checkout(tree: try store.readTree(r.object.tree), versionLabel: ref, to: out, force: false)
        var result: [String: [UInt8]] = [:]
        for f in try store.readTree(r.object.tree).files { result[f.path] = TestSupport.read("\(out)/\(f.path)") }
        return result
    }

    /// A tree of `chunks` chunk refs in three files (a safetensors table in the middle one).
    func largeTree(chunks: Int) -> TreeObject {
        var files: [FileEntry] = []
        for (i, n) in [chunks / 4, chunks / 2, chunks - chunks / 4 - chunks / 2].enumerated() {
            let refs = (0..<n).map { ChunkRef(id: ChunkID(high: UInt64(i), low: UInt64($0)), rawLength: 16 + UInt32($0 % 7)) }
            let size = refs.reduce(UInt64(0)) { $0 + UInt64($1.rawLength) }
            let header = i == 1 ? SafetensorsHeader(headerLength: 8, tensors: [TensorInfo(name: "w", dtype: "F32", shape: [2], begin: 8, end: 16)], metadata: [:]) : nil
            files.append(FileEntry(path: "dir/f\(i)", size: size, sha256: SHA256Hasher.hash([UInt8(i)]), chunks: refs, safetensors: header))
        }
        return TreeObject(files: files)
    }

    func testATreeReadFromItsFileEqualsTheTreeHeldInMemory() throws {
        let tree = largeTree(chunks: 30_001)
        let path = dir + "/tree"
        TestSupport.write(try tree.encoded(), to: path)
        let fromFile = try TreeObject.decode(file: try FileDescriptor.openForReading(path), id: try tree.id(), source: path)
        XCTAssertTrue(fromFile.files.allSatisfy { $0.chunks.isFileBacked })
        XCTAssertEqual(fromFile, tree)
        XCTAssertEqual(try fromFile.encoded(), try tree.encoded())
        // Indexed out of order too (the cache holds one block; the middle file's list starts
        // at an offset that is not a multiple of 20 from the first's).
        for i in [15_000, 3, 14_999, 7_000, 0, 14_999].map({ $0 % fromFile.files[1].chunks.count }) {
            XCTAssertEqual(try fromFile.files[1].chunks.ref(at: i), try tree.files[1].chunks.ref(at: i))
            XCTAssertEqual(try fromFile.files[0].chunks.ref(at: i % 7_500), try tree.files[0].chunks.ref(at: i % 7_500))
        }
    }

    func testAChunkListWhoseFileFailsUnderItThrowsInsteadOfStoppingTheProcess() throws {
        let tree = largeTree(chunks: 30_001)
        let path = dir + "/tree"
        TestSupport.write(try tree.encoded(), to: path)
        let fromFile = try TreeObject.decode(file: try FileDescriptor.openForReading(path), id: try tree.id(), source: path)
        // The descriptor stays open: cutting the file short under it is a disk read that fails.
        XCTAssertEqual(truncate(path, 64), 0)
        let list = fromFile.files[2].chunks
        XCTAssertTrue(list.isFileBacked)
        for read in [{ _ = try list.ref(at: list.count - 1) }, { try list.forEach { _ in } }, { _ = try fromFile.encoded() },
                     { _ = try list.contains { _ in false } }] as [() throws -> Void] {
            XCTAssertThrowsError(try read()) { XCTAssertTrue("\($0)".contains(path) && "\($0)".contains("chunk list"), "\($0)") }
        }
        XCTAssertNotEqual(fromFile, tree, "a list that cannot be read equals no list")
    }

    func testATreeFileIsCheckedAgainstItsIdAndItsStructure() throws {
        let tree = largeTree(chunks: 1000)
        var bytes = try tree.encoded()
        let path = dir + "/tree"
        bytes[bytes.count / 2] ^= 1
        TestSupport.write(bytes, to: path)
        XCTAssertThrowsError(try TreeObject.decode(file: try FileDescriptor.openForReading(path), id: try tree.id(), source: path)) {
            XCTAssertTrue("\($0)".contains("does not hash to its id") || "\($0)".contains("add up to"), "\($0)")
        }
        TestSupport.write(Array(try tree.encoded().dropLast(30)), to: path)
        XCTAssertThrowsError(try TreeObject.decode(file: try FileDescriptor.openForReading(path), id: try tree.id(), source: path)) {
            XCTAssertTrue("\($0)".contains("truncated") || "\($0)".contains("larger than the object"), "\($0)")
        }
    }

    func testAnObjectCopiedFromAFileIsCheckedAgainstItsIdBeforeItIsStored() throws {
        let bytes = Array("an object".utf8)
        TestSupport.write(bytes, to: dir + "/object")
        let wrong = SHA256Hasher.hash(Array("another object".utf8))
        XCTAssertThrowsError(try store.writeObject(file: try FileDescriptor.openForReading(dir + "/object"), id: wrong)) {
            XCTAssertTrue("\($0)".contains("does not hash to its id"), "\($0)")
        }
        XCTAssertFalse(store.hasObject(wrong))
        XCTAssertEqual(try FileSystem.listDirectory(FileSystem.dirname(store.objectPath(wrong))), [], "no temporary file left")
        try store.writeObject(file: try FileDescriptor.openForReading(dir + "/object"), id: SHA256Hasher.hash(bytes))
        XCTAssertEqual(try store.readObject(SHA256Hasher.hash(bytes), limit: 100), bytes)
    }

    func testALargeTreeIsReadFromItsObjectFileNotHeld() throws {
        let tree = largeTree(chunks: TreeObject.inMemoryLimit / 20 + 10)
        let id = try store.writeObject(tree.encoded())
        let read = try store.readTree(id)
        XCTAssertTrue(read.files.allSatisfy { $0.chunks.isFileBacked })
        XCTAssertEqual(read, tree)
        let small = try store.writeObject(largeTree(chunks: 100).encoded())
        XCTAssertFalse(try store.readTree(small).files[0].chunks.isFileBacked)
    }

    func testRoundTripIsBitExactAtEveryBoundarySize() throws {
        let p = store.config.chunker
        let sizes = [0, 1, p.minSize - 1, p.minSize, p.maxSize, p.maxSize + 1]
        var files: [String: [UInt8]] = [:]
        for (i, size) in sizes.enumerated() { files["f\(i).bin"] = TestSupport.random(size, seed: UInt64(i)) }
        files["random.bin"] = TestSupport.random(3_000_000, seed: 99)
        files["weights.bin"] = TestSupport.bf16Like(3_000_000, seed: 98)
        _ = try addFiles("m@1.0.0", files)
        XCTAssertSameFiles(try checkoutBytes("m@1.0.0"), files)
    }

    func testSafetensorsRoundTripIsBitExact() throws {
        let st = TestSupport.safetensors([("a", "BF16", [100_000], TestSupport.bf16Like(200_000, seed: 1)),
                                          ("b", "F32", [3], TestSupport.random(12, seed: 2)),
                                          ("c", "BF16", [300_000], TestSupport.bf16Like(600_000, seed: 3))])
        _ = try addFiles("m@1.0.0", ["model.safetensors": st, "config.json": Array("{}".utf8)])
        XCTAssertSameBytes(try checkoutBytes("m@1.0.0")["model.safetensors"] ?? [], st)
        let tree = try store.readTree(try store.resolve("m@1.0.0").object.tree)
        XCTAssertEqual(tree.file("model.safetensors")?.safetensors?.tensors.map(\.name), ["a", "b", "c"])
    }

    func testChunkSizesRespectTheConfiguredBounds() throws {
        _ = try addFiles("m@1.0.0", ["r.bin": TestSupport.random(4_000_000, seed: 5)])
        let tree = try store.readTree(try store.resolve("m@1.0.0").object.tree)
        let lengths = try tree.files[0].chunks.map { Int($0.rawLength) }
        for l in lengths.dropLast() {
            XCTAssertGreaterThanOrEqual(l, store.config.chunker.minSize)
            XCTAssertLessThanOrEqual(l, store.config.chunker.maxSize)
        }
        XCTAssertEqual(lengths.reduce(0, +), 4_000_000)
    }

    func testInsertionNearStartOfPlainFileChangesOnlyNearbyChunks() throws {
        let original = TestSupport.random(3_000_000, seed: 7)
        var edited = original
        edited.insert(contentsOf: [UInt8](repeating: 0xAB, count: 100), at: 1_000)
        _ = try addFiles("m@1.0.0", ["x.bin": original])
        let second = try addFiles("m@1.1.0", ["x.bin": edited])
        let a = try store.readTree(try store.resolve("m@1.0.0").object.tree).files[0].chunks.map(\.id)
        let b = try store.readTree(try store.resolve("m@1.1.0").object.tree).files[0].chunks.map(\.id)
        XCTAssertEqual(Array(a.dropFirst(2)), Array(b.dropFirst(2)).suffix(a.count - 2), "chunks after the edit are unchanged")
        XCTAssertLessThanOrEqual(second.newChunks, 2)
    }

    func testChangedTensorChangesOnlyItsOwnChunks() throws {
        let t = (0..<4).map { TestSupport.bf16Like(300_000, seed: UInt64(10 + $0)) }
        func model(_ ts: [[UInt8]]) -> [UInt8] {
            TestSupport.safetensors(ts.enumerated().map { ("t\($0.offset)", "BF16", [150_000], $0.element) })
        }
        var changed = t
        changed[2] = TestSupport.bf16Like(300_000, seed: 77)
        _ = try addFiles("m@1.0.0", ["m.safetensors": model(t)])
        _ = try addFiles("m@1.1.0", ["m.safetensors": model(changed)])
        let old = try store.readTree(try store.resolve("m@1.0.0").object.tree).files[0]
        let new = try store.readTree(try store.resolve("m@1.1.0").object.tree).files[0]
        let oldIDs = Set(try old.chunks.map(\.id))
        let dataStart = Int(new.safetensors!.dataStart)
        let tensorRange = (dataStart + 600_000)..<(dataStart + 900_000)
        var offset = 0
        for c in try new.chunks.refs() {
            let range = offset..<(offset + Int(c.rawLength))
            if !oldIDs.contains(c.id) {
                XCTAssertTrue(tensorRange.contains(range.lowerBound) && range.upperBound <= tensorRange.upperBound,
                              "new chunk \(range) lies outside the changed tensor \(tensorRange)")
            }
            offset = range.upperBound
        }
        XCTAssertEqual(new.chunks.count - (try new.chunks.refs()).filter { oldIDs.contains($0.id) }.count,
                       (try new.chunks.refs()).filter { !oldIDs.contains($0.id) }.count)
    }

    func testSecondVersionStoresOnlyNewChunks() throws {
        let a = TestSupport.random(2_000_000, seed: 1)
        let first = try addFiles("m@1.0.0", ["a.bin": a])
        let second = try addFiles("m@1.0.1", ["a.bin": a, "b.json": Array("{\"x\":1}".utf8)])
        XCTAssertEqual(second.newChunks, 1)
        XCTAssertEqual(second.reusedChunks, first.newChunks)
        XCTAssertEqual(try store.resolve("m@1.0.1").object.parent, first.versionID)
    }

    func testReaddingIdenticalVersionIsANoOp() throws {
        let files = ["a.bin": TestSupport.random(100_000, seed: 3)]
        let first = try addFiles("m@1.0.0", files)
        let before = TestSupport.snapshot(store.root)
        let again = try addFiles("m@1.0.0", files)
        XCTAssertTrue(again.alreadyPresent)
        XCTAssertEqual(again.versionID, first.versionID)
        XCTAssertEqual(TestSupport.snapshot(store.root), before)
    }

    func testReaddingVersionWithDifferentContentIsRefusedAndChangesNothing() throws {
        _ = try addFiles("m@1.0.0", ["a.bin": TestSupport.random(100_000, seed: 3)])
        let before = TestSupport.snapshot(store.root)
        XCTAssertThrowsError(try addFiles("m@1.0.0", ["a.bin": TestSupport.random(100_000, seed: 4)])) { e in
            XCTAssertTrue("\(e)".contains("already exists with different content"), "\(e)")
        }
        XCTAssertEqual(TestSupport.snapshot(store.root), before)
    }

    func testTreeWithEscapingPathIsRefusedAtCheckout() throws {
        for evil in ["../evil.txt", "/etc/evil", "a/../../evil"] {
            let entry = FileEntry(path: evil, size: 0, sha256: SHA256Hasher.hash([]), chunks: [], safetensors: nil)
            let treeID = try store.writeObject(TreeObject(files: [entry]).encoded())
            let v = VersionObject(name: "evil", version: try SemVer("1.0.\(evil.count)"), tree: treeID, parent: nil,
                                  created: Timestamp.now(), addedBy: "x", tool: "x")
            let vid = try store.writeObject(v.encoded())
            try store.writeRef(at: store.versionRefPath(try ModelName("evil"), v.version), id: vid)
            XCTAssertThrowsError(try checkoutBytes("evil@\(v.version)")) { e in
                XCTAssertTrue("\(e)".contains("unsafe file path"), "\(e)")
            }
        }
        XCTAssertFalse(FileSystem.exists(dir + "/evil.txt"))
    }

    func testFlippedPackByteIsReportedByVerifyAndCheckoutWritesNothing() throws {
        _ = try addFiles("m@1.0.0", ["a.bin": TestSupport.random(500_000, seed: 8), "b.txt": Array("hello".utf8)])
        XCTAssertTrue(try store.verify().ok)
        let pack = try store.packIDs()[0]
        let index = try store.readPackIndex(pack)
        let victim = index.entries.max { $0.storedLength < $1.storedLength }!
        TestSupport.flipByte(in: store.packPath(pack), at: victim.offset + UInt64(PackFormat.recordHeaderSize) + 10)

        let report = try store.verify()
        XCTAssertFalse(report.ok)
        XCTAssertEqual(report.damagedChunks, [victim.id.hex])
        XCTAssertTrue(report.hurtVersions.contains { $0.version == "m@1.0.0" && $0.file == "a.bin" })
        XCTAssertFalse(report.hurtVersions.contains { $0.file == "b.txt" })

        let out = dir + "/out"
        XCTAssertThrowsError(try store.checkout(tree: try store.readTree(try store.resolve("m@1.0.0").object.tree),
                                                versionLabel: "m@1.0.0", to: out, force: false)) { e in
            XCTAssertTrue("\(e)".contains(victim.id.hex) && "\(e)".contains("m@1.0.0 (a.bin)"), "\(e)")
        }
        XCTAssertFalse(FileSystem.exists(out + "/a.bin"))
    }

    /// A hostile index (its checksum is easy to recompute) whose offset plus record length passes
    /// 2^64 used to trap on the overflow; it is refused like any entry outside its pack.
    func testPackIndexEntryWhoseEndOverflowsIsRefusedNotATrap() throws {
        let entry = PackIndexEntry(id: ChunkID(high: 1, low: 2), offset: UInt64.max - 3, storedLength: 100, rawLength: 100, codec: .raw)
        let bytes = PackIndex(packSize: 1 << 20, entries: [entry]).encoded()
        XCTAssertThrowsError(try PackIndex.decode(bytes, source: "hostile.idx")) { error in
            XCTAssertTrue("\(error)".contains("lies outside the pack"), "\(error)")
        }
    }

    func testCheckoutInSmallBatchesGivesTheSameBytes() throws {
        let files = ["w.bin": TestSupport.bf16Like(5_000_000, seed: 41), "r.bin": TestSupport.random(3_000_000, seed: 42)]
        _ = try addFiles("m@1.0.0", files)
        let tree = try store.readTree(try store.resolve("m@1.0.0").object.tree)
        let out = dir + "/small-batches"
        _ = try store.checkout(tree: tree, versionLabel: "m@1.0.0", to: out, force: false, batchBytes: 1 << 20)
        for (name, bytes) in files { XCTAssertSameBytes(TestSupport.read("\(out)/\(name)"), bytes, name) }
    }

    /// A device seeds from its installed files in blocks sized by its memory budget; chunk
    /// boundaries do not depend on the block size, so it finds every chunk a publisher cut.
    func testSeedingInSmallBlocksFindsEveryChunk() throws {
        let files = ["w.bin": TestSupport.bf16Like(5_000_000, seed: 43)]
        let r = try addFiles("m@1.0.0", files)
        let wanted = ChunkIDSet(try store.readTree(r.treeID).files.flatMap { try $0.chunks.map(\.id) })
        let seed = dir + "/seed"
        TestSupport.write(files["w.bin"]!, to: seed + "/w.bin")
        let device = try Store.create(at: dir + "/device")
        let found = try device.ingestSeeds([seed], wanted: wanted, existing: ChunkIndex(), chunker: store.config.chunker,
                                           blockSize: 1 << 20, writeBatchBytes: 512 << 10, log: nil)
        XCTAssertEqual(found.chunks, wanted.count)
        XCTAssertEqual(Set(found.packs), Set(try device.packIDs()), "the packs the seeds went to are reported")
    }

    /// A pull plans a window of chunks at a time so its plan does not grow with the model: in
    /// tiny windows it fetches exactly the chunks and bytes one whole-version plan does (a chunk
    /// repeated in a later window included once), at a cost of at most a split range per window.
    func testAPullPlannedInSmallWindowsFetchesWhatOneWholePlanDoes() throws {
        let weights = TestSupport.bf16Like(3_000_000, seed: 5)
        let files = ["a.bin": weights, "b.bin": weights, "c.bin": TestSupport.random(1_000_000, seed: 6)]
        _ = try addFiles("m@1.0.0", files)
        _ = try store.push(to: LocalBackend(root: dir + "/remote"), refs: [])
        func pull(window: Int) throws -> (PullResult, Store) {
            let device = try Store.create(at: dir + "/device-\(window)")
            var o = PullOptions()
            o.planWindowChunks = window
            o.installDirectory = dir + "/install-\(window)"
            return (try device.pull(from: LocalBackend(root: dir + "/remote"), ref: try VersionRef.parse("m@1.0.0"), options: o), device)
        }
        let (whole, _) = try pull(window: 1 << 20)
        let (small, device) = try pull(window: 4)
        let windows = (small.chunksFetched + 3) / 4
        XCTAssertGreaterThan(windows, 5)
        XCTAssertEqual(small.chunksFetched, whole.chunksFetched)
        XCTAssertEqual(small.chunkBytes, whole.chunkBytes)
        XCTAssertEqual(Set(try device.packIDs()), small.addedPacks, "every pack the pull wrote, and only those")
        XCTAssertLessThanOrEqual(small.requests, whole.requests + windows)
        XCTAssertTrue(try device.verify().ok)
        for (name, bytes) in files { XCTAssertEqual(TestSupport.read(dir + "/install-4/current/" + name), bytes, name) }
    }

    func testTheDefaultMemoryBudgetIs64MiB() {
        var sized = PullOptions()
        sized.applyMemoryBudget(64 << 20)
        let d = PullOptions()
        XCTAssertEqual([d.parallelRequests, Int(d.maxRangeBytes), d.checkoutBatchBytes, d.writeBatchBytes, d.verifiedBatchBytes],
                       [sized.parallelRequests, Int(sized.maxRangeBytes), sized.checkoutBatchBytes, sized.writeBatchBytes, sized.verifiedBatchBytes])
    }

    /// What the buffers can hold at once (ranges in flight, verified batches, write batches; or
    /// the two install batches) stays within the budget less the process itself, at any budget.
    func testEveryBufferFitsTheMemoryBudget() {
        for mib in [1, 16, 32, 48, 64, 100, 128, 256, 1024, 8192] {
            var o = PullOptions()
            o.applyMemoryBudget(UInt64(mib) << 20)
            let usable = max(UInt64(mib) << 20, PullOptions.smallestMemoryBudget) - (24 << 20)
            let fetch = UInt64(o.parallelRequests) * (o.maxRangeBytes + UInt64(o.verifiedBatchBytes)) + 3 * UInt64(o.writeBatchBytes)
            XCTAssertLessThanOrEqual(fetch, usable, "\(mib) MiB: fetch buffers")
            XCTAssertLessThanOrEqual(UInt64(2 * o.checkoutBatchBytes), usable, "\(mib) MiB: install batches")
            XCTAssertGreaterThanOrEqual(o.maxRangeBytes, 1 << 20, "\(mib) MiB")
            XCTAssertLessThanOrEqual(o.gapLimit, o.maxRangeBytes / 8, "\(mib) MiB")
        }
    }

    /// A version's chunk list and added set cost memory too: a version of many chunks gets
    /// buffers sized for the budget less that, never a higher peak; a small one barely changes.
    func testAVersionOfManyChunksGetsBuffersSizedForWhatItsChunksLeave() {
        let d = PullOptions()
        var small = d
        small.fitBudget(toChunks: 1_000)
        XCTAssertGreaterThan(small.maxRangeBytes, d.maxRangeBytes / 100 * 98)
        XCTAssertGreaterThan(small.checkoutBatchBytes, d.checkoutBatchBytes / 100 * 98)
        var large = d
        large.fitBudget(toChunks: 200_000)
        var reduced = PullOptions()
        reduced.applyMemoryBudget(d.memoryBudget - 200_000 * PullOptions.bytesPerChunk)
        XCTAssertLessThan(large.maxRangeBytes, d.maxRangeBytes)
        XCTAssertLessThanOrEqual(UInt64(large.parallelRequests) * large.maxRangeBytes,
                                 max(UInt64(reduced.parallelRequests) * reduced.maxRangeBytes, UInt64(large.parallelRequests) << 20))
        XCTAssertLessThanOrEqual(large.checkoutBatchBytes, reduced.checkoutBatchBytes)
        XCTAssertEqual(large.memoryBudget, d.memoryBudget, "the budget asked for stays what it was")
        var explicit = d
        explicit.parallelRequests = 8
        explicit.fitBudget(toChunks: 200_000)
        XCTAssertEqual(explicit.parallelRequests, 8, "an explicit --parallel stands")
        XCTAssertGreaterThanOrEqual(explicit.maxRangeBytes, 1 << 20)
    }

    func testALargerMemoryBudgetNeverBuysLessParallelismOrSmallerBuffers() {
        var last = PullOptions()
        last.applyMemoryBudget(0)
        for mib in stride(from: 32, through: 2048, by: 16) {
            var o = PullOptions()
            o.applyMemoryBudget(UInt64(mib) << 20)
            XCTAssertGreaterThanOrEqual(o.parallelRequests, last.parallelRequests, "\(mib) MiB")
            XCTAssertGreaterThanOrEqual(o.checkoutBatchBytes, last.checkoutBatchBytes, "\(mib) MiB")
            if o.parallelRequests == last.parallelRequests { XCTAssertGreaterThanOrEqual(o.maxRangeBytes, last.maxRangeBytes, "\(mib) MiB") }
            last = o
        }
        XCTAssertEqual(last.checkoutBatchBytes, Store.checkoutBatchBytes, "a generous budget installs in the full-size batches")
        XCTAssertEqual(last.maxRangeBytes, 16 << 20)
    }

    func testObjectsHashToTheirIds() throws {
        let r = try addFiles("m@1.0.0", ["a.bin": TestSupport.random(1000, seed: 1)])
        let version = try store.readVersion(r.versionID)
        XCTAssertEqual(SHA256Hasher.hash(version.encoded()), r.versionID)
        XCTAssertEqual(try store.readTree(r.treeID).id(), r.treeID)
        XCTAssertEqual(version.tree, r.treeID)
    }

    func testSameFilesGiveTheSameTreeIdInAnotherStore() throws {
        let files = ["a.bin": TestSupport.random(300_000, seed: 2), "m.json": Array("{}".utf8)]
        let first = try addFiles("m@1.0.0", files)
        store = try Store.create(at: dir + "/other")
        let second = try addFiles("other@2.0.0", files)
        XCTAssertEqual(first.treeID, second.treeID)
    }
}
