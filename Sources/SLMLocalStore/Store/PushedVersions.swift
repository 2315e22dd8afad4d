// Which versions this store has pushed where, so that `add` can say, before it writes anything,
// that a version number a remote holds with another id is being reused (the remote would refuse
// the new one). A cache (cache/pushed/): losing it loses only that warning.

import SLMFormats
import Foundation

/// A version a remote received from this store.
public struct PushedVersion: Sendable, Equatable {
    /// The remote, credentials removed.
    public var remote: String
    /// The version id it holds.
    public var id: SHA256Digest
}

extension Store {
    var pushedVersionsRoot: String { root + "/cache/pushed" }

    /// Notes that `location` holds each of `versions` (NAME@VERSION, id). Best effort: a cache.
    public func recordPushed(_ versions: [(label: String, id: SHA256Digest)], to location: String) {
        guard !versions.isEmpty else { return }
        let path = "\(pushedVersionsRoot)/\(SHA256Hasher.hash(Array(location.utf8)).hex.prefix(16))"
        var lines = pushedLines(path).filter { line in !versions.contains { line.hasSuffix(" " + $0.label) } }
        if lines.isEmpty { lines = ["remote " + location] }
        lines += versions.map { "\($0.id.hex) \($0.label)" }
        try? FileSystem.makeDirectories(pushedVersionsRoot)
        _ = FileSystem.writeCacheFile(Array((lines.joined(separator: "\n") + "\n").utf8), to: path)
    }

    /// The remotes this store pushed `label` (NAME@VERSION) to, with the id each holds.
    public func pushedElsewhere(_ label: String) -> [PushedVersion] {
        guard let names = try? FileSystem.listDirectory(pushedVersionsRoot) else { return [] }
        var found: [PushedVersion] = []
        for name in names.sorted() {
            let lines = pushedLines("\(pushedVersionsRoot)/\(name)")
            guard let first = lines.first, first.hasPrefix("remote ") else { continue }
            for line in lines.dropFirst() where line.hasSuffix(" " + label) {
                if let id = SHA256Digest(hex: String(line.prefix(64))) { found.append(PushedVersion(remote: String(first.dropFirst(7)), id: id)) }
            }
        }
        return found
    }

    private func pushedLines(_ path: String) -> [String] {
        guard let bytes = FileSystem.readCacheFile(path, limit: 16 << 20) else { return [] }
        return String(decoding: bytes, as: UTF8.self).split(separator: "\n").map(String.init)
    }
}
