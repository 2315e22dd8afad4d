// `push`: publish local versions into a store directory (a path remote). Chunks the destination
// lacks are verified and copied into a new pack there; objects follow; refs and manifest.json
// move last, under the destination's refs lock, so concurrent pushes never lose each other's refs.

import Foundation

public struct PushResult: Sendable {
    public var versionsPushed: [String]
    public var versionsPresent: [String]
    public var chunksCopied: Int
    public var bytesCopied: UInt64
    public var stagesPushed: [String]
    public var seconds: Double
}

extension Store {
    /// Pushes `refs` (all versions when empty) and, for the models involved, their stage refs
    /// and registry records.
    public func push(to destinationPath: String, refs requested: [VersionRef],
                     progress: (@Sendable (UInt64, UInt64) -> Void)? = nil) throws -> PushResult {
        let started = Timestamp.monotonicSeconds()
        let destination: Store
        do {
            destination = try Store.create(at: destinationPath, config: config)
        } catch SLMError.input(_, let problem) where problem.contains("not a slmstore store") {
            throw SLMError.input(path: destinationPath, problem: "not a slmstore store (no config) and not empty; refusing to push into it")
        }

        // What to push: the requested versions (or all) plus what they depend on.
        var selected: [ResolvedVersion] = []
        if requested.isEmpty {
            for m in try models() { for (v, id) in try versions(of: m) { selected.append(ResolvedVersion(name: m, version: v, id: id, object: try readVersion(id))) } }
        } else {
            var queue = try requested.map { try resolve($0) }
            var seen = Set<SHA256Digest>()
            while !queue.isEmpty {
                let r = queue.removeFirst()
                guard seen.insert(r.id).inserted else { continue }
                selected.append(r)
                for d in r.object.dependencies {
                    if let dep = try? resolveSelector(name: try ModelName(d.name), selector: d.range).resolved { queue.append(dep) }
                }
            }
        }

        let dataLock = try destination.dataLock(.shared)
        defer { dataLock.unlock() }
        destination.removeAbandonedWorkingDirectories()
        let remoteIndex = try destination.loadChunkIndex()
        let localIndex = try loadChunkIndex()
        var trees: [SHA256Digest: TreeObject] = [:]
        var missing: [ChunkID] = []
        var missingSet = Set<ChunkID>()
        var present: [String] = []
        var toPush: [ResolvedVersion] = []
        for r in selected {
            if let existing = try destination.readRef(at: destination.versionRefPath(r.name, r.version)) {
                guard existing == r.id else {
                    throw SLMError.conflict("\(destinationPath) already has \(r.name)@\(r.version) as a different version (\(existing.hex.prefix(12)) vs local \(r.id.hex.prefix(12))); versions are immutable")
                }
                present.append("\(r.name)@\(r.version)")
                continue
            }
            toPush.append(r)
            let tree = try readTree(r.object.tree)
            trees[r.object.tree] = tree
            for f in tree.files {
                for c in f.chunks where !remoteIndex.contains(c.id) && missingSet.insert(c.id).inserted { missing.append(c.id) }
            }
        }

        // Copy missing chunks, verified, into new packs at the destination.
        let work = try destination.makeWorkingDirectory("push")
        defer { work.remove() }
        var writers: [PackWriter] = []
        var writer: PackWriter? = nil
        var copied: UInt64 = 0
        let total = missing.reduce(UInt64(0)) { acc, id in acc + UInt64(localIndex.location(of: id)?.storedLength ?? 0) }
        for id in missing {
            guard let loc = localIndex.location(of: id) else {
                throw SLMError.corrupt(path: root, problem: "chunk \(id.hex) is missing from the local store; run `slmstore verify`")
            }
            let record = try readVerifiedRecord(id, at: loc)
            if writer == nil { writer = try PackWriter(directory: work.path) }
            try writer!.append(id: id, rawLength: loc.rawLength,
                               encoded: EncodedChunk(codec: loc.codec, payload: Array(record[PackFormat.recordHeaderSize...])))
            copied += UInt64(loc.storedLength)
            if writer!.size >= 256 << 20 { _ = try writer!.finish(); writers.append(writer!); writer = nil }
            progress?(copied, total)
        }
        if let w = writer { _ = try w.finish(); writers.append(w) }
        try destination.commitPacks(writers)
        for r in toPush {
            try destination.writeObject(trees[r.object.tree]!.encoded())
            try destination.writeObject(r.object.encoded())
        }
        CrashPoint.hit("push-before-refs")

        // Refs, stages, registry records and the manifest, last and under the destination's lock.
        var stagesPushed: [String] = []
        do {
            let refs = try destination.refsLock()
            defer { refs.unlock() }
            for r in toPush {
                let path = destination.versionRefPath(r.name, r.version)
                if let existing = try destination.readRef(at: path), existing != r.id {
                    throw SLMError.conflict("\(destinationPath) received a different \(r.name)@\(r.version) meanwhile")
                }
                try destination.writeRef(at: path, id: r.id)
            }
            let models = Set(selected.map(\.name))
            for m in models.sorted() {
                for (stage, id) in try stageRefs(of: m) where try destination.readRef(at: destination.versionRefPath(m, try readVersion(id).version)) == id {
                    let path = destination.stageRefPath(m, stage)
                    if try destination.readRef(at: path) != id {
                        try destination.writeRef(at: path, id: id)
                        stagesPushed.append("\(m)@\(stage)")
                    }
                }
                try copyRegistryRecords(of: m, to: destination)
            }
            try destination.writeManifest()
        }
        return PushResult(versionsPushed: toPush.map { "\($0.name)@\($0.version)" }, versionsPresent: present,
                          chunksCopied: missing.count, bytesCopied: copied, stagesPushed: stagesPushed,
                          seconds: Timestamp.monotonicSeconds() - started)
    }

    /// Registry records (history, metrics, policy) travel with the model; a destination copy
    /// is replaced only by a longer local one, since the logs are append-only.
    func copyRegistryRecords(of model: ModelName, to destination: Store) throws {
        let src = "\(registryDirectory)/\(model.value)"
        guard FileSystem.isDirectory(src) else { return }
        func copy(_ rel: String) throws {
            let from = "\(src)/\(rel)", to = "\(destination.registryDirectory)/\(model.value)/\(rel)"
            if FileSystem.isDirectory(from) {
                for name in try FileSystem.listDirectory(from) where !name.hasPrefix(".") { try copy(rel.isEmpty ? name : "\(rel)/\(name)") }
                return
            }
            let bytes = try FileSystem.readFile(from, limit: 64 << 20)
            let existing = (try? FileSystem.readFile(to, limit: 64 << 20)) ?? []
            guard bytes != existing, bytes.count >= existing.count else { return }
            try FileSystem.makeDirectories(FileSystem.dirname(to))
            try FileSystem.writeAtomically(bytes, to: to)
        }
        try copy("")
    }
}
