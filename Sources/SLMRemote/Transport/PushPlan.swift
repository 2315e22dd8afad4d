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
        var tree: TreeObject
        var treeBytes: [UInt8]
        var versionBytes: [UInt8]
        var label: String { "\(resolved.name)@\(resolved.version)" }
    }

    /// Versions the remote already holds as the same objects ("name@version").
    var present: [String] = []
    /// Versions to publish, in selection order (a version before its dependencies).
    var versions: [Version] = []
    /// Chunks of `versions` that no remote pack holds a full record of.
    var missing: [ChunkID] = []
    /// Where the remote holds the others.
    var foundIn: [ChunkID: PackID] = [:]
    /// Pack indexes read to find them.
    var indexesRead = 0

    /// What a selected version is on the remote: absent (`remoteID` nil), the same version, or a
    /// different one under the same name, which is refused because versions are immutable.
    mutating func classify(_ r: ResolvedVersion, remoteID: SHA256Digest?, location: String,
                           objects: () throws -> (tree: TreeObject, treeBytes: [UInt8], versionBytes: [UInt8])) throws {
        if let remoteID {
            guard remoteID == r.id else {
                throw SLMError.conflict("\(location) already has \(r.name)@\(r.version) as a different version (\(remoteID.hex.prefix(12)) vs local \(r.id.hex.prefix(12))); versions are immutable")
            }
            present.append("\(r.name)@\(r.version)")
            return
        }
        let o = try objects()
        versions.append(Version(resolved: r, tree: o.tree, treeBytes: o.treeBytes, versionBytes: o.versionBytes))
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
    mutating func locate(order: [PackID], entries: (PackID) throws -> [PackIndexEntry]) throws {
        var remaining = Set<ChunkID>()
        for v in versions { for f in v.tree.files { try f.chunks.forEach { remaining.insert($0.id) } } }
        for pack in order where !remaining.isEmpty {
            indexesRead += 1
            for e in try entries(pack) where e.codec != .delta && remaining.remove(e.id) != nil { foundIn[e.id] = pack }
        }
        var seen = Set<ChunkID>()
        for v in versions {
            for f in v.tree.files { try f.chunks.forEach { c in if remaining.contains(c.id) && seen.insert(c.id).inserted { missing.append(c.id) } } }
        }
    }

    /// The packs each version's chunks are in once the missing ones went into `uploaded`: the
    /// manifest lists them, so a device reads only those packs' indexes.
    func versionPacks(uploaded: [ChunkID: PackID]) throws -> [SHA256Digest: [PackID]] {
        var result: [SHA256Digest: [PackID]] = [:]
        for v in versions {
            var packs = Set<PackID>()
            for f in v.tree.files { try f.chunks.forEach { c in if let p = foundIn[c.id] ?? uploaded[c.id] { packs.insert(p) } } }
            result[v.resolved.id] = packs.sorted()
        }
        return result
    }
}
