// A store's delta sets (deltas/): listing them, finding one, and reading the delta records they
// hold; the DeltaSet file format itself is in Objects/DeltaSet.swift.

import SLMFormats

extension Store {
    /// deltas/: the delta set files.
    public var deltasDirectory: String { root + "/deltas" }

    /// Every delta set in the store; a file that does not parse is reported by `verify`, skipped here.
    public func deltaSets() throws -> [DeltaSet] {
        guard FileSystem.isDirectory(deltasDirectory) else { return [] }
        var out: [DeltaSet] = []
        for name in try FileSystem.listDirectory(deltasDirectory) where DeltaSet.parseFileName(name) != nil {
            let path = "\(deltasDirectory)/\(name)"
            guard let set = try? DeltaSet.decode(try FileSystem.readFile(path, limit: DeltaSet.maxEncodedSize), source: path),
                  set.fileName == name else { continue }
            out.append(set)
        }
        return out.sorted { $0.fileName < $1.fileName }
    }

    /// The delta set for `target` against `base`, if the store has one.
    public func deltaSet(target: SHA256Digest, base: SHA256Digest) throws -> DeltaSet? {
        try deltaSets().first { $0.target == target && $0.base == base }
    }

    /// Every delta record that rebuilds a chunk of `target`, with the base version of its set and
    /// its parsed header (base chunk ids and offset), for `show`.
    public func deltaRecords(target: SHA256Digest) throws -> [ChunkID: [(base: SHA256Digest, location: ChunkLocation, header: DeltaHeader)]] {
        var out: [ChunkID: [(base: SHA256Digest, location: ChunkLocation, header: DeltaHeader)]] = [:]
        for set in try deltaSets() where set.target == target {
            for pack in set.packs where FileSystem.exists(packIndexPath(pack)) {
                for e in try readPackIndex(pack).entries where e.codec == .delta {
                    let loc = e.location(in: pack)
                    let h = try deltaHeader(at: loc)
                    out[e.id, default: []].append((set.base, loc, h))
                }
            }
        }
        return out
    }

    /// Written after its packs are committed; replaced atomically (a set only ever grows packs).
    func writeDeltaSet(_ set: DeltaSet) throws {
        try FileSystem.makeDirectories(deltasDirectory)
        try FileSystem.writeAtomically(set.encoded(), to: "\(deltasDirectory)/\(set.fileName)")
    }
}
