// manifest.json: what a remote publishes for clients and sync daemons to poll; its encoding
// and its decoding, which bounds and checks everything. Transport/ManifestBuilder.swift builds it.

import Foundation

public struct Manifest: Sendable {
    public struct VersionEntry: Sendable {
        public var version: String
        public var id: SHA256Digest
        public var tree: SHA256Digest
        public var created: String
        public var size: UInt64
        public var files: [(path: String, sha256: String, size: UInt64)]
        public var dependencies: [Dependency]
        /// Packs that hold this version's chunks.
        public var packs: [PackID]
        /// Delta sets that rebuild this version's chunks from another version's, by base id.
        public var deltas: [DeltaEntry] = []
    }

    public struct DeltaEntry: Equatable, Sendable {
        public var base: SHA256Digest
        public var packs: [PackID]
    }

    public struct ModelEntry: Sendable {
        public var versions: [VersionEntry]          // SemVer order
        public var stages: [String: String]          // stage -> version string
        /// Active staged rollouts, by stage: a version some devices take before the stage moves.
        public var rollouts: [String: RolloutRecord] = [:]

        public init(versions: [VersionEntry], stages: [String: String], rollouts: [String: RolloutRecord] = [:]) {
            self.versions = versions
            self.stages = stages
            self.rollouts = rollouts
        }
    }

    public var project: String
    public var lastUpdated: String
    public var models: [String: ModelEntry]
    public var packs: [PackID]
    /// The SHA-256 trailer of each pack's index, so a reader can tell a cached or served index
    /// from the one the publisher wrote.
    public var packIndexChecksums: [PackID: SHA256Digest] = [:]

    /// 32 MiB: some 25,000 versions with their file lists. Parsing costs about ten times the
    /// size, so this is what bounds a hostile manifest's cost on a device.
    public static let maxEncodedSize = 32 << 20

    public var json: JSONValue {
        var models: [String: JSONValue] = [:]
        for (name, m) in self.models {
            var versions: [String: JSONValue] = [:]
            for v in m.versions {
                versions[v.version] = .object([
                    "version": .string(v.version), "id": .string(v.id.hex), "tree": .string(v.tree.hex),
                    "created": .string(v.created), "size": .int(v.size),
                    "path": .string("refs/\(name)/@versions/\(v.version)"),
                    "files": .array(v.files.map { .object(["path": .string($0.path), "sha256": .string($0.sha256), "size": .int($0.size)]) }),
                    "dependencies": .array(v.dependencies.map { .string("\($0.name)@\($0.range)") }),
                    "packs": .array(v.packs.map { .string($0.hex) }),
                ].merging(v.deltas.isEmpty ? [:] : ["deltas": .array(v.deltas.map {
                    .object(["base": .string($0.base.hex), "packs": .array($0.packs.map { .string($0.hex) })])
                })]) { a, _ in a })
            }
            var stages: [String: JSONValue] = [:]
            for (stage, version) in m.stages {
                if let v = m.versions.first(where: { $0.version == version }) {
                    stages[stage] = .object(["version": .string(version), "id": .string(v.id.hex)])
                }
            }
            // The seed article's shape: the version a client should run, its hash, path, dependencies.
            let headVersion = m.stages["production"] ?? Manifest.latest(m.versions)?.version
            var entry: [String: JSONValue] = ["versions": .object(versions), "stages": .object(stages)]
            if !m.rollouts.isEmpty { entry["rollouts"] = .object(m.rollouts.mapValues(\.json)) }
            if let head = m.versions.first(where: { $0.version == headVersion }) {
                entry["version"] = .string(head.version)
                entry["hash"] = .string(head.id.hex)
                entry["path"] = .string("refs/\(name)/@versions/\(head.version)")
                entry["dependencies"] = .array(head.dependencies.map { .string("\($0.name)@\($0.range)") })
            }
            if let latest = Manifest.latest(m.versions) { entry["latest"] = .string(latest.version) }
            models[name] = .object(entry)
        }
        var top: [String: JSONValue] = [
            "format": .int(1), "project": .string(project), "last_updated": .string(lastUpdated),
            "models": .object(models), "packs": .array(packs.map { .string($0.hex) }),
        ]
        if !packIndexChecksums.isEmpty {
            top["pack_index_sha256"] = .object(Dictionary(uniqueKeysWithValues: packIndexChecksums.map { ($0.key.hex, .string($0.value.hex)) }))
        }
        return .object(top)
    }

    static func latest(_ versions: [VersionEntry]) -> VersionEntry? {
        let parsed = versions.compactMap { v in (try? SemVer(v.version)).map { (v, $0) } }
        return (parsed.filter { !$0.1.isPrerelease }.max { $0.1 < $1.1 } ?? parsed.max { $0.1 < $1.1 })?.0
    }

    public func encoded() -> [UInt8] { Array(json.prettyString().utf8) + [0x0a] }

    public static func decode(_ bytes: [UInt8], source: String) throws -> Manifest {
        func bad(_ p: String) -> SLMError { .damaged(path: source, problem: "manifest: \(p)") }
        let v: JSONValue
        do { v = try JSONValue.parse(bytes) } catch { throw bad("\(error)") }
        guard let format = v["format"]?.uint64Value else { throw bad("no format") }
        guard format <= 1 else { throw SLMError.unsupportedFormat(path: source, what: "manifest", found: format, supported: 1) }
        var models: [String: ModelEntry] = [:]
        for (name, m) in v["models"]?.objectValue ?? [:] {
            guard (try? ModelName(name)) != nil else { throw bad("invalid model name \"\(name)\"") }
            var versions: [VersionEntry] = []
            for (vs, e) in m["versions"]?.objectValue ?? [:] {
                guard (try? SemVer(vs)) != nil, let id = e["id"]?.stringValue.flatMap(SHA256Digest.init(hex:)),
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
            versions.sort { (try? SemVer($0.version)) ?? SemVer(major: 0, minor: 0, patch: 0) < (try? SemVer($1.version)) ?? SemVer(major: 0, minor: 0, patch: 0) }
            var stages: [String: String] = [:]
            for (stage, s) in m["stages"]?.objectValue ?? [:] { if let ver = s["version"]?.stringValue { stages[stage] = ver } }
            var rollouts: [String: RolloutRecord] = [:]
            for (stage, r) in m["rollouts"]?.objectValue ?? [:] {
                let record = try RolloutRecord.decode(r, source: "\(source) (rollout \(name)@\(stage))")
                if record.state == .active { rollouts[stage] = record }
            }
            models[name] = ModelEntry(versions: versions, stages: stages, rollouts: rollouts)
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
        return m
    }
}

extension Store {
    /// Stage name -> version id for one model.
    public func stageRefs(of model: ModelName) throws -> [(String, SHA256Digest)] {
        let dir = "\(modelDirectory(model))/@stages"
        guard FileSystem.isDirectory(dir) else { return [] }
        var out: [(String, SHA256Digest)] = []
        for name in try FileSystem.listDirectory(dir) where !name.hasPrefix(".") {
            if let id = try readRef(at: "\(dir)/\(name)") { out.append((name, id)) }
        }
        return out
    }
}
