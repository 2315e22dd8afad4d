// `gc`: keep every chunk reachable from a version or stage ref, drop the rest. Packs with no
// live chunk are deleted; packs whose live share fell below a threshold are rewritten. It holds
// the data lock exclusively, so no add or pull is mid-way, and each step keeps every live chunk
// in at least one indexed pack, so a kill at any moment leaves a sound store.

import SLMFormats
import Foundation

/// What `gc` did.
public struct GCResult: Sendable {
    /// Packs before it ran.
    public var packsBefore: Int
    /// Packs deleted (nothing in them was live).
    public var packsDeleted: Int
    /// Packs rewritten with only their live records.
    public var packsRewritten: Int
    /// Bytes of pack files freed.
    public var bytesFreed: UInt64
    /// Chunks a version or stage ref still reaches.
    public var liveChunks: Int
    /// Wall time.
    public var seconds: Double
}

extension Store {
    /// Chunks used by any version a ref reaches. Throws if a ref's objects cannot be read,
    /// because collecting without knowing what is live could delete data.
    /// Every ref file counts, whatever its name: one this release cannot parse as a model name
    /// or version (written by a later release, or by hand) still keeps its data alive.
    public func liveChunks() throws -> ChunkIDSet {
        var live = ChunkIDSet.Builder()
        _ = try liveVersions { live.insert($0) }
        return live.build()
    }

    /// Versions a ref reaches; hands every chunk ref of their trees (with repeats) to `chunk`.
    func liveVersions(chunk: (ChunkID) throws -> Void) throws -> Set<SHA256Digest> {
        var versionIDs = Set<SHA256Digest>()
        for path in try refFiles() {
            versionIDs.insert(try Store.parseRefFile(try FileSystem.readFile(path, limit: 4096), source: path))
        }
        for id in versionIDs {
            let tree = try readTree(try readVersion(id).tree)
            for f in tree.files { try f.chunks.forEach { try chunk($0.id) } }
        }
        return versionIDs
    }

    /// Memory for gc's set of live chunk ids (16 bytes each): above it, the ids are split by
    /// range into files and held one range at a time.
    public static let gcLiveSetBudget = 64 << 20

    /// Keeps every chunk a version or stage ref reaches and drops the rest: packs with nothing live
    /// are deleted, packs whose live share fell below `threshold` rewritten. Holds the data lock
    /// exclusively; a kill at any moment leaves a sound store. `liveSetBudget` bounds the memory of
    /// the live set.
    public func gc(rewriteBelow threshold: Double = 0.5, liveSetBudget: Int = Store.gcLiveSetBudget,
                   progress: (@Sendable (UInt64, UInt64) -> Void)? = nil) throws -> GCResult {
        let started = Timestamp.monotonicSeconds()
        let lock = try dataLock(.exclusive)
        defer { lock.unlock() }
        removeAbandonedWorkingDirectories()
        // Cached remote pack indexes are only a shortcut; gc empties the cache (a pull that
        // finds an entry gone downloads the index again).
        FileSystem.removeTree(remoteIndexCacheRoot)
        // The `ls` figures count, for each chunk, the record the index finds first. gc keeps that
        // record byte for byte, so the figures still hold unless a chunk has another copy that
        // could be found first afterwards, or keeps another delta record. They are set aside
        // while gc works (a killed gc leaves none to trust) and put back only then.
        stashStatsCache()
        let index = try loadChunkIndex()
        let work = try makeWorkingDirectory("gc")
        defer { work.remove() }
        // The live set is split by id range when the store's entry count says it may not fit the
        // budget; each range is then loaded twice, so memory follows the budget, not the store.
        let entries = (index.multiPackIndex?.entryCount ?? 0) + index.inMemoryRecords
        let spill = try ChunkIDSpill(directory: work.path, bits: GCPlan.liveSetBits(entries: entries, budget: liveSetBudget,
                                                                                    maxBits: ChunkIDSpill.maxBits))
        let reachable = try liveVersions { try spill.append($0) }
        try spill.finish()
        var deltas = try liveDeltaRecords(spill, index: index)
        let before = try packIDs()
        let livePacks = try dropDeadDeltaSets(reachable: reachable)
        var freed = try removeOrphanPacks()
        let packs = GCPlan.visitOrder(before.filter { !livePacks.contains($0) }, withDeltas: Set(deltas.kept.map(\.pack)))
        let (keep, liveCount) = try markKeptEntries(of: packs, spill: spill, deltas: &deltas, index: index)
        var deleted = 0, rewritten = 0
        for (n, pack) in packs.enumerated() {
            let packIndex = try readPackIndex(pack)
            guard let action = GCPlan.action(entries: packIndex.entries, marks: keep[pack] ?? [], packSize: packIndex.packSize, threshold: threshold) else {
                throw SLMError.damaged(path: packIndexPath(pack), problem: "pack index changed while gc ran")
            }
            switch action {
            case .keep: break
            case .delete:
                try deletePack(pack)
                freed += packIndex.packSize
                deleted += 1
            case .rewrite(let live):
                freed += try rewritePack(pack, size: packIndex.packSize, keeping: live, index: index, in: work.path)
                rewritten += 1
            }
            progress?(UInt64(n + 1), UInt64(packs.count))
        }
        // Entries of the packs just deleted or rewritten still sit in the multi-pack index.
        let remaining = try packIDs()
        if FileSystem.exists(multiPackIndexPath) || remaining.count >= Store.uncoveredPackLimit { _ = try writeMultiPackIndex(packs: remaining) }
        if deltas.figuresHold { restoreStatsCache(keeping: reachable) } else { FileSystem.removeTree(statsStashRoot) }
        return GCResult(packsBefore: packs.count + livePacks.count, packsDeleted: deleted, packsRewritten: rewritten, bytesFreed: freed,
                        liveChunks: liveCount, seconds: Timestamp.monotonicSeconds() - started)
    }

    /// The delta records gc keeps and the base chunks they keep live; whether `ls` figures still hold.
    private struct LiveDeltas {
        var kept = Set<GCPlan.RecordKey>()
        var bases = ChunkIDSet()
        var figuresHold = true
    }

    /// A live chunk stored only as a delta keeps one delta record (one whose bases all have
    /// full records), and its base chunks stay live with it: "keep the base" (Format.md §7.3).
    private func liveDeltaRecords(_ spill: ChunkIDSpill, index: ChunkIndex) throws -> LiveDeltas {
        var out = LiveDeltas()
        var bases = ChunkIDSet.Builder()
        for range in 0..<spill.ranges {
            try spill.forEachID(in: range) { id in
                guard !index.containsFull(id) else { return }
                let copies = index.deltaLocations(of: id)
                // A copy whose header cannot be read cannot serve; another copy may.
                if let (loc, h) = copies.lazy.compactMap({ loc in (try? self.deltaHeader(at: loc)).map { (loc, $0) } })
                    .first(where: { $0.1.bases.allSatisfy { index.containsFull($0.id) } }) {
                    out.kept.insert(GCPlan.RecordKey(pack: loc.pack, offset: loc.offset))
                    if loc != index.location(of: id) { out.figuresHold = false }
                    for b in h.bases { bases.insert(b.id) }
                } else {
                    // No copy that can be read (damage, which verify reports): keep them all; gc
                    // never deletes what it cannot account for.
                    for loc in copies { out.kept.insert(GCPlan.RecordKey(pack: loc.pack, offset: loc.offset)) }
                }
            }
        }
        out.bases = bases.build()
        return out
    }

    /// Delta sets live while both their versions do, and their packs are kept whole (returned).
    /// A dead set's file goes first, so a kill leaves packs no set names, which are then
    /// collected like any other pack: the delta records kept live survive, the others go.
    private func dropDeadDeltaSets(reachable: Set<SHA256Digest>) throws -> Set<PackID> {
        let (live, dead) = GCPlan.deltaSets(try deltaSets(), reachable: reachable)
        for set in dead {
            FileSystem.remove("\(deltasDirectory)/\(set.fileName)")
            try FileSystem.syncDirectory(deltasDirectory)
            CrashPoint.hit("gc-after-delta-set")
        }
        return Set(live.flatMap(\.packs))
    }

    /// Packs without an index, left by an interrupted write and never visible to readers;
    /// returns the bytes freed.
    private func removeOrphanPacks() throws -> UInt64 {
        var freed: UInt64 = 0
        for name in try FileSystem.listDirectory(packsDirectory) where name.hasSuffix(".pack") {
            if let id = PackID(hex: String(name.dropLast(5))), !FileSystem.exists(packIndexPath(id)) {
                freed += FileSystem.fileSize(packPath(id)) ?? 0
                FileSystem.remove(packPath(id))
            }
        }
        return freed
    }

    /// Which entries of each pack to keep, one bit per entry in index order, marked one id
    /// range at a time: full records of live chunks (one copy each: the one `index` finds
    /// first, whose pack is kept or rewritten, never deleted, while it holds it); delta records
    /// only where one is the copy a live chunk is kept as. Also the number of live chunks.
    private func markKeptEntries(of packs: [PackID], spill: ChunkIDSpill, deltas: inout LiveDeltas,
                                 index: ChunkIndex) throws -> (keep: [PackID: [UInt64]], liveCount: Int) {
        var keep: [PackID: [UInt64]] = [:]
        var liveCount = 0
        for range in 0..<spill.ranges {
            let live = try spill.load(range)
            liveCount += live.count
            deltas.bases.forEachMember { if spill.range(of: $0) == range && !live.contains($0) { liveCount += 1 } }
            for pack in packs {
                let cursor = try PackIndexCursor(path: packIndexPath(pack), bufferBytes: 64 << 10)
                var marks = keep[pack] ?? [UInt64](repeating: 0, count: (cursor.count + 63) / 64)
                var i = 0
                // Entries are sorted by id, so a range's are consecutive.
                while try cursor.advance() {
                    let e = cursor.current, n = i
                    i += 1
                    let r = spill.range(of: e.id)
                    if r < range { continue }
                    if r > range { break }
                    let kept: Bool
                    if e.codec == .delta {
                        kept = deltas.kept.contains(GCPlan.RecordKey(pack: pack, offset: e.offset))
                    } else if live.contains(e.id) || deltas.bases.contains(e.id) {
                        kept = index.fullLocation(of: e.id) == e.location(in: pack)
                        if !kept { deltas.figuresHold = false }  // a second full copy of a live chunk
                    } else {
                        kept = false
                    }
                    if kept { marks[n >> 6] |= 1 << UInt64(n & 63) }
                }
                keep[pack] = marks
            }
        }
        return (keep, liveCount)
    }

    /// One new pack per rewritten pack: the old one goes only once the new one is committed.
    /// Returns the bytes freed.
    private func rewritePack(_ pack: PackID, size: UInt64, keeping live: [PackIndexEntry], index: ChunkIndex, in directory: String) throws -> UInt64 {
        let sink = packSink(in: directory, rolloverSize: .max)
        for e in live {
            let record = try readVerifiedRecord(e.id, at: e.location(in: pack), index: index)
            try sink.appendRecord(record, id: e.id, rawLength: e.rawLength, codec: e.codec)
        }
        try sink.seal()
        CrashPoint.hit("gc-after-rewrite")
        try deletePack(pack)
        return size - (UInt64(PackFormat.packHeaderSize) + sink.recordBytes)
    }

    /// Index first (the pack disappears for readers), then the pack.
    private func deletePack(_ id: PackID) throws {
        guard unlink(packIndexPath(id)) == 0 else { throw SLMError.io(path: packIndexPath(id), operation: "unlink", errno: errno) }
        try FileSystem.syncDirectory(packsDirectory)
        CrashPoint.hit("gc-between-index-and-pack")
        unlink(packPath(id))
        forgetPackFile(id)
    }
}
