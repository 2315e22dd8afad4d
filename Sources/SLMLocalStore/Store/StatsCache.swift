// Figures `ls` shows for every version (size, stored and new bytes) and for every model, kept in
// `cache/` so that listing a registry of thousands of versions reads no tree and no pack index.
// Derived data: a missing or unreadable entry is computed again; gc keeps what it did not change.

import SLMFormats
import Foundation

extension Store {
    var versionStatsCacheRoot: String { root + "/cache/version-stats" }
    var modelStatsCacheRoot: String { root + "/cache/model-stored" }
    var modelListingCacheRoot: String { root + "/cache/model-listing" }

    /// What `ls` shows of a version: its figures and creation time, from the cache, else
    /// computed (and cached) from its objects and `index`, which is loaded only then.
    public func cachedListing(of id: SHA256Digest, index: () throws -> ChunkIndex) throws -> VersionListing {
        let path = "\(versionStatsCacheRoot)/\(id.hex)"
        if let bytes = FileSystem.readCacheFile(path, limit: 4096), let s = VersionListing(cacheLine: bytes) { return s }
        let object = try readVersion(id)
        return try cacheListing(of: id, object: object, tree: try readTree(object.tree), index: try index())
    }

    /// Computes and caches a version's listing from objects already in hand (`add` has them).
    @discardableResult
    func cacheListing(of id: SHA256Digest, object: VersionObject, tree: TreeObject, index: ChunkIndex) throws -> VersionListing {
        // The parent only sets "new bytes"; a parent removed since counts as none, a damaged one
        // is an error (the caller may skip the cache over it).
        let parentTree = try object.parent.flatMap { hasObject($0) ? try readTree(try readVersion($0).tree) : nil }
        let s = VersionListing(stats: try stats(of: tree, parentTree: parentTree, index: index), created: object.created)
        FileSystem.writeCacheFile(s.cacheLine, to: "\(versionStatsCacheRoot)/\(id.hex)")
        return s
    }

    /// `cachedListing` for every version of a model, through one cache file per set of
    /// versions (so `ls` of a large registry opens one file per model, not one per version).
    public func cachedListings(_ name: ModelName, versions ids: [SHA256Digest], index: () throws -> ChunkIndex) throws -> [VersionListing] {
        let path = "\(modelListingCacheRoot)/\(cacheKey(name, ids))"
        if let bytes = FileSystem.readCacheFile(path, limit: 16 << 20) {
            var found: [SHA256Digest: VersionListing] = [:]
            for line in bytes.split(separator: 0x0a) where line.count > 65 {
                if let id = SHA256Digest(hex: String(decoding: line.prefix(64), as: UTF8.self)),
                   let l = VersionListing(cacheLine: Array(line.dropFirst(65)) + [0x0a]) { found[id] = l }
            }
            let all = ids.compactMap { found[$0] }
            if all.count == ids.count { return all }
        }
        let all = try ids.map { try cachedListing(of: $0, index: index) }
        FileSystem.writeCacheFile(zip(ids, all).flatMap { Array(($0.hex + " ").utf8) + $1.cacheLine }, to: path)
        return all
    }

    private func cacheKey(_ name: ModelName, _ ids: [SHA256Digest]) -> String {
        SHA256Hasher.hash(Array((name.value + "\n" + ids.map(\.hex).sorted().joined(separator: "\n")).utf8)).hex
    }

    /// Stored bytes of the distinct chunks of all of a model's versions, cached under a key made
    /// of their ids (a new or removed version makes a new key).
    public func cachedModelStoredBytes(_ name: ModelName, versions: [SHA256Digest], index: () throws -> ChunkIndex) throws -> UInt64 {
        let path = "\(modelStatsCacheRoot)/\(cacheKey(name, versions))"
        if let bytes = FileSystem.readCacheFile(path, limit: 64), let text = String(bytes: bytes, encoding: .utf8),
           let v = UInt64(text.trimmingCharacters(in: .whitespacesAndNewlines)) {
            return v
        }
        var chunks = ChunkIDSet.Builder()
        for id in versions {
            for f in try readTree(try readVersion(id).tree).files { try f.chunks.forEach { chunks.insert($0.id) } }
        }
        let index = try index()
        var total: UInt64 = 0
        chunks.build().forEachMember { total += index.recordBytes(of: $0) }
        FileSystem.writeCacheFile(Array("\(total)\n".utf8), to: path)
        return total
    }

    /// Where gc keeps the figures while it works; whatever is found there at gc's start was left
    /// by a gc that did not finish, and is dropped.
    var statsStashRoot: String { root + "/cache/.gc-stash" }

    private var statsCacheDirectories: [(live: String, stashed: String)] {
        [versionStatsCacheRoot, modelStatsCacheRoot, modelListingCacheRoot].map { ($0, "\(statsStashRoot)/\(FileSystem.basename($0))") }
    }

    /// Moves the figures out of readers' way (an `ls` meanwhile computes its own).
    func stashStatsCache() {
        FileSystem.removeTree(statsStashRoot)
        // Derived data: figures that cannot be moved aside are dropped, and computed again.
        for (live, stashed) in statsCacheDirectories where FileSystem.isDirectory(live) {
            do {
                try FileSystem.makeDirectories(statsStashRoot)
                try FileSystem.rename(live, stashed)
            } catch {
                FileSystem.removeTree(live)
            }
        }
    }

    /// Puts the stashed figures back, without those of versions gc found unreachable and those
    /// of version sets no model has any more.
    func restoreStatsCache(keeping liveVersions: Set<SHA256Digest>) {
        defer { FileSystem.removeTree(statsStashRoot) }
        var keys = Set<String>()
        do {
            for model in try models() { keys.insert(cacheKey(model, try versions(of: model).map(\.id))) }
        } catch { return }
        for (live, stashed) in statsCacheDirectories where FileSystem.isDirectory(stashed) && !FileSystem.exists(live) {
            let keep: (String) -> Bool = live == versionStatsCacheRoot
                ? { SHA256Digest(hex: $0).map(liveVersions.contains) ?? false } : { keys.contains($0) }
            // A stash that cannot be listed or moved back is removed (the defer) and computed again.
            do {
                for name in try FileSystem.listDirectory(stashed) where !keep(name) { FileSystem.remove("\(stashed)/\(name)") }
                try FileSystem.rename(stashed, live)
            } catch {
                continue
            }
        }
    }
}

/// What `ls` shows of a version: its figures and when it was added.
public struct VersionListing: Sendable {
    /// The version's chunk and byte figures.
    public var stats: VersionStats
    /// The version object's `created` (RFC 3339, no spaces).
    public var created: String

    /// "files rawBytes chunks uniqueChunks storedBytes sharedWithParent newStoredBytes created\n"
    var cacheLine: [UInt8] {
        let s = stats
        return Array("\(s.files) \(s.rawBytes) \(s.chunks) \(s.uniqueChunks) \(s.storedBytes) \(s.sharedWithParent) \(s.newStoredBytes) \(created)\n".utf8)
    }

    init(stats: VersionStats, created: String) {
        self.stats = stats
        self.created = created
    }

    init?(cacheLine bytes: [UInt8]) {
        guard bytes.last == 0x0a else { return nil }
        let fields = String(decoding: bytes.dropLast(), as: UTF8.self).split(separator: " ", omittingEmptySubsequences: false)
        guard fields.count == 8 else { return nil }
        let n = fields.prefix(7).compactMap { UInt64($0) }
        guard n.count == 7, n.allSatisfy({ $0 <= UInt64(Int.max) }) else { return nil }
        stats = VersionStats(files: Int(n[0]), rawBytes: n[1], chunks: Int(n[2]), uniqueChunks: Int(n[3]),
                             storedBytes: n[4], sharedWithParent: Int(n[5]), newStoredBytes: n[6])
        created = String(fields[7])
    }
}
