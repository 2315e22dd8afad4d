// What a push sends, decided from what the remote holds before anything is written: the versions
// it lacks, the chunks none of its packs hold (each once, in first-use order) and, once those are
// uploaded, the packs each version's chunks are in. Pure functions over values, like PullPlan, so
// the rules are tested without a remote.

import SLMFormats
import SLMLocalStore

struct PushPlan {
    /// A version the remote lacks, with the encoded objects it will receive.
    struct Version {
        var resolved: ResolvedVersion
        /// Read from its object file on demand when large (`Store.readTree`).
        var tree: TreeObject
        var versionBytes: [UInt8]
        var label: String { "\(resolved.name)@\(resolved.version)" }
    }

    /// Versions the remote already holds as the same objects ("name@version").
    var present: [String] = []
    /// Versions to publish, in selection order (a version before its dependencies).
    var versions: [Version] = []
    /// Chunks of `versions` that no remote pack holds a full record of.
    var missing: [ChunkID] = []
    /// Every chunk the versions list, once, sorted: `holder` is indexed by position in it.
    private(set) var chunks = ChunkIDSet()
    /// Per chunk: 1 + the index in `packs` of the remote pack with a full record of it; 0 while
    /// the remote has none.
    private var holder: [UInt32] = []
    /// The remote packs `holder` names: those searched, then those uploaded.
    private var packs: [PackID] = []
    /// How many of `packs` were found by the search (the rest were uploaded).
    private var foundPackCount = 0
    /// Pack indexes read to find them.
    var indexesRead = 0

    /// What a selected version is on the remote: absent (`remoteID` nil), the same version, or a
    /// different one under the same name, which is refused because versions are immutable.
    mutating func classify(_ r: ResolvedVersion, remoteID: SHA256Digest?, location: String,
                           objects: () throws -> (tree: TreeObject, versionBytes: [UInt8])) throws {
        if let remoteID {
            guard remoteID == r.id else {
                throw SLMError.conflict("\(location) already has \(r.name)@\(r.version) as a different version (\(remoteID.hex.prefix(12)) vs local \(r.id.hex.prefix(12))); versions are immutable")
            }
            present.append("\(r.name)@\(r.version)")
            return
        }
        let o = try objects()
        versions.append(Version(resolved: r, tree: o.tree, versionBytes: o.versionBytes))
    }

    /// The models whose packs are searched first: those pushed and those they depend on (a new
    /// version's unchanged chunks are in its model's packs).
    var models: Set<String> {
        var m = Set(versions.map { $0.resolved.name.value })
        for v in versions { for d in v.resolved.object.dependencies { m.insert(d.name) } }
        return m
    }

    /// Searches the packs of `order`, one index at a time through `entries`, until every chunk
    /// of `versions` is found; the rest are `missing`. Only full records count: a remote serves
    /// a full record of every chunk it lists (Format.md §9), a delta record needs its base.
    /// Memory: 16 bytes a distinct chunk for the sorted set, 4 for the pack holding it, 1 while
    /// listing the missing ones (16 each), never a hash table per chunk.
    mutating func locate(order: [PackID], entries: (PackID) throws -> [PackIndexEntry]) throws {
        var builder = ChunkIDSet.Builder()
        for v in versions { for f in v.tree.files { try f.chunks.forEach { builder.insert($0.id) } } }
        chunks = builder.build()
        holder = [UInt32](repeating: 0, count: chunks.count)
        var remaining = chunks.count
        for pack in order where remaining > 0 {
            indexesRead += 1
            let number = packNumber(pack)
            for e in try entries(pack) where e.codec != .delta {
                if let i = chunks.position(of: e.id), holder[i] == 0 {
                    holder[i] = number
                    remaining -= 1
                }
            }
        }
        foundPackCount = packs.count
        var listed = [Bool](repeating: false, count: chunks.count)
        for v in versions {
            for f in v.tree.files {
                try f.chunks.forEach { c in
                    if let i = chunks.position(of: c.id), holder[i] == 0, !listed[i] {
                        listed[i] = true
                        missing.append(c.id)
                    }
                }
            }
        }
    }

    /// Where the remote holds the chunks it held before the push (for tests and reports).
    var foundIn: [ChunkID: PackID] {
        var out: [ChunkID: PackID] = [:]
        for (i, id) in chunks.members.enumerated() where holder[i] != 0 && holder[i] <= foundPackCount { out[id] = packs[Int(holder[i]) - 1] }
        return out
    }

    /// Notes that `ids` now sit in the uploaded pack `pack`.
    mutating func noteUploaded(_ ids: [ChunkID], in pack: PackID) {
        let number = packNumber(pack)
        for id in ids { if let i = chunks.position(of: id) { holder[i] = number } }
    }

    private mutating func packNumber(_ pack: PackID) -> UInt32 {
        if let last = packs.last, last == pack { return UInt32(packs.count) }
        packs.append(pack)
        return UInt32(packs.count)
    }

    /// The packs each version's chunks end up in, by version id (after the upload was noted).
    func versionPacks() throws -> [SHA256Digest: [PackID]] {
        var result: [SHA256Digest: [PackID]] = [:]
        for v in versions {
            var numbers = Set<UInt32>()
            for f in v.tree.files { try f.chunks.forEach { c in if let i = chunks.position(of: c.id), holder[i] != 0 { numbers.insert(holder[i]) } } }
            result[v.resolved.id] = Set(numbers.map { packs[Int($0) - 1] }).sorted()
        }
        return result
    }
}
