import XCTest
@testable import SLMFormats
@testable import SLMLocalStore
@testable import SLMRemote
import SLMTestSupport

/// What a push sends is decided by PushPlan from values alone: tested here without a remote,
/// a store or a byte of chunk data.
final class PushPlanTests: XCTestCase {
    let (packA, packB) = (PlanFixtures.packA, PlanFixtures.packB)

    func resolved(_ version: String, id: UInt8, dependencies: [String] = []) throws -> ResolvedVersion {
        let object = VersionObject(name: "m", version: try SemVer(version), tree: SHA256Hasher.hash([id]), parent: nil, created: Timestamp.now(),
                                   addedBy: "t", tool: "t", dependencies: dependencies.map { Dependency(name: $0, range: "^1.0.0") })
        return ResolvedVersion(name: try ModelName("m"), version: try SemVer(version), id: SHA256Hasher.hash([id, 1]), object: object)
    }

    func tree(_ chunks: [UInt8]) -> TreeObject {
        TreeObject(files: [FileEntry(path: "w.bin", size: UInt64(chunks.count * 3), sha256: SHA256Hasher.hash([]),
                                     chunks: chunks.map { ChunkRef(id: PlanFixtures.chunk($0), rawLength: 3) }, safetensors: nil)])
    }

    func plan(_ versions: [(ResolvedVersion, [UInt8])]) throws -> PushPlan {
        var plan = PushPlan()
        for (r, chunks) in versions { try plan.classify(r, remoteID: nil, location: "remote") { (tree(chunks), []) } }
        return plan
    }

    func entry(_ n: UInt8, codec: ChunkCodec = .zstd) -> PackIndexEntry {
        PackIndexEntry(id: PlanFixtures.chunk(n), offset: 16, storedLength: 3, rawLength: 3, codec: codec)
    }

    func testAVersionTheRemoteHoldsAsTheSameObjectIsPresentNotSent() throws {
        let r = try resolved("1.0.0", id: 1)
        var plan = PushPlan()
        try plan.classify(r, remoteID: r.id, location: "remote") { XCTFail("objects read for a version the remote has"); return (tree([]), []) }
        XCTAssertEqual(plan.present, ["m@1.0.0"])
        XCTAssertTrue(plan.versions.isEmpty)
    }

    func testAVersionTheRemoteHoldsAsAnotherObjectIsRefused() throws {
        var plan = PushPlan()
        XCTAssertThrowsError(try plan.classify(try resolved("1.0.0", id: 1), remoteID: SHA256Hasher.hash([9]), location: "remote") { (tree([]), []) }) {
            guard case let SLMError.conflict(message) = $0 else { return XCTFail("\($0)") }
            XCTAssertTrue(message.contains("versions are immutable"), message)
        }
    }

    func testMissingChunksAreListedOnceInFirstUseOrder() throws {
        var plan = try plan([(try resolved("1.1.0", id: 2), [5, 3, 5, 4]), (try resolved("1.0.0", id: 1), [4, 3, 1])])
        try plan.locate(order: [packA]) { _ in [self.entry(3)] }
        XCTAssertEqual(plan.missing, [PlanFixtures.chunk(5), PlanFixtures.chunk(4), PlanFixtures.chunk(1)])
        XCTAssertEqual(plan.foundIn, [PlanFixtures.chunk(3): packA])
    }

    func testIndexesAreReadOnlyUntilEveryChunkIsFound() throws {
        var plan = try plan([(try resolved("1.0.0", id: 1), [1, 2])])
        var read: [PackID] = []
        try plan.locate(order: [packA, packB, PackID(hex: String(repeating: "c", count: 32))!]) { pack in
            read.append(pack)
            return pack == self.packA ? [self.entry(1)] : [self.entry(2)]
        }
        XCTAssertEqual(read, [packA, packB])
        XCTAssertEqual(plan.indexesRead, 2)
        XCTAssertTrue(plan.missing.isEmpty)
    }

    func testADeltaRecordOnTheRemoteDoesNotCountAsHoldingTheChunk() throws {
        var plan = try plan([(try resolved("1.0.0", id: 1), [1])])
        try plan.locate(order: [packA]) { _ in [self.entry(1, codec: .delta)] }
        XCTAssertEqual(plan.missing, [PlanFixtures.chunk(1)], "a remote must serve a full record of every chunk it lists")
    }

    func testEachVersionListsThePacksItsChunksEndUpIn() throws {
        let old = try resolved("1.0.0", id: 1), new = try resolved("1.1.0", id: 2)
        var plan = try plan([(new, [1, 2]), (old, [1])])
        try plan.locate(order: [packA]) { _ in [self.entry(1)] }
        plan.noteUploaded([PlanFixtures.chunk(2)], in: packB)
        let packs = try plan.versionPacks()
        XCTAssertEqual(packs[new.id], [packA, packB])
        XCTAssertEqual(packs[old.id], [packA])
    }

    func testTheModelsSearchedFirstIncludeDependencies() throws {
        let plan = try plan([(try resolved("1.0.0", id: 1, dependencies: ["tokenizer"]), [1])])
        XCTAssertEqual(plan.models, ["m", "tokenizer"])
    }
}
