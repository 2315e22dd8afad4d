import XCTest
@testable import SLMStoreKit
@testable import SLMFormats
@testable import SLMLocalStore
@testable import SLMRemote
@testable import SLMDevice
@testable import SLMPages
import SLMSynthetic
import SLMTestSupport

/// The pull planner and remote version selection are pure functions of metadata: tested here
/// without a remote, a store or a byte of chunk data.
final class PullPlanTests: XCTestCase {
    let (packA, packB) = (PlanFixtures.packA, PlanFixtures.packB)

    func located(_ id: ChunkID, _ pack: PackID, offset: UInt64, stored: UInt32) -> LocatedChunk {
        LocatedChunk(id: id, pack: pack, entry: PackIndexEntry(id: id, offset: offset, storedLength: stored, rawLength: 100, codec: .zstd))
    }

    func testRecordsSeparatedBySmallGapsShareOneRange() {
        let h = UInt64(PackFormat.recordHeaderSize)
        let a = located(PlanFixtures.chunk(1), packA, offset: 16, stored: 100)
        let b = located(PlanFixtures.chunk(2), packA, offset: 16 + h + 100 + 50, stored: 100)   // 50-byte gap
        let plans = PullPlan.ranges([b, a], gapLimit: 64, maxRange: 1 << 20)
        XCTAssertEqual(plans.count, 1)
        XCTAssertEqual(plans[0].range, 16..<(16 + h + 100 + 50 + h + 100))
        XCTAssertEqual(plans[0].chunks.map(\.id), [PlanFixtures.chunk(1), PlanFixtures.chunk(2)], "records in offset order")
    }

    func testAGapLargerThanTheLimitSplitsTheRange() {
        let h = UInt64(PackFormat.recordHeaderSize)
        let a = located(PlanFixtures.chunk(1), packA, offset: 16, stored: 100)
        let b = located(PlanFixtures.chunk(2), packA, offset: 16 + h + 100 + 65, stored: 100)
        XCTAssertEqual(PullPlan.ranges([a, b], gapLimit: 64, maxRange: 1 << 20).count, 2)
    }

    func testARangeNeverGrowsPastTheMaximum() {
        let h = UInt64(PackFormat.recordHeaderSize)
        let items = (0..<10).map { i in located(PlanFixtures.chunk(UInt8(i)), packA, offset: 16 + UInt64(i) * (h + 100), stored: 100) }
        let plans = PullPlan.ranges(items, gapLimit: 0, maxRange: 3 * (h + 100))
        XCTAssertEqual(plans.count, 4)
        XCTAssertTrue(plans.allSatisfy { UInt64($0.range.count) <= 3 * (h + 100) })
        XCTAssertEqual(plans.flatMap(\.chunks).count, 10)
    }

    func testRangesNeverSpanTwoPacks() {
        let a = located(PlanFixtures.chunk(1), packA, offset: 16, stored: 100)
        let b = located(PlanFixtures.chunk(2), packB, offset: 16, stored: 100)
        let plans = PullPlan.ranges([a, b], gapLimit: 1 << 20, maxRange: 1 << 30)
        XCTAssertEqual(plans.map(\.pack), [packA, packB])
    }

    func testLocateReadsIndexesOnlyUntilEveryChunkIsFound() throws {
        let indexes: [PackID: PackIndex] = [
            packA: PackIndex(packSize: 1000, entries: [PackIndexEntry(id: PlanFixtures.chunk(1), offset: 16, storedLength: 10, rawLength: 100, codec: .raw)]),
            packB: PackIndex(packSize: 1000, entries: [PackIndexEntry(id: PlanFixtures.chunk(2), offset: 16, storedLength: 10, rawLength: 100, codec: .raw)]),
        ]
        var read: [PackID] = []
        let found = try PullPlan.locate([PlanFixtures.chunk(1)], rawLengths: [PlanFixtures.chunk(1): 100], order: [packA, packB], location: "r",
                                        entries: entries { read.append($0); return indexes[$0]! })
        XCTAssertEqual(found.map(\.pack), [packA])
        XCTAssertEqual(read, [packA], "packB's index is never fetched")
    }

    /// Index entries as planning reads them, from whole indexes.
    func entries(_ index: @escaping (PackID) -> PackIndex) -> PullPlan.IndexEntries {
        { pack, body in for e in index(pack).entries { try body(e) } }
    }

    func target(_ files: [[UInt8]]) throws -> PullTarget {
        let entries = files.enumerated().map { i, ids in
            FileEntry(path: "f\(i)", size: UInt64(ids.count * 100), sha256: SHA256Hasher.hash([]),
                      chunks: ids.map { ChunkRef(id: PlanFixtures.chunk($0), rawLength: 100 + UInt32($0)) }, safetensors: nil)
        }
        let tree = TreeObject(files: entries)
        let object = VersionObject(name: "m", version: try SemVer("1.0.0"), tree: SHA256Hasher.hash(try tree.encoded()), parent: nil,
                                   created: "2026-01-01T00:00:00Z", addedBy: "t", tool: "t")
        return PullTarget(name: try ModelName("m"), version: try SemVer("1.0.0"), id: SHA256Hasher.hash([1]), object: object, tree: tree,
                          versionBytes: [], treeFile: nil)
    }

    func testWindowsHandOverEachMissingChunkOnceInFirstUseOrderAtMostSizeAtATime() throws {
        let t = try target([[5, 1, 5, 2, 9], [3, 1, 7, 4, 6]])
        let missing = try PullPlan.missingChunks([t], have: { $0 == PlanFixtures.chunk(9) })
        var windows: [[ChunkID]] = []
        try PullPlan.windows([t], missing: missing, stillNeeded: { $0 != PlanFixtures.chunk(4) }, size: 3) { ids, lengths in
            windows.append(ids)
            for id in ids { XCTAssertEqual(lengths[id], 100 + UInt32(id == PlanFixtures.chunk(5) ? 5 : [1, 2, 3, 7, 6].first { PlanFixtures.chunk($0) == id }!)) }
        }
        XCTAssertEqual(windows, [[PlanFixtures.chunk(5), PlanFixtures.chunk(1), PlanFixtures.chunk(2)], [PlanFixtures.chunk(3), PlanFixtures.chunk(7), PlanFixtures.chunk(6)]],
                       "9 is stored, 4 was stored since (seeded), repeats come once")
    }

    func testMissingChunksFoundOneIdRangeAtATimeMarkTheSamePositionsAsOnePass() throws {
        let ids = (0..<3000).map { _ in UInt8.random(in: 0...200) }
        let t = try target([Array(ids[..<1500]), Array(ids[1500...])])
        let whole = try PullPlan.missingChunks([t], have: { $0 == PlanFixtures.chunk(7) })
        let split = try PullPlan.missingChunks([t], have: { $0 == PlanFixtures.chunk(7) }, budget: 400)  // 256 ranges of a few ids
        XCTAssertEqual(split.bits, whole.bits)
        XCTAssertEqual(split.count, whole.count)
        XCTAssertEqual(whole.count, Set(ids.filter { $0 != 7 }).count, "one bit per missing id")
    }

    func testTheSeedFilterAnswersMaybeForEveryMissingChunkAndRarelyForOthers() throws {
        let t = try target([Array(0..<100)])
        let filter = try PullPlan.seedFilter([t], missing: PullPlan.missingChunks([t], have: { _ in false }))
        for i in 0..<100 { XCTAssertTrue(filter.contains(PlanFixtures.chunk(UInt8(i)))) }
        var big = ChunkIDFilter(capacity: 20_000)
        for i in 0..<20_000 { big.insert(ChunkID(of: Array("in \(i)".utf8))) }
        let falseMaybes = (0..<100_000).filter { big.contains(ChunkID(of: Array("out \($0)".utf8))) }.count
        XCTAssertLessThan(falseMaybes, 1000, "about 0.3% at 12 bits an id")
    }

    func testFirstMissingFindsTheFirstUnstoredChunkInTreeOrder() throws {
        let t = try target([[1, 2], [3]])
        XCTAssertEqual(try PullPlan.firstMissing([t], have: { $0 != PlanFixtures.chunk(2) && $0 != PlanFixtures.chunk(3) }), PlanFixtures.chunk(2))
        XCTAssertNil(try PullPlan.firstMissing([t], have: { _ in true }))
    }

    func testAChunkInNoListedPackIsARemoteError() {
        XCTAssertThrowsError(try PullPlan.locate([PlanFixtures.chunk(9)], rawLengths: [PlanFixtures.chunk(9): 100], order: [packA], location: "r", entries: entries { _ in
            PackIndex(packSize: 100, entries: [])
        })) { error in
            guard case SLMError.remote(_, let problem) = error else { return XCTFail("\(error)") }
            XCTAssertTrue(problem.contains("in no pack"), problem)
        }
    }

    func testAnIndexEntryDisagreeingWithTheTreeIsRefused() {
        XCTAssertThrowsError(try PullPlan.locate([PlanFixtures.chunk(1)], rawLengths: [PlanFixtures.chunk(1): 99], order: [packA], location: "r", entries: entries { _ in
            PackIndex(packSize: 1000, entries: [PackIndexEntry(id: PlanFixtures.chunk(1), offset: 16, storedLength: 10, rawLength: 100, codec: .raw)])
        })) { error in
            guard case SLMError.remote = error else { return XCTFail("\(error)") }
        }
    }

    // MARK: Selection

    func manifest(stages: [String: String], versions: [String] = ["1.0.0", "1.1.0", "2.0.0-rc.1"]) -> Manifest {
        let entries = versions.enumerated().map { i, v in
            Manifest.VersionEntry(version: v, id: SHA256Hasher.hash([UInt8(i)]), tree: SHA256Hasher.hash([UInt8(100 + i)]),
                                  created: "", size: 0, files: [], dependencies: [], packs: [])
        }
        return Manifest(project: "p", lastUpdated: "", models: ["m": .init(versions: entries, stages: stages)], packs: [])
    }

    func testAStageSelectsTheVersionItNames() throws {
        let (v, id) = try RemoteSelection.select(try ModelName("m"), "production", in: manifest(stages: ["production": "1.0.0"]), location: "r")
        XCTAssertEqual(v.description, "1.0.0")
        XCTAssertEqual(id, SHA256Hasher.hash([0]))
    }

    func testLatestSkipsPreReleasesAndRangesPickTheHighestMatch() throws {
        let m = manifest(stages: [:])
        XCTAssertEqual(try RemoteSelection.select(try ModelName("m"), "latest", in: m, location: "r").0.description, "1.1.0")
        XCTAssertEqual(try RemoteSelection.select(try ModelName("m"), "^1.0", in: m, location: "r").0.description, "1.1.0")
    }

    func testAStageNamingAnUnlistedVersionIsARemoteErrorNotACrash() {
        XCTAssertThrowsError(try RemoteSelection.select(try ModelName("m"), "production", in: manifest(stages: ["production": "9.9.9"]), location: "r")) { error in
            guard case SLMError.remote(_, let problem) = error else { return XCTFail("\(error)") }
            XCTAssertTrue(problem.contains("9.9.9"), problem)
        }
    }

    func testAnUnknownModelIsNotFound() {
        XCTAssertThrowsError(try RemoteSelection.select(try ModelName("other"), "latest", in: manifest(stages: [:]), location: "r")) { error in
            guard case SLMError.notFound = error else { return XCTFail("\(error)") }
        }
    }

    // MARK: Rollouts from a remote

    func manifestBytes(rollout: String) -> [UInt8] {
        let id = String(repeating: "a", count: 64)
        return Array("""
        {"format":1,"models":{"m":{"rollouts":{"production":\(rollout)},"stages":{},"versions":{"1.0.0":{"id":"\(id)","tree":"\(id)","version":"1.0.0"}}}},"packs":[]}
        """.utf8)
    }

    func testARolloutRecordOutsideItsRangeMakesTheManifestDamaged() {
        let id = String(repeating: "a", count: 64)
        for bad in ["{\"id\":\"\(id)\",\"percent\":150,\"serial\":1,\"state\":\"active\",\"version\":\"1.0.0\"}",
                    "{\"id\":\"\(id)\",\"percent\":0,\"serial\":1,\"state\":\"active\",\"version\":\"1.0.0\"}",
                    "{\"id\":\"xyz\",\"percent\":10,\"serial\":1,\"state\":\"active\",\"version\":\"1.0.0\"}",
                    "{\"id\":\"\(id)\",\"percent\":\"10\",\"serial\":1,\"state\":\"active\",\"version\":\"1.0.0\"}",
                    "{\"id\":\"\(id)\",\"percent\":10,\"serial\":1,\"state\":\"sideways\",\"version\":\"1.0.0\"}"] {
            XCTAssertThrowsError(try Manifest.decode(manifestBytes(rollout: bad), source: "m"), bad) { error in
                guard case SLMError.damaged = error else { return XCTFail("\(error)") }
            }
        }
        let good = "{\"id\":\"\(id)\",\"percent\":12.5,\"reset\":0,\"serial\":1,\"state\":\"active\",\"version\":\"1.0.0\"}"
        XCTAssertEqual(try Manifest.decode(manifestBytes(rollout: good), source: "m").models["m"]?.rollouts["production"]?.percent, 12.5)
    }

    func testASlicePositionIsStableAndWithinRange() {
        let p = RolloutSlice.position(device: "d", model: "m", version: "1.0.0")
        XCTAssertEqual(p, RolloutSlice.position(device: "d", model: "m", version: "1.0.0"))
        XCTAssertTrue((0..<100).contains(p))
        XCTAssertNotEqual(p, RolloutSlice.position(device: "d", model: "m", version: "1.1.0"))
    }
}
