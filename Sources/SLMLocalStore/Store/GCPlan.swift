// What gc decides, as values computed from metadata alone (which packs go, which are rewritten,
// which delta sets die, how finely the live set is split), so the rules are tested without a store.

import SLMFormats

/// gc's decisions; `Store.gc` gathers the facts and carries them out.
struct GCPlan {
    /// What happens to one pack.
    enum PackAction: Equatable {
        /// Enough of it is live: it stays as it is.
        case keep
        /// Nothing in it is live.
        case delete
        /// Its live share fell below the threshold: these entries move to a new pack, then it goes.
        case rewrite([PackIndexEntry])
    }

    /// A delta record, named by where it is.
    struct RecordKey: Hashable {
        var pack: PackID
        var offset: UInt64
    }

    /// How many id bits split the live set (16 bytes an id) so one range fits `budget` bytes,
    /// for a store of `entries` index entries (at most `maxBits`).
    static func liveSetBits(entries: Int, budget: Int, maxBits: Int) -> Int {
        var bits = 0
        while bits < maxBits && (entries * 16) >> bits > budget { bits += 1 }
        return bits
    }

    /// The delta sets that stay (both their versions are reachable) and those that go.
    static func deltaSets(_ sets: [DeltaSet], reachable: Set<SHA256Digest>) -> (live: [DeltaSet], dead: [DeltaSet]) {
        var live: [DeltaSet] = [], dead: [DeltaSet] = []
        for set in sets {
            if reachable.contains(set.target) && reachable.contains(set.base) { live.append(set) } else { dead.append(set) }
        }
        return (live, dead)
    }

    /// Packs in the order gc visits them: those holding kept delta records first, since
    /// rewriting one reads its bases through the index loaded before any pack changed.
    static func visitOrder(_ packs: [PackID], withDeltas: Set<PackID>) -> [PackID] {
        packs.filter { withDeltas.contains($0) } + packs.filter { !withDeltas.contains($0) }
    }

    /// The fate of a pack of `packSize` bytes whose index holds `entries`, of which those with a
    /// bit set in `marks` (one per entry, in index order) are kept. Nil when `marks` does not
    /// fit the entries (the index changed under gc).
    static func action(entries: [PackIndexEntry], marks: [UInt64], packSize: UInt64, threshold: Double) -> PackAction? {
        guard marks.count == (entries.count + 63) / 64 else { return nil }
        let live = entries.indices.filter { marks[$0 >> 6] & (1 << UInt64($0 & 63)) != 0 }.map { entries[$0] }
        if live.isEmpty { return .delete }
        let liveBytes = live.reduce(UInt64(0)) { $0 + PackFormat.recordSize($1.storedLength) }
        if Double(liveBytes) < threshold * Double(packSize - UInt64(PackFormat.packHeaderSize)) {
            return .rewrite(live.sorted { $0.offset < $1.offset })
        }
        return .keep
    }
}
