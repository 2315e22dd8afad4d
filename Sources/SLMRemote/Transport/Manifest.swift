// manifest.json and its per-model entry files: what a remote publishes for clients and sync
// daemons to poll; their encoding and their decoding, which bounds and checks everything.
// Transport/ManifestBuilder.swift builds a manifest; RemoteReader loads the entry files it needs.

import SLMFormats
import SLMLocalStore
import Foundation
import Synchronization

/// A published store's manifest.json (Format.md): its models, their versions, stages and rollouts,
/// and its packs, so a device finds everything with one small read.
public struct Manifest: Sendable {
    /// One version as the manifest lists it.
    public struct VersionEntry: Sendable {
        /// The version (SemVer text).
        public var version: String
        /// The version id.
        public var id: SHA256Digest
        /// Its tree's id.
        public var tree: SHA256Digest
        /// When it was added (RFC 3339 UTC).
        public var created: String
        /// Bytes of all its files.
        public var size: UInt64
        /// Its files: path, SHA-256 in hex, size.
        public var files: [(path: String, sha256: String, size: UInt64)]
        /// Other models it needs.
        public var dependencies: [Dependency]
        /// Packs that hold this version's chunks.
        public var packs: [PackID]
        /// Delta sets that rebuild this version's chunks from another version's, by base id.
        public var deltas: [DeltaEntry] = []

        /// An entry from its fields.
        public init(version: String, id: SHA256Digest, tree: SHA256Digest, created: String, size: UInt64,
                    files: [(path: String, sha256: String, size: UInt64)], dependencies: [Dependency], packs: [PackID],
                    deltas: [DeltaEntry] = []) {
            (self.version, self.id, self.tree, self.created, self.size) = (version, id, tree, created, size)
            (self.files, self.dependencies, self.packs, self.deltas) = (files, dependencies, packs, deltas)
        }
    }

    /// A delta set the remote holds for a version: its base and the packs of its delta records.
    public struct DeltaEntry: Equatable, Sendable {
        /// The version the deltas apply to.
        public var base: SHA256Digest
        /// The packs holding the delta records.
        public var packs: [PackID]
    }

    /// Format 2: the file holding one model's version entries, named by its SHA-256, so it never
    /// changes once written and a reader can tell it from any other.
    public struct EntriesFile: Equatable, Sendable {
        /// The entries file's SHA-256 (its name).
        public var sha256: SHA256Digest
        /// Its size in bytes.
        public var size: UInt64
        /// Its path in the remote: manifests/<sha256>.json.
        public var path: String { RemoteLayout.manifestEntriesPath(sha256) }
    }

    /// One model as the manifest lists it.
    public struct ModelEntry: Sendable {
        /// SemVer order. Read from a format 2 manifest, empty until the entries file is loaded
        /// (`versionsLoaded`); `versionCount` and `versionsDigest` describe them meanwhile.
        public var versions: [VersionEntry]
        /// Stage to the version (SemVer text) that holds it.
        public var stages: [String: String]
        /// Active staged rollouts, by stage: a version some devices take before the stage moves.
        public var rollouts: [String: RolloutRecord] = [:]
        /// Stage -> the id it names, as listed.
        public var stageIDs: [String: SHA256Digest]
        /// Whether `versions` holds the model's versions (false until a format 2 entries file is
        /// loaded).
        public var versionsLoaded = true
        /// Where the version entries are (format 2), and how many versions, with which names
        /// (`Manifest.versionsDigest`), the manifest says the file lists.
        public var entriesFile: EntriesFile? = nil
        var listedCount = 0
        var listedDigest: SHA256Digest? = nil
        /// The manifest's entry for this model as read: written again unchanged by a publisher
        /// that did not load (and so did not change) the versions.
        package var summary: JSONValue? = nil

        /// A model entry with its versions in hand.
        public init(versions: [VersionEntry], stages: [String: String], rollouts: [String: RolloutRecord] = [:]) {
            self.versions = versions
            self.stages = stages
            self.rollouts = rollouts
            self.stageIDs = [:]
            for (stage, v) in stages { if let e = versions.first(where: { $0.version == v }) { stageIDs[stage] = e.id } }
        }

        /// How many versions the model has, loaded or not.
        public var versionCount: Int { versionsLoaded ? versions.count : listedCount }
        /// The digest of the model's version names, loaded or not (what tells an unchanged model).
        public var versionsDigest: SHA256Digest {
            versionsLoaded || listedDigest == nil ? Manifest.versionsDigest(versions.map(\.version)) : listedDigest!
        }
    }

    /// The store's name, for pages and messages.
    public var project: String
    /// When the manifest was written (RFC 3339 UTC).
    public var lastUpdated: String
    /// The models, by name.
    public var models: [String: ModelEntry]
    /// Every committed pack.
    public var packs: [PackID]
    /// The SHA-256 trailer of each pack's index, so a reader can tell a cached or served index
    /// from the one the publisher wrote.
    public var packIndexChecksums: [PackID: SHA256Digest] = [:]
    /// The remote's id, chosen once by its first publisher and kept by every push; signed
    /// releases name it (Format.md §7.4) so a device can tell one remote's release from another's.
    public var remoteID: String? = nil

    /// A manifest from its parts.
    public init(project: String, lastUpdated: String, models: [String: ModelEntry], packs: [PackID]) {
        (self.project, self.lastUpdated, self.models, self.packs) = (project, lastUpdated, models, packs)
    }

    /// The format this release writes; it reads 1 too.
    public static let currentFormat: UInt64 = 2
    /// 32 MiB, for manifest.json and for each entries file: some 25,000 versions with their file
    /// lists. Parsing costs about ten times the size, so this is what bounds a hostile manifest's
    /// cost on a device.
    public static let maxEncodedSize = 32 << 20

    static func versionJSON(_ name: String, _ v: VersionEntry) -> JSONValue {
        var o: [String: JSONValue] = [
            "version": .string(v.version), "id": .string(v.id.hex), "tree": .string(v.tree.hex),
            "created": .string(v.created), "size": .int(v.size),
            "path": .string(RemoteLayout.versionRefPath(name, v.version)),
            "files": .array(v.files.map { .object(["path": .string($0.path), "sha256": .string($0.sha256), "size": .int($0.size)]) }),
            "dependencies": .array(v.dependencies.map { .string("\($0.name)@\($0.range)") }),
            "packs": .array(v.packs.map { .string($0.hex) }),
        ]
        if !v.deltas.isEmpty {
            o["deltas"] = .array(v.deltas.map { .object(["base": .string($0.base.hex), "packs": .array($0.packs.map { .string($0.hex) })]) })
        }
        return .object(o)
    }

    /// A model's entries file: `{"format":2,"model":NAME,"versions":{...}}`.
    static func entriesFileBytes(_ name: String, _ m: ModelEntry) -> [UInt8] {
        let versions = Dictionary(uniqueKeysWithValues: m.versions.map { ($0.version, versionJSON(name, $0)) })
        let json = JSONValue.object(["format": .int(currentFormat), "model": .string(name), "versions": .object(versions)])
        return Array(json.prettyString().utf8) + [0x0a]
    }

    /// A model's entry in manifest.json (format 2), for versions that are loaded.
    static func summaryJSON(_ name: String, _ m: ModelEntry, file: EntriesFile) -> JSONValue {
        var stages: [String: JSONValue] = [:]
        for (stage, version) in m.stages {
            if let v = m.versions.first(where: { $0.version == version }) {
                stages[stage] = .object(["version": .string(version), "id": .string(v.id.hex)])
            }
        }
        var entry: [String: JSONValue] = [
            "stages": .object(stages),
            "version_count": .int(m.versions.count),
            "versions_sha256": .string(versionsDigest(m.versions.map(\.version)).hex),
            "entries": .object(["path": .string(file.path), "sha256": .string(file.sha256.hex), "size": .int(file.size)]),
        ]
        if !m.rollouts.isEmpty { entry["rollouts"] = .object(m.rollouts.mapValues(\.json)) }
        // The seed article's shape: the version a client should run, its hash, path, dependencies.
        let latest = Manifest.latest(m.versions)
        let headVersion = m.stages["production"] ?? latest?.version
        if let head = m.versions.first(where: { $0.version == headVersion }) {
            entry["version"] = .string(head.version)
            entry["hash"] = .string(head.id.hex)
            entry["path"] = .string(RemoteLayout.versionRefPath(name, head.version))
            entry["dependencies"] = .array(head.dependencies.map { .string("\($0.name)@\($0.range)") })
        }
        if let latest {
            entry["latest"] = .string(latest.version)
            entry["latest_size"] = .int(latest.size)
        }
        if let last = m.versions.map(\.created).max() { entry["last_created"] = .string(last) }
        return .object(entry)
    }

    /// SHA-256 of a model's version names sorted by their bytes, each followed by "\n": lets a
    /// manifest say which versions an entries file lists without listing them.
    public static func versionsDigest(_ names: [String]) -> SHA256Digest {
        SHA256Hasher.hash(names.map { Array($0.utf8) }.sorted { $0.lexicographicallyPrecedes($1) }.flatMap { $0 + [0x0a] })
    }

    /// The highest release among `versions` by SemVer precedence (a pre-release only when there is no release).
    package static func latest(_ versions: [VersionEntry]) -> VersionEntry? {
        let parsed = versions.compactMap { v in SemVer(parsing: v.version).map { (v, $0) } }
        return (parsed.filter { !$0.1.isPrerelease }.max { $0.1 < $1.1 } ?? parsed.max { $0.1 < $1.1 })?.0
    }

    /// manifest.json (format 2) and the entries files of the models whose versions are loaded;
    /// a model read but not loaded keeps the entry (and the file) it had.
    public func encodedFiles() -> (manifest: [UInt8], entries: [(path: String, bytes: [UInt8])]) {
        var models: [String: JSONValue] = [:]
        var entries: [(path: String, bytes: [UInt8])] = []
        for (name, m) in self.models {
            if !m.versionsLoaded, let summary = m.summary {
                models[name] = summary
                continue
            }
            let bytes = Manifest.entriesFileBytes(name, m)
            let file = EntriesFile(sha256: SHA256Hasher.hash(bytes), size: UInt64(bytes.count))
            entries.append((file.path, bytes))
            models[name] = Manifest.summaryJSON(name, m, file: file)
        }
        var top: [String: JSONValue] = [
            "format": .int(Manifest.currentFormat), "project": .string(project), "last_updated": .string(lastUpdated),
            "models": .object(models), "packs": .array(packs.map { .string($0.hex) }),
        ]
        if let remoteID { top["remote_id"] = .string(remoteID) }
        if !packIndexChecksums.isEmpty {
            top["pack_index_sha256"] = .object(Dictionary(uniqueKeysWithValues: packIndexChecksums.map { ($0.key.hex, .string($0.value.hex)) }))
        }
        return (Array(JSONValue.object(top).prettyString().utf8) + [0x0a], entries.sorted { $0.path < $1.path })
    }

    /// Version entries of one model, from a format 1 manifest's model entry or a format 2 entries file.
    static func decodeVersions(_ name: String, _ object: [String: JSONValue], bad: (String) -> SLMError) throws -> [VersionEntry] {
        var versions: [VersionEntry] = []
        for (vs, e) in object {
            guard SemVer(parsing: vs) != nil, let id = e["id"]?.stringValue.flatMap(SHA256Digest.init(hex:)),
                  let tree = e["tree"]?.stringValue.flatMap(SHA256Digest.init(hex:)) else {
                throw bad("bad entry for \(name)@\(vs)")
            }
            let packs = (e["packs"]?.arrayValue ?? []).compactMap { $0.stringValue.flatMap(PackID.init(hex:)) }
            let files = (e["files"]?.arrayValue ?? []).map {
                (path: $0["path"]?.stringValue ?? "", sha256: $0["sha256"]?.stringValue ?? "", size: $0["size"]?.uint64Value ?? 0)
            }
            let deps: [Dependency] = (e["dependencies"]?.arrayValue ?? []).compactMap { d in
                guard let s = d.stringValue, let at = s.firstIndex(of: "@") else { return nil }
                return Dependency(name: String(s[..<at]), range: String(s[s.index(after: at)...]))
            }
            var deltas: [DeltaEntry] = []
            for d in e["deltas"]?.arrayValue ?? [] {
                guard let base = d["base"]?.stringValue.flatMap(SHA256Digest.init(hex:)), base != id,
                      let list = d["packs"]?.arrayValue, list.count <= DeltaSet.maxPacks else {
                    throw bad("bad delta entry for \(name)@\(vs)")
                }
                deltas.append(DeltaEntry(base: base, packs: list.compactMap { $0.stringValue.flatMap(PackID.init(hex:)) }))
            }
            versions.append(VersionEntry(version: vs, id: id, tree: tree, created: e["created"]?.stringValue ?? "",
                                         size: e["size"]?.uint64Value ?? 0, files: files, dependencies: deps, packs: packs, deltas: deltas))
        }
        let zero = SemVer(major: 0, minor: 0, patch: 0)
        versions.sort { (SemVer(parsing: $0.version) ?? zero) < (SemVer(parsing: $1.version) ?? zero) }
        return versions
    }

    /// manifest.json, format 1 or 2. A format 2 manifest's models come without their versions:
    /// `loadVersions` reads the entries files of those a reader needs.
    public static func decode(_ bytes: [UInt8], source: String) throws -> Manifest {
        func bad(_ p: String) -> SLMError { .damaged(path: source, problem: "manifest: \(p)") }
        let v: JSONValue
        do { v = try JSONValue.parse(bytes, maxValues: JSONValue.remoteValueLimit(forBytes: bytes.count)) } catch { throw bad("not valid JSON").caused(by: error) }
        guard let format = v["format"]?.uint64Value else { throw bad("no format") }
        guard format <= currentFormat else {
            throw SLMError.unsupportedFormat(path: source, what: "manifest", found: format, supported: currentFormat)
        }
        var models: [String: ModelEntry] = [:]
        for (name, m) in v["models"]?.objectValue ?? [:] {
            guard ModelName(parsing: name) != nil else { throw bad("invalid model name \"\(name)\"") }
            var stages: [String: String] = [:]
            var stageIDs: [String: SHA256Digest] = [:]
            for (stage, s) in m["stages"]?.objectValue ?? [:] {
                guard let ver = s["version"]?.stringValue else { continue }
                stages[stage] = ver
                if let id = s["id"]?.stringValue.flatMap(SHA256Digest.init(hex:)) { stageIDs[stage] = id }
            }
            var rollouts: [String: RolloutRecord] = [:]
            for (stage, r) in m["rollouts"]?.objectValue ?? [:] {
                let record = try RolloutRecord.decode(r, source: "\(source) (rollout \(name)@\(stage))")
                if record.state == .active { rollouts[stage] = record }
            }
            var entry: ModelEntry
            if format == 1 {
                entry = ModelEntry(versions: try decodeVersions(name, m["versions"]?.objectValue ?? [:], bad: bad), stages: stages, rollouts: rollouts)
            } else {
                guard let file = m["entries"], let sha = file["sha256"]?.stringValue.flatMap(SHA256Digest.init(hex:)),
                      let size = file["size"]?.uint64Value, size <= UInt64(maxEncodedSize),
                      let count = m["version_count"]?.uint64Value, count <= size,
                      let digest = m["versions_sha256"]?.stringValue.flatMap(SHA256Digest.init(hex:)) else {
                    throw bad("bad entries file reference for \(name)")
                }
                entry = ModelEntry(versions: [], stages: stages, rollouts: rollouts)
                entry.versionsLoaded = false
                entry.entriesFile = EntriesFile(sha256: sha, size: size)
                entry.listedCount = Int(count)
                entry.listedDigest = digest
                entry.summary = m
            }
            entry.stageIDs = stageIDs
            models[name] = entry
        }
        let packs = (v["packs"]?.arrayValue ?? []).compactMap { $0.stringValue.flatMap(PackID.init(hex:)) }
        var checksums: [PackID: SHA256Digest] = [:]
        for (id, sum) in v["pack_index_sha256"]?.objectValue ?? [:] {
            guard let p = PackID(hex: id), let d = sum.stringValue.flatMap(SHA256Digest.init(hex:)) else { throw bad("bad pack_index_sha256 entry \(id)") }
            checksums[p] = d
        }
        var m = Manifest(project: v["project"]?.stringValue ?? "", lastUpdated: v["last_updated"]?.stringValue ?? "",
                         models: models, packs: packs)
        m.packIndexChecksums = checksums
        if let r = v["remote_id"] {
            guard let id = r.stringValue, SignedRelease.isValidRemoteID(id) else { throw bad("remote_id must be 1 to 64 characters of A-Z a-z 0-9 . _ -") }
            m.remoteID = id
        }
        return m
    }

    /// Loads the version entries of `wanted` models (every model when nil) that are not loaded
    /// yet, each from its entries file read through `read(path, limit)` (nil: absent) and checked:
    /// its size and SHA-256 against the manifest, the model it names, and the versions it lists.
    /// `cache` keeps decoded files by hash (they never change), so a poller reads each once.
    public mutating func loadVersions(of wanted: Set<String>?, location: String, cache: ManifestEntriesCache? = nil,
                                      read: (String, Int) throws -> [UInt8]?) throws {
        for (name, m) in models where !m.versionsLoaded && (wanted?.contains(name) ?? true) {
            guard let file = m.entriesFile else { continue }
            let source = "\(location)/\(file.path)"
            var versions: [VersionEntry]
            if let known = cache?.versions(file.sha256) {
                versions = known
            } else {
                guard let bytes = try read(file.path, Int(file.size)) else {
                    throw SLMError.remote(url: source, problem: "missing: manifest.json lists it for \(name)")
                }
                guard bytes.count == Int(file.size), SHA256Hasher.hash(bytes) == file.sha256 else {
                    throw SLMError.remote(url: source, problem: "is not the entries file manifest.json lists for \(name) (size or SHA-256 differs)")
                }
                func bad(_ p: String) -> SLMError { .damaged(path: source, problem: "manifest entries: \(p)") }
                let v: JSONValue
                do { v = try JSONValue.parse(bytes, maxValues: JSONValue.remoteValueLimit(forBytes: bytes.count)) } catch { throw bad("not valid JSON").caused(by: error) }
                guard let format = v["format"]?.uint64Value, format == 2 else { throw bad("format is not 2") }
                guard v["model"]?.stringValue == name else { throw bad("lists model \(v["model"]?.stringValue ?? "?"), not \(name)") }
                versions = try Manifest.decodeVersions(name, v["versions"]?.objectValue ?? [:], bad: bad)
                cache?.remember(file.sha256, versions)
            }
            guard versions.count == m.listedCount, Manifest.versionsDigest(versions.map(\.version)) == m.listedDigest else {
                throw SLMError.remote(url: source, problem: "lists other versions of \(name) than manifest.json")
            }
            models[name]!.versions = versions
            models[name]!.versionsLoaded = true
        }
    }
}

/// Decoded entries files by hash, for a reader that polls a manifest (a sync daemon): a file's
/// name is its hash, so what it holds never changes. Holds only what `keep` last named.
public final class ManifestEntriesCache: Sendable {
    private let byHash = Mutex<[SHA256Digest: [Manifest.VersionEntry]]>([:])
    /// An empty cache.
    public init() {}
    func versions(_ sha: SHA256Digest) -> [Manifest.VersionEntry]? { byHash.withLock { $0[sha] } }
    func remember(_ sha: SHA256Digest, _ versions: [Manifest.VersionEntry]) { byHash.withLock { $0[sha] = versions } }
    /// Forgets files the latest manifest no longer names.
    public func keep(_ manifest: Manifest) {
        let named = Set(manifest.models.values.compactMap(\.entriesFile?.sha256))
        byHash.withLock { $0 = $0.filter { named.contains($0.key) } }
    }
}

extension Store {
    /// In a published store: entries files (`manifests/`) that manifest.json no longer names
    /// and that are more than an hour old, so a reader that read the manifest before it was
    /// replaced can still fetch them.
    /// `gc` leaves them: which files are live is the remote layer's to say; the CLI's gc calls both.
    /// Without a manifest nothing is removed; a damaged one is an error (and nothing is removed).
    public func removeReplacedManifestEntries(olderThan seconds: Int = 3600) throws {
        let dir = "\(root)/manifests"
        let manifestPath = "\(root)/\(RemoteLayout.manifest)"
        guard FileSystem.isDirectory(dir), FileSystem.exists(manifestPath) else { return }
        let manifest = try Manifest.decode(try FileSystem.readFile(manifestPath, limit: Manifest.maxEncodedSize), source: manifestPath)
        let named = Set(manifest.models.values.compactMap { $0.entriesFile.map { "\($0.sha256.hex).json" } })
        let now = time(nil)
        for name in try FileSystem.listDirectory(dir) where name.hasSuffix(".json") && !named.contains(name) {
            var st = stat()
            if lstat("\(dir)/\(name)", &st) == 0, now - st.st_mtim.tv_sec > seconds { FileSystem.remove("\(dir)/\(name)") }
        }
    }
}
