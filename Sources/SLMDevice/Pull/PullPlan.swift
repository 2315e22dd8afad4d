// What a pull will do, decided from metadata before any chunk is fetched: which versions
// (selection), which chunks are missing, where each lies on the remote, and the coalesced range
// requests that bring them. The planning steps are pure functions of their inputs.

import SLMFormats
import SLMLocalStore
import SLMRemote
import Foundation

/// Which remote version a selector means, from the manifest: one rule for `pull` and `sync`.
public enum RemoteSelection {
    /// The version `selector` (a version, `latest`, a stage or a range) picks for `name` in
    /// `manifest`, with its id (stages as the stage refs name them; rollouts are the sync
    /// daemon's to apply, in `SyncModelPlan`).
    public static func select(_ name: ModelName, _ selector: String, in manifest: Manifest, location: String) throws -> (SemVer, SHA256Digest) {
        guard let model = manifest.models[name.value] else { throw SLMError.notFound("\(location) has no model \(name)") }
        var listed: [(SemVer, SHA256Digest)] = []
        for entry in model.versions {
            guard let v = SemVer(parsing: entry.version) else {
                throw SLMError.remote(url: "\(location)/manifest.json", problem: "\(name) lists \"\(entry.version)\", which is not a version")
            }
            listed.append((v, entry.id))
        }
        var holders: [String: SemVer] = [:]
        for (stage, held) in model.stages {
            guard let v = listed.first(where: { $0.0.description == held })?.0 else {
                if stage == selector {
                    throw SLMError.remote(url: "\(location)/manifest.json", problem: "stage \(stage) of \(name) names version \(held), which the manifest does not list")
                }
                continue
            }
            holders[stage] = v
        }
        let v: SemVer
        do {
            (v, _) = try VersionSelector.pick(selector, versions: listed.map(\.0), stageHolders: holders)
        } catch let e as SLMError {
            guard case let .notFound(message) = e.kind else { throw e }
            throw SLMError.notFound("\(location): \(name)@\(selector): \(message)")
        }
        guard let id = listed.first(where: { $0.0 == v })?.1 else {
            throw SLMError.remote(url: "\(location)/manifest.json", problem: "\(name)@\(v) was selected but is not listed")
        }
        return (v, id)
    }
}

/// One version a pull brings, with the exact object bytes its ids were checked against: the
/// version object held, the tree object in a file its chunk lists are read from.
public struct PullTarget: Sendable {
    /// The model.
    public var name: ModelName
    /// The version.
    public var version: SemVer
    /// The version id.
    public var id: SHA256Digest
    /// The decoded version object.
    public var object: VersionObject
    /// The decoded tree (chunk lists read from the file on demand).
    public var tree: TreeObject
    var versionBytes: [UInt8]
    /// The tree object's file (nil for a tree built in memory, as tests do).
    var treeFile: FileDescriptor?

    /// NAME@VERSION.
    public var label: String { "\(name)@\(version)" }
    func record() throws -> VersionRecord {
        var r = VersionRecord(name: name, version: version, id: id, versionObject: versionBytes, treeObject: treeFile == nil ? try tree.encoded() : [])
        r.treeFile = treeFile.map { ($0, object.tree) }
        return r
    }
}

/// A planned range request: records of needed chunks in one pack (their index entries, which
/// name the chunk), with small gaps read through.
struct RangePlan: Equatable {
    var pack: PackID
    var range: Range<UInt64>
    var chunks: [PackIndexEntry]
}

/// A chunk found on the remote: which pack, and its index entry there.
struct LocatedChunk: Equatable {
    var id: ChunkID
    var pack: PackID
    var entry: PackIndexEntry
}

/// The chunks a pull fetches: one bit per chunk position of its targets (`PullPlan.missingChunks`).
struct MissingChunks {
    var bits: [UInt64]
    var count: Int
    var isEmpty: Bool { count == 0 }
}

enum PullPlan {
    /// The chunks the targets need that `have` says are not stored, as one bit per chunk
    /// position of the targets (in tree order), set at the first position of each such id.
    /// Duplicates are found one id range at a time, with a set of at most about `budget` bytes
    /// per range, so what this holds is a bit a chunk, not the 16 bytes of an id: a large model
    /// costs more passes over its chunk lists instead of more memory.
    static func missingChunks(_ targets: [PullTarget], have: (ChunkID) -> Bool, budget: Int = 4 << 20) throws -> MissingChunks {
        let total = targets.reduce(0) { n, t in t.tree.files.reduce(n) { $0 + $1.chunks.count } }
        var missing = MissingChunks(bits: [UInt64](repeating: 0, count: (total + 63) / 64), count: 0)
        try forEachFirstUse(targets, budget: budget, where: { !have($0) }) { position, _ in
            missing.bits[position >> 6] |= 1 << UInt64(position & 63)
            missing.count += 1
        }
        return missing
    }

    /// The raw bytes of the targets' distinct chunks (each id once, held or not): what the
    /// repeat rule compares their files' size with.
    static func distinctChunkBytes(_ targets: [PullTarget], budget: Int = 4 << 20) throws -> UInt64 {
        var bytes: UInt64 = 0
        try forEachFirstUse(targets, budget: budget, where: { _ in true }) { _, c in bytes &+= UInt64(c.rawLength) }
        return bytes
    }

    /// Hands `body` the first use of each distinct chunk id that `wanted` accepts, with its
    /// position. The ids are split by their first byte into as many passes as keep one pass's
    /// set within `budget`, so a tree of millions of chunks costs passes, not memory.
    private static func forEachFirstUse(_ targets: [PullTarget], budget: Int, where wanted: (ChunkID) -> Bool,
                                        _ body: (Int, ChunkRef) throws -> Void) throws {
        let total = targets.reduce(0) { n, t in t.tree.files.reduce(n) { $0 + $1.chunks.count } }
        // A Set<ChunkID> costs about 40 bytes an entry with its spare capacity.
        let ranges = max(1, min(256, (total * 40 + budget - 1) / max(1, budget)))
        for range in 0..<ranges {
            // Sized once: ids spread evenly over the ranges, and a set that never grows never
            // holds its old and new tables at once.
            var seen = Set<ChunkID>(minimumCapacity: total / ranges + total / ranges / 8)
            try forEachPosition(targets) { position, c in
                guard ranges == 1 || Int(c.id.high >> 56) * ranges / 256 == range else { return }
                guard wanted(c.id), seen.insert(c.id).inserted else { return }
                try body(position, c)
            }
        }
    }

    /// How many bytes the targets' files take from chunks `have` says are not stored, each use
    /// of a chunk counted: what an install would write that the store does not hold yet.
    static func newDataBytes(_ targets: [PullTarget], have: (ChunkID) -> Bool) throws -> UInt64 {
        var total: UInt64 = 0
        for t in targets { for f in t.tree.files { try f.chunks.forEach { if !have($0.id) { total &+= UInt64($0.rawLength) } } } }
        return total
    }

    /// The missing chunks as a filter for seeding: a false "maybe" only stores a chunk more.
    static func seedFilter(_ targets: [PullTarget], missing: MissingChunks) throws -> ChunkIDFilter {
        var filter = ChunkIDFilter(capacity: missing.count)
        try forEachMissing(targets, missing) { filter.insert($0.id) }
        return filter
    }

    /// Hands `body` each missing chunk once, in first-use order.
    static func forEachMissing(_ targets: [PullTarget], _ missing: MissingChunks, _ body: (ChunkRef) throws -> Void) throws {
        try forEachPosition(targets) { position, c in
            if missing.bits[position >> 6] & (1 << UInt64(position & 63)) != 0 { try body(c) }
        }
    }

    /// Every chunk use of the targets with its position (tree order), the index `MissingChunks` uses.
    private static func forEachPosition(_ targets: [PullTarget], _ body: (Int, ChunkRef) throws -> Void) throws {
        var position = 0
        for t in targets {
            for f in t.tree.files {
                try f.chunks.forEach { c in
                    try body(position, c)
                    position += 1
                }
            }
        }
    }

    /// The first chunk of the targets `have` says is not stored, if any.
    static func firstMissing(_ targets: [PullTarget], have: (ChunkID) -> Bool) throws -> ChunkID? {
        for t in targets { for f in t.tree.files { if let c = try f.chunks.first(where: { !have($0.id) }) { return c.id } } }
        return nil
    }

    /// Hands `body` the chunks of `missing` that `stillNeeded` confirms, in first-use order, each
    /// once, at most `size` at a time, with their lengths from the tree. A pull plans and fetches
    /// one window before it looks at the next, so what its planning holds is bounded by the
    /// window rather than the model; first-use order keeps a window's records close together
    /// in the remote's packs, so ranges coalesce as they would over the whole version.
    static func windows(_ targets: [PullTarget], missing: MissingChunks, stillNeeded: (ChunkID) -> Bool, size: Int,
                        _ body: (_ ids: [ChunkID], _ rawLengths: [ChunkID: UInt32]) throws -> Void) throws {
        var ids: [ChunkID] = []
        var rawLengths: [ChunkID: UInt32] = [:]
        try forEachMissing(targets, missing) { c in
            guard stillNeeded(c.id) else { return }
            ids.append(c.id)
            rawLengths[c.id] = c.rawLength
            if ids.count >= max(1, size) {
                try body(ids, rawLengths)
                ids.removeAll(keepingCapacity: true)
                rawLengths.removeAll(keepingCapacity: true)
            }
        }
        if !ids.isEmpty { try body(ids, rawLengths) }
    }

    /// The packs to search, most likely first: those the manifest says hold the targets, then
    /// every other pack it lists.
    static func packOrder(_ targets: [PullTarget], manifest: Manifest) -> [PackID] {
        var preferred = Set<PackID>()
        for t in targets {
            if let e = manifest.models[t.name.value]?.versions.first(where: { $0.id == t.id }) { preferred.formUnion(e.packs) }
        }
        return preferred.sorted() + Set(manifest.packs).subtracting(preferred).sorted()
    }

    /// Hands a pack index's entries to a closure (`RemoteReader.forEachIndexEntry`), so an index
    /// is looked through without being held.
    typealias IndexEntries = (PackID, (PackIndexEntry) throws -> Void) throws -> Void

    /// Finds each needed chunk in the first pack index (in `order`) that has it, reading indexes
    /// only while chunks remain unfound; checks every entry against the tree's chunk length.
    static func locate(_ needed: [ChunkID], rawLengths: [ChunkID: UInt32], order: [PackID], location: String,
                       entries: IndexEntries) throws -> [LocatedChunk] {
        var remaining = Set(needed)
        var located: [LocatedChunk] = []
        for pack in order where !remaining.isEmpty {
            try entries(pack) { e in
                guard e.codec != .delta && remaining.contains(e.id) else { return }
                guard rawLengths[e.id] == e.rawLength else {
                    throw SLMError.remote(url: location, problem: "chunk \(e.id.hex) is \(e.rawLength) bytes in pack index \(pack.hex) but \(rawLengths[e.id] ?? 0) in the tree")
                }
                located.append(LocatedChunk(id: e.id, pack: pack, entry: e))
                remaining.remove(e.id)
            }
        }
        if let example = remaining.first {
            throw SLMError.remote(url: location, problem: "\(remaining.count) needed chunks are in no pack the remote lists (e.g. \(example.hex))")
        }
        return located
    }

    /// Replaces a located full record by a smaller delta record from `deltaPacks` (packs of delta
    /// sets whose base version the device holds in full). Only deltas whose base chunks are all
    /// stored locally are chosen, so a planned delta can always be applied.
    static func preferDeltas(_ located: [LocatedChunk], deltaPacks: [PackID], rawLengths: [ChunkID: UInt32], location: String,
                             entries: IndexEntries) throws -> [LocatedChunk] {
        guard !deltaPacks.isEmpty else { return located }
        var best = Dictionary(uniqueKeysWithValues: located.map { ($0.id, $0) })
        for pack in deltaPacks {
            try entries(pack) { e in
                guard e.codec == .delta, let current = best[e.id] else { return }
                guard rawLengths[e.id] == e.rawLength else {
                    throw SLMError.remote(url: location, problem: "delta of chunk \(e.id.hex) is \(e.rawLength) bytes in pack index \(pack.hex) but \(rawLengths[e.id] ?? 0) in the tree")
                }
                if e.storedLength < current.entry.storedLength { best[e.id] = LocatedChunk(id: e.id, pack: pack, entry: e) }
            }
        }
        return located.map { best[$0.id] ?? $0 }
    }

    /// Groups located chunks into range requests per pack: records in offset order, joined
    /// while the gap between them is at most `gapLimit` and the range stays within `maxRange`.
    static func ranges(_ located: [LocatedChunk], gapLimit: UInt64, maxRange: UInt64) -> [RangePlan] {
        var byPack: [PackID: [LocatedChunk]] = [:]
        for c in located { byPack[c.pack, default: []].append(c) }
        var plans: [RangePlan] = []
        for (pack, items) in byPack.sorted(by: { $0.key < $1.key }) {
            var current: RangePlan? = nil
            for c in items.sorted(by: { $0.entry.offset < $1.entry.offset }) {
                let r = c.entry.recordRange
                if var p = current, r.lowerBound >= p.range.upperBound, r.lowerBound - p.range.upperBound <= gapLimit,
                   r.upperBound - p.range.lowerBound <= maxRange {
                    p.range = p.range.lowerBound..<r.upperBound
                    p.chunks.append(c.entry)
                    current = p
                } else {
                    if let p = current { plans.append(p) }
                    current = RangePlan(pack: pack, range: r, chunks: [c.entry])
                }
            }
            if let p = current { plans.append(p) }
        }
        return plans
    }
}
