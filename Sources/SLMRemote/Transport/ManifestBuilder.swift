// Rebuilding a remote's manifest.json from the refs, objects and pack indexes it holds, read
// through its backend, so any publisher (after a conflict too) arrives at the same listing.

import SLMFormats
import SLMLocalStore
import Foundation

/// Builds a manifest from what a store directory holds, read through its backend: every
/// version ref with its objects, every stage, and which packs hold each version's chunks.
/// (A class: the chunk-to-pack map is built once, on first need, and shared by the models.)
final class ManifestBuilder {
    /// Entries of `previous` (the manifest being replaced) are reused for versions it lists:
    /// version refs are created once and never change, so only new versions cost reads. Stage
    /// refs, which move, are always read. A model whose refs did not change and that is not in
    /// `refresh` keeps its entry as `previous` lists it, without its entries file being read.
    /// Rollout records are read for the models in `refresh` (those being pushed) and for models
    /// the previous manifest does not know; the others keep the rollouts it lists.
    /// `packs`: the committed packs with their index checksums. Which packs hold a new version's
    /// chunks comes from `versionPacks` (a push knows it for what it pushed); only for another
    /// new version (a concurrent publisher's, or every version when there is no manifest to
    /// build on) are all pack indexes read, through `index`.
    static func build(from backend: any StoreBackend, packs: [PackID: SHA256Digest], index: @escaping (PackID) throws -> PackIndex,
                      versionPacks: [SHA256Digest: [PackID]] = [:], previous: Manifest? = nil,
                      refresh: Set<String> = []) throws -> Manifest {
        let builder = try ManifestBuilder(backend: backend, packs: packs, index: index, versionPacks: versionPacks)
        var previous = previous
        var models: [String: Manifest.ModelEntry] = [:]
        for (model, refs) in builder.versionRefs {
            var stageIDs: [String: SHA256Digest] = [:]
            for (stage, path) in builder.stageRefs[model] ?? [] { stageIDs[stage] = try builder.ref(path) }
            // A model nobody pushes now, whose version and stage refs are the ones the previous
            // manifest lists, keeps its entry (and entries file) without being read again.
            if let known = previous?.models[model], !known.versionsLoaded, !refresh.contains(model),
               known.versionCount == refs.count, known.versionsDigest == Manifest.versionsDigest(refs.map(\.0.description)),
               known.stageIDs == stageIDs {
                models[model] = known
                continue
            }
            if previous?.models[model]?.versionsLoaded == false {
                // One that cannot be read is rebuilt from the refs, as if it were not listed.
                do { try previous!.loadVersions(of: [model], location: backend.location, read: backend.read) } catch {
                    previous!.models[model] = nil
                }
            }
            let entries = try builder.versionEntries(refs, known: previous?.models[model]?.versions ?? [])
            var stages: [String: String] = [:]
            for (stage, id) in stageIDs {
                if let e = entries.first(where: { $0.id == id }) { stages[stage] = e.version }
            }
            let rollouts: [String: RolloutRecord]
            if let known = previous?.models[model], !refresh.contains(model) {
                rollouts = known.rollouts
            } else {
                rollouts = try builder.rollouts(of: model, listed: entries)
            }
            models[model] = Manifest.ModelEntry(versions: entries, stages: stages, rollouts: rollouts)
        }
        let location = backend.location
        let project = location.contains("://") ? (URL(string: location)?.lastPathComponent ?? location)
                                               : FileSystem.basename(FileSystem.absolutePath(location))
        var manifest = Manifest(project: project, lastUpdated: Timestamp.now(), models: models, packs: packs.keys.sorted())
        manifest.packIndexChecksums = packs
        return manifest
    }

    private let backend: any StoreBackend
    private let packs: [PackID: SHA256Digest]
    private let index: (PackID) throws -> PackIndex
    private let versionPacks: [SHA256Digest: [PackID]]
    /// Version refs by model (version, path), stage refs by model (stage, path).
    private(set) var versionRefs: [String: [(SemVer, String)]] = [:]
    private(set) var stageRefs: [String: [(String, String)]] = [:]
    /// Delta sets by target version id (the base ids), from their file names.
    private var deltaNames: [SHA256Digest: [SHA256Digest]] = [:]
    private var chunkPacks: ChunkIndex? = nil

    /// Lists the remote's refs and delta sets.
    private init(backend: any StoreBackend, packs: [PackID: SHA256Digest], index: @escaping (PackID) throws -> PackIndex,
                 versionPacks: [SHA256Digest: [PackID]]) throws {
        (self.backend, self.packs, self.index, self.versionPacks) = (backend, packs, index, versionPacks)
        for path in try backend.list("refs", recursive: true) {
            let rel = String(path.dropFirst("refs/".count))
            if let r = rel.range(of: "/@versions/") {
                let model = String(rel[..<r.lowerBound]), entry = String(rel[r.upperBound...])
                // Names this release cannot parse are not listed, but nothing is deleted for them.
                guard ModelName(parsing: model) != nil, let v = SemVer(parsing: entry), !entry.contains("/") else { continue }
                versionRefs[model, default: []].append((v, path))
            } else if let r = rel.range(of: "/@stages/") {
                let model = String(rel[..<r.lowerBound]), stage = String(rel[r.upperBound...])
                guard !stage.contains("/") else { continue }
                stageRefs[model, default: []].append((stage, path))
            }
        }
        for path in try backend.list("deltas", recursive: false) {
            if let (t, b) = DeltaSet.parseFileName(FileSystem.basename(path)) { deltaNames[t, default: []].append(b) }
        }
    }

    func ref(_ path: String) throws -> SHA256Digest {
        guard let id = try backend.readRef(path) else {
            throw SLMError.remote(url: "\(backend.location)/\(path)", problem: "ref disappeared while the manifest was built")
        }
        return id
    }

    private func object(_ id: SHA256Digest, limit: Int) throws -> [UInt8] {
        let path = RemoteLayout.objectPath(id)
        guard let bytes = try backend.read(path, limit: limit), SHA256Hasher.hash(bytes) == id else {
            throw SLMError.damaged(path: "\(backend.location)/\(path)", problem: "object \(id.hex) is missing or does not hash to its id")
        }
        return bytes
    }

    /// The packs holding full records of `tree`'s chunks, from every pack index (read once).
    private func packsHolding(_ tree: TreeObject) throws -> [PackID] {
        if chunkPacks == nil {
            var all = ChunkIndex()
            for id in packs.keys.sorted() { all.add(pack: id, index: try index(id)) }
            chunkPacks = all
        }
        var out = Set<PackID>()
        for f in tree.files { try f.chunks.forEach { if let loc = chunkPacks!.fullLocation(of: $0.id) { out.insert(loc.pack) } } }
        return out.sorted()
    }

    /// Delta sets are created once and never changed, so a set `known` lists is not read again.
    private func deltas(for id: SHA256Digest, known: [Manifest.DeltaEntry]) throws -> [Manifest.DeltaEntry] {
        var out: [Manifest.DeltaEntry] = []
        for base in (deltaNames[id] ?? []).sorted(by: { $0.hex < $1.hex }) {
            if let k = known.first(where: { $0.base == base }) { out.append(k); continue }
            let path = RemoteLayout.deltaSetPath(target: id, base: base)
            guard let bytes = try backend.read(path, limit: DeltaSet.maxEncodedSize) else { continue }
            let set = try DeltaSet.decode(bytes, source: "\(backend.location)/\(path)")
            // A set whose packs are not all committed (a push still uploading, or killed) is not listed.
            guard set.target == id, set.base == base, set.packs.allSatisfy({ packs[$0] != nil }) else { continue }
            out.append(.init(base: base, packs: set.packs))
        }
        return out
    }

    /// One model's version entries in version order: those `known` lists reused, the others
    /// read from their objects.
    func versionEntries(_ refs: [(SemVer, String)], known: [Manifest.VersionEntry]) throws -> [Manifest.VersionEntry] {
        var entries: [Manifest.VersionEntry] = []
        for (v, path) in refs.sorted(by: { $0.0 < $1.0 }) {
            if var k = known.first(where: { $0.version == v.description }) {
                k.deltas = try deltas(for: k.id, known: k.deltas)
                entries.append(k)
                continue
            }
            let id = try ref(path)
            let obj = try VersionObject.decode(try object(id, limit: VersionObject.maxEncodedSize), source: RemoteLayout.objectPath(id))
            let tree = try TreeObject.decode(try object(obj.tree, limit: TreeObject.maxEncodedSize), source: RemoteLayout.objectPath(obj.tree))
            let holding = try versionPacks[id].map { $0.filter { packs[$0] != nil }.sorted() } ?? packsHolding(tree)
            entries.append(.init(version: v.description, id: id, tree: obj.tree, created: obj.created, size: tree.totalSize,
                                 files: tree.files.map { ($0.path, $0.sha256.hex, $0.size) },
                                 dependencies: obj.dependencies, packs: holding, deltas: try deltas(for: id, known: [])))
        }
        return entries
    }

    /// The active rollout records of `model`, read from the remote; only a rollout of a version
    /// the manifest lists (`listed`) can be followed.
    func rollouts(of model: String, listed: [Manifest.VersionEntry]) throws -> [String: RolloutRecord] {
        var rollouts: [String: RolloutRecord] = [:]
        for stage in ["staging", "production", "archived"] {
            let path = RemoteLayout.rolloutPath(model, stage: stage)
            guard let bytes = try backend.read(path, limit: 1 << 20) else { continue }
            let value: JSONValue
            do { value = try JSONValue.parse(bytes) } catch {
                throw SLMError.damaged(path: "\(backend.location)/\(path)", problem: "rollout record").caused(by: error)
            }
            let record = try RolloutRecord.decode(value, source: "\(backend.location)/\(path)")
            if record.state == .active, listed.contains(where: { $0.id == record.id }) { rollouts[stage] = record }
        }
        return rollouts
    }
}
