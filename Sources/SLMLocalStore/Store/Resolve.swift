// Turning a VersionRef into a stored version, the per-version figures `ls` and `show` print,
// and removing a version.

import SLMFormats
import Foundation

/// A version found in a store: its name, version, id and object.
public struct ResolvedVersion: Sendable {
    /// The model.
    public var name: ModelName
    /// The version.
    public var version: SemVer
    /// The version id (the SHA-256 of the version object).
    public var id: SHA256Digest
    /// The decoded version object.
    public var object: VersionObject

    /// A resolved version from its parts.
    public init(name: ModelName, version: SemVer, id: SHA256Digest, object: VersionObject) {
        self.name = name
        self.version = version
        self.id = id
        self.object = object
    }
}

extension Store {
    /// Resolves exact versions and version ids. Selectors (ranges, stages, `latest`) go through
    /// `resolveSelector`, which the registry provides.
    public func resolve(_ ref: VersionRef) throws -> ResolvedVersion {
        switch ref {
        case let .exact(name, version):
            guard let id = try readRef(at: versionRefPath(name, version)) else {
                let known = try versions(of: name).map { $0.version.description }
                if known.isEmpty { throw SLMError.notFound("unknown model \(name) (no versions in \(root))") }
                throw SLMError.notFound("unknown version \(name)@\(version); known versions: \(known.joined(separator: ", "))")
            }
            return ResolvedVersion(name: name, version: version, id: id, object: try readVersion(id))
        case let .id(prefix):
            var matches: [(ModelName, SemVer, SHA256Digest)] = []
            for model in try models() {
                for (v, id) in try versions(of: model) where id.hex.hasPrefix(prefix) { matches.append((model, v, id)) }
            }
            let ids = Set(matches.map { $0.2 })
            guard let first = matches.first else { throw SLMError.notFound("no version id starts with \(prefix)") }
            guard ids.count == 1 else {
                throw SLMError.argument("version id prefix \(prefix) is ambiguous: \(matches.map { "\($0.0)@\($0.1) \($0.2.hex.prefix(16))" }.joined(separator: ", "))")
            }
            return ResolvedVersion(name: first.0, version: first.1, id: first.2, object: try readVersion(first.2))
        case let .selector(name, selector):
            return try resolveSelector(name: name, selector: selector).resolved
        }
    }

    /// `name@version` when this store holds it, nil when it does not; a ref or object that is
    /// there but damaged is an error, not an absence.
    public func resolveIfPresent(_ name: ModelName, _ version: SemVer) throws -> ResolvedVersion? {
        guard let id = try readRef(at: versionRefPath(name, version)) else { return nil }
        return ResolvedVersion(name: name, version: version, id: id, object: try readVersion(id))
    }

    /// Resolves what a user wrote (`VersionRef.parse`).
    public func resolve(_ text: String) throws -> ResolvedVersion { try resolve(try VersionRef.parse(text)) }
}

/// Chunk and dedup figures of one version against the store.
public struct VersionStats: Sendable {
    /// Files in the version.
    public var files: Int
    /// Bytes of all its files.
    public var rawBytes: UInt64
    /// Chunk references in its files (with repeats).
    public var chunks: Int
    /// Distinct chunks.
    public var uniqueChunks: Int
    /// Compressed bytes (record headers included) of the version's distinct chunks.
    public var storedBytes: UInt64
    /// Distinct chunks also used by the parent version.
    public var sharedWithParent: Int
    /// Compressed bytes of distinct chunks the parent does not have: what this version cost.
    public var newStoredBytes: UInt64
}

extension Store {
    /// The figures of `tree` against the store's records (`index`), and against `parentTree` for
    /// what it shares.
    public func stats(of tree: TreeObject, parentTree: TreeObject?, index: ChunkIndex) throws -> VersionStats {
        var unique = Set<ChunkID>()
        var chunks = 0
        for f in tree.files { try f.chunks.forEach { unique.insert($0.id); chunks += 1 } }
        var parentChunks = Set<ChunkID>()
        for f in parentTree?.files ?? [] { try f.chunks.forEach { parentChunks.insert($0.id) } }
        var stored: UInt64 = 0, newStored: UInt64 = 0, shared = 0
        for id in unique {
            let size = index.recordBytes(of: id)
            stored += size
            if parentChunks.contains(id) { shared += 1 } else { newStored += size }
        }
        return VersionStats(files: tree.files.count, rawBytes: tree.totalSize, chunks: chunks, uniqueChunks: unique.count,
                            storedBytes: stored, sharedWithParent: shared, newStoredBytes: newStored)
    }
}

extension Store {
    /// The versions that name `r` as their parent or are stored as deltas against it
    /// ("NAME@VERSION (parent)", "NAME@VERSION (delta base)"): what removing `r` leaves without
    /// its history or its base (gc keeps the base chunks a delta-stored version needs).
    public func dependants(of r: ResolvedVersion) throws -> [String] {
        var out: [String] = []
        for model in try models() {
            for (v, id) in try versions(of: model) where id != r.id {
                if try readVersion(id).parent == r.id { out.append("\(model)@\(v) (parent)") }
            }
        }
        for set in try deltaSets() where set.base == r.id && set.target != r.id && hasObject(set.target) {
            let t = try readVersion(set.target)
            let label = "\(t.name)@\(t.version) (delta base)"
            if !out.contains(label) { out.append(label) }
        }
        return out.sorted()
    }

    /// Removes a version's ref (its data goes at the next gc). Refused while a stage points at it
    /// or another version depends on it.
    public func removeVersion(_ r: ResolvedVersion) throws {
        let refs = try refsLock()
        defer { refs.unlock() }
        for (stage, id) in try stageRefs(of: r.name) where id == r.id {
            throw SLMError.conflict("\(r.name)@\(r.version) holds stage \(stage); promote another version or roll back first")
        }
        for model in try models() {
            for (v, id) in try versions(of: model) where id != r.id {
                let other = try readVersion(id)
                for dep in other.dependencies where dep.name == r.name.value {
                    let picked: ResolvedVersion
                    do { picked = try resolveSelector(name: r.name, selector: dep.range).resolved } catch let e as SLMError {
                        guard case .notFound = e.kind else { throw e }
                        continue  // resolves to nothing here, so not to this version
                    }
                    if picked.id == r.id {
                        throw SLMError.conflict("\(model)@\(v) depends on \(r.name)@\(dep.range), which resolves to \(r.version); remove it first")
                    }
                }
            }
        }
        let path = versionRefPath(r.name, r.version)
        guard unlink(path) == 0 else { throw SLMError.io(path: path, operation: "unlink", errno: errno) }
        try FileSystem.syncDirectory(FileSystem.dirname(path))
    }
}
