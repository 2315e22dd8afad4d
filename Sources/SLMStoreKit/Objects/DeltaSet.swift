// A delta set: which packs hold delta records that rebuild the chunks of one version from the
// chunks of another. Stored as deltas/<target id>.<base id>, canonical JSON (Format.md §7.3).

import Foundation

public struct DeltaSet: Equatable, Sendable {
    /// The version whose chunks the deltas rebuild.
    public var target: SHA256Digest
    /// The version whose chunks they are applied to.
    public var base: SHA256Digest
    public var packs: [PackID]

    public static let maxEncodedSize = 1 << 20
    static let maxPacks = 4096

    public init(target: SHA256Digest, base: SHA256Digest, packs: [PackID]) {
        self.target = target
        self.base = base
        self.packs = Array(Set(packs)).sorted()
    }

    /// File name under deltas/: both ids, so a set is found without reading anything.
    public var fileName: String { "\(target.hex).\(base.hex)" }

    public static func parseFileName(_ name: String) -> (target: SHA256Digest, base: SHA256Digest)? {
        let parts = name.split(separator: ".", omittingEmptySubsequences: false)
        guard parts.count == 2, let t = SHA256Digest(hex: String(parts[0])), let b = SHA256Digest(hex: String(parts[1])) else { return nil }
        return (t, b)
    }

    public var json: JSONValue {
        .object(["format": .int(1), "target": .string(target.hex), "base": .string(base.hex),
                 "packs": .array(packs.map { .string($0.hex) })])
    }

    public func encoded() -> [UInt8] { json.canonicalBytes() }

    public static func decode(_ bytes: [UInt8], source: String) throws -> DeltaSet {
        func bad(_ p: String) -> SLMError { .damaged(path: source, problem: "delta set: \(p)") }
        guard bytes.count <= maxEncodedSize else { throw bad("larger than \(maxEncodedSize) bytes") }
        let v: JSONValue
        do { v = try JSONValue.parse(bytes) } catch { throw bad("\(error)") }
        guard let format = v["format"]?.uint64Value else { throw bad("no format") }
        guard format == 1 else { throw SLMError.unsupportedFormat(path: source, what: "delta set", found: format, supported: 1) }
        guard let target = v["target"]?.stringValue.flatMap(SHA256Digest.init(hex:)),
              let base = v["base"]?.stringValue.flatMap(SHA256Digest.init(hex:)) else { throw bad("target or base is not a version id") }
        guard target != base else { throw bad("target and base are the same version") }
        guard let list = v["packs"]?.arrayValue, list.count <= maxPacks else { throw bad("packs missing or more than \(maxPacks)") }
        var packs: [PackID] = []
        for p in list {
            guard let id = p.stringValue.flatMap(PackID.init(hex:)) else { throw bad("pack \(p.canonicalString()) is not a pack id") }
            packs.append(id)
        }
        return DeltaSet(target: target, base: base, packs: packs)
    }
}

extension Store {
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
