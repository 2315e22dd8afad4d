import XCTest
@testable import SLMFormats
@testable import SLMLocalStore
import SLMTestSupport

/// What gc does to each pack and delta set is decided by GCPlan from values alone: tested here
/// without a store.
final class GCPlanTests: XCTestCase {
    func entry(_ n: UInt8, offset: UInt64, stored: UInt32 = 100) -> PackIndexEntry {
        PackIndexEntry(id: ChunkID(of: [n]), offset: offset, storedLength: stored, rawLength: stored, codec: .zstd)
    }

    /// Marks with bit i set for each kept entry index.
    func marks(_ kept: [Int], count: Int) -> [UInt64] {
        var m = [UInt64](repeating: 0, count: (count + 63) / 64)
        for i in kept { m[i >> 6] |= 1 << UInt64(i & 63) }
        return m
    }

    /// Three records of 100 stored bytes each, in a pack just large enough to hold them.
    lazy var entries = [entry(1, offset: 16), entry(2, offset: 16 + recordSize), entry(3, offset: 16 + 2 * recordSize)]
    let recordSize = PackFormat.recordSize(100)
    var packSize: UInt64 { 16 + 3 * recordSize }

    func testAPackWithNothingLiveIsDeleted() {
        XCTAssertEqual(GCPlan.action(entries: entries, marks: marks([], count: 3), packSize: packSize, threshold: 0.5), .delete)
    }

    func testAPackMostlyLiveIsKeptAsItIs() {
        XCTAssertEqual(GCPlan.action(entries: entries, marks: marks([0, 2], count: 3), packSize: packSize, threshold: 0.5), .keep)
    }

    func testAPackWhoseLiveShareFellBelowTheThresholdIsRewrittenWithItsLiveEntriesInOffsetOrder() {
        let shuffled = [entries[2], entries[0], entries[1]]
        let action = GCPlan.action(entries: shuffled, marks: marks([0, 1], count: 3), packSize: packSize, threshold: 0.9)
        XCTAssertEqual(action, .rewrite([entries[0], entries[2]]))
    }

    func testThresholdZeroNeverRewrites() {
        XCTAssertEqual(GCPlan.action(entries: entries, marks: marks([1], count: 3), packSize: packSize, threshold: 0), .keep)
    }

    func testMarksThatDoNotFitTheIndexAreNoPlan() {
        XCTAssertNil(GCPlan.action(entries: entries, marks: marks([], count: 65), packSize: packSize, threshold: 0.5),
                     "an index that changed under gc is not acted on")
    }

    func testADeltaSetLivesOnlyWhileBothItsVersionsAreReachable() {
        let a = SHA256Hasher.hash([1]), b = SHA256Hasher.hash([2]), c = SHA256Hasher.hash([3])
        let ab = DeltaSet(target: b, base: a, packs: [PackID.random()])
        let cb = DeltaSet(target: c, base: b, packs: [PackID.random()])
        let (live, dead) = GCPlan.deltaSets([ab, cb], reachable: [a, b])
        XCTAssertEqual(live, [ab])
        XCTAssertEqual(dead, [cb])
    }

    func testPacksHoldingKeptDeltasAreVisitedFirst() {
        let p = (0..<4).map { _ in PackID.random() }
        XCTAssertEqual(GCPlan.visitOrder(p, withDeltas: [p[2]]), [p[2], p[0], p[1], p[3]])
    }

    func testTheLiveSetIsSplitOnlyWhenItPassesTheBudget() {
        XCTAssertEqual(GCPlan.liveSetBits(entries: 1000, budget: 64 << 20, maxBits: 6), 0)
        XCTAssertEqual(GCPlan.liveSetBits(entries: 1000, budget: 4000, maxBits: 6), 2, "16,000 bytes in ranges of at most 4,000")
        XCTAssertEqual(GCPlan.liveSetBits(entries: 1 << 30, budget: 1, maxBits: 6), 6, "never more than maxBits")
    }
}
