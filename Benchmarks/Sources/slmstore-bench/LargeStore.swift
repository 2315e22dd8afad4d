// A large store built synthetically (terabytes cannot be written here): N real chunk records of
// 16 bytes each in packs of a realistic entry count, valid pack indexes, versions whose trees
// cover every chunk, and a registry of many small models. Everything verifies; only the chunk
// sizes are unrealistic, which is what lets the chunk count reach tens of millions.

import Foundation
import SLMStoreKit

struct LargeStoreSpec {
    var chunks: Int
    var perPack = 4096
    var models = 1000
    var versionsPerModel = 50
    /// Chunks per file of the versions that keep every chunk live (a tree of about 20 MiB).
    var chunksPerBulkFile = 1 << 20
}

/// Writes straight to files without fsync: this is test data, rebuilt whenever it is lost.
private func put(_ bytes: [UInt8], _ path: String) throws {
    let dir = (path as NSString).deletingLastPathComponent
    if !FileManager.default.fileExists(atPath: dir) { try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true) }
    guard FileManager.default.createFile(atPath: path, contents: Data(bytes)) else { throw SLMError.failed("cannot write \(path)") }
}

private func payload(_ i: Int) -> [UInt8] {
    var w = [UInt8](repeating: 0x5a, count: 16)
    for k in 0..<8 { w[k] = UInt8(truncatingIfNeeded: UInt64(i) >> (8 * UInt64(k))) }
    return w
}

func makeLargeStore(at root: String, _ spec: LargeStoreSpec) throws -> [String: Any] {
    let started = Timestamp.monotonicSeconds()
    let store = try Store.create(at: root)
    var ids: [ChunkID] = []
    ids.reserveCapacity(spec.chunks)
    var packCount = 0
    var first = 0
    while first < spec.chunks {
        let n = min(spec.perPack, spec.chunks - first)
        var pack: [UInt8] = Array("SLMPACK\0".utf8) + [1, 0, 0, 0, 0, 0, 0, 0]
        pack.reserveCapacity(16 + n * 44)
        var entries: [PackIndexEntry] = []
        entries.reserveCapacity(n)
        for i in first..<(first + n) {
            let p = payload(i)
            let id = ChunkID(of: p)
            ids.append(id)
            entries.append(PackIndexEntry(id: id, offset: UInt64(pack.count), storedLength: 16, rawLength: 16, codec: .raw))
            pack += id.canonicalBytes + [0, 0, 0, 0] + [16, 0, 0, 0, 16, 0, 0, 0] + p
        }
        let packID = PackID.random()
        try put(pack, store.packPath(packID))
        try put(PackIndex(packSize: UInt64(pack.count), entries: entries).encoded(), store.packIndexPath(packID))
        packCount += 1
        first += n
    }

    func addVersion(_ name: String, _ version: String, files: [(String, Range<Int>)], parent: SHA256Digest?) throws -> SHA256Digest {
        var entries: [FileEntry] = []
        for (path, range) in files {
            let h = SHA256Hasher()
            for i in range { h.update(payload(i)) }
            entries.append(FileEntry(path: path, size: UInt64(range.count * 16), sha256: h.finish(),
                                     chunks: range.map { ChunkRef(id: ids[$0], rawLength: 16) }, safetensors: nil))
        }
        let tree = try TreeObject(files: entries).encoded()
        let treeID = SHA256Hasher.hash(tree)
        try put(tree, store.objectPath(treeID))
        let v = VersionObject(name: name, version: try SemVer(version), tree: treeID, parent: parent, created: "2026-11-29T00:00:00Z",
                              addedBy: "bench@large-store", tool: "slmstore-bench", card: nil, dependencies: [])
        let bytes = v.encoded()
        let id = SHA256Hasher.hash(bytes)
        try put(bytes, store.objectPath(id))
        try put(Array((id.hex + "\n").utf8), store.versionRefPath(try ModelName(name), try SemVer(version)))
        return id
    }

    // Versions that keep every chunk live, so gc and verify work on all of them.
    var bulk = 0
    var at = 0
    while at < spec.chunks {
        let end = min(spec.chunks, at + spec.chunksPerBulkFile)
        _ = try addVersion("bulk/all", "1.0.\(bulk)", files: [("part.bin", at..<end)], parent: nil)
        bulk += 1
        at = end
    }
    // The registry: many models, each a chain of small versions over a few chunks.
    var registryVersions = 0
    if spec.chunks > 0 {
        for m in 0..<spec.models {
            var parent: SHA256Digest? = nil
            for v in 0..<spec.versionsPerModel {
                let start = (m * 7919 + v * 4) % max(1, spec.chunks - 4)
                parent = try addVersion("fleet/model-\(m)", "1.\(v).0", files: [("weights.bin", start..<min(spec.chunks, start + 4))], parent: parent)
                registryVersions += 1
            }
        }
    }
    return ["chunks": spec.chunks, "packs": packCount, "bulk_versions": bulk, "registry_versions": registryVersions,
            "seconds": Timestamp.monotonicSeconds() - started]
}
