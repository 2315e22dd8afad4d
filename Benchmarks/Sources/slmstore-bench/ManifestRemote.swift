// A published directory with a registry of many models and versions (refs, one stage each,
// thousands of small packs, manifest.json in format 2 or, as earlier releases wrote it, format
// 1), so push, pull and sync can be timed against a remote that lists tens of thousands of
// versions and reads of its pack indexes show.

import Foundation
import SLMStoreKit

private func put(_ bytes: [UInt8], _ path: String) throws {
    let dir = (path as NSString).deletingLastPathComponent
    if !FileManager.default.fileExists(atPath: dir) { try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true) }
    guard FileManager.default.createFile(atPath: path, contents: Data(bytes)) else { throw SLMError.failed("cannot write \(path)") }
}

/// Versions of the listed models exist as refs and manifest entries only: a push carries them
/// over and a pull never reads them, which is what is measured.
/// `packs` packs (one 16-byte chunk record each, with a valid index) are listed too, each
/// version naming one, so a reader that read every index would show it.
func makeManifestRemote(at root: String, models: Int, versions: Int, format: Int, packs: Int) throws -> [String: Any] {
    let store = try Store.create(at: root)
    var entries: [String: Manifest.ModelEntry] = [:]
    var packIDs: [PackID] = []
    var checksums: [PackID: SHA256Digest] = [:]
    for i in 0..<max(1, packs) {
        var payload = [UInt8](repeating: 0x5a, count: 16)
        for k in 0..<8 { payload[k] = UInt8(truncatingIfNeeded: UInt64(i) >> (8 * UInt64(k))) }
        let id = ChunkID(of: payload)
        let pack: [UInt8] = Array("SLMPACK\0".utf8) + [1, 0, 0, 0, 0, 0, 0, 0] + id.canonicalBytes + [0, 0, 0, 0] + [16, 0, 0, 0, 16, 0, 0, 0] + payload
        let packID = PackID.random()
        let index = PackIndex(packSize: UInt64(pack.count), entries: [PackIndexEntry(id: id, offset: 16, storedLength: 16, rawLength: 16, codec: .raw)]).encoded()
        try put(pack, store.packPath(packID))
        try put(index, store.packIndexPath(packID))
        packIDs.append(packID)
        checksums[packID] = SHA256Digest(bytes: Array(index.suffix(32)))!
    }
    var n = 0
    for m in 0..<models {
        let name = String(format: "fleet/model-%04d", m)
        var list: [Manifest.VersionEntry] = []
        for v in 0..<versions {
            let version = "1.\(v / 100).\(v % 100)"
            let id = SHA256Hasher.hash(Array("\(name)@\(version)".utf8))
            try put(Array((id.hex + "\n").utf8), "\(root)/refs/\(name)/@versions/\(version)")
            list.append(Manifest.VersionEntry(
                version: version, id: id, tree: SHA256Hasher.hash(Array("tree \(name)@\(version)".utf8)),
                created: "2026-11-30T00:00:00Z", size: 90_000_000,
                files: [("model.safetensors", SHA256Hasher.hash(Array("w \(name)@\(version)".utf8)).hex, 90_000_000),
                        ("config.json", SHA256Hasher.hash(Array("c \(name)@\(version)".utf8)).hex, 612)],
                dependencies: [], packs: [packIDs[n % packIDs.count]]))
            n += 1
        }
        try put(Array((list.last!.id.hex + "\n").utf8), "\(root)/refs/\(name)/@stages/production")
        entries[name] = Manifest.ModelEntry(versions: list, stages: ["production": list.last!.version])
    }
    var manifest = Manifest(project: "fleet", lastUpdated: "2026-11-30T00:00:00Z", models: entries, packs: packIDs.sorted())
    manifest.packIndexChecksums = checksums
    let (top, files) = manifest.encodedFiles()
    var largestEntries = 0
    if format == 2 {
        for (path, bytes) in files { try put(bytes, "\(root)/\(path)"); largestEntries = max(largestEntries, bytes.count) }
        try put(top, "\(root)/manifest.json")
        return ["manifest_bytes": top.count, "entries_files": files.count, "largest_entries_bytes": largestEntries, "packs": packIDs.count]
    }
    // Format 1: each model's versions inline, one file.
    let byPath = [String: [UInt8]](uniqueKeysWithValues: files.map { ($0.path, $0.bytes) })
    guard case var .object(o) = try JSONValue.parse(top), case var .object(ms) = o["models"]! else { throw SLMError.failed("manifest") }
    for (name, e) in ms {
        guard case var .object(entry) = e, let path = entry["entries"]?["path"]?.stringValue else { continue }
        entry["versions"] = try JSONValue.parse(byPath[path]!)["versions"]
        entry["entries"] = nil
        for key in ["version_count", "versions_sha256", "latest_size", "last_created"] { entry[key] = nil }
        ms[name] = JSONValue.object(entry)
    }
    o["models"] = JSONValue.object(ms)
    o["format"] = JSONValue.int(1)
    let bytes = Array(JSONValue.object(o).prettyString().utf8) + [0x0a]
    try put(bytes, "\(root)/manifest.json")
    return ["manifest_bytes": bytes.count, "entries_files": 0, "largest_entries_bytes": 0, "packs": packIDs.count]
}
