// A delta set: which packs hold delta records that rebuild the chunks of one version from the
// chunks of another. Stored as deltas/<target id>.<base id>, canonical JSON (Format.md §7.3).

import Foundation

/// Which packs hold the delta records that rebuild one version's chunks from another's (Format.md
/// §7.3).
public struct DeltaSet: Equatable, Sendable {
    /// The version whose chunks the deltas rebuild.
    public var target: SHA256Digest
    /// The version whose chunks they are applied to.
    public var base: SHA256Digest
    /// The packs holding the delta records, sorted and unique.
    public var packs: [PackID]

    /// The largest delta set file a reader accepts.
    public static let maxEncodedSize = 1 << 20
    /// Packs one delta set may list.
    package static let maxPacks = 4096

    /// A set for `target` against `base`; `packs` are deduplicated and sorted.
    public init(target: SHA256Digest, base: SHA256Digest, packs: [PackID]) {
        self.target = target
        self.base = base
        self.packs = Array(Set(packs)).sorted()
    }

    /// File name under deltas/: both ids, so a set is found without reading anything.
    public var fileName: String { "\(target.hex).\(base.hex)" }

    /// The two ids in a file name under deltas/, or nil when the name is not `<target>.<base>`.
    public static func parseFileName(_ name: String) -> (target: SHA256Digest, base: SHA256Digest)? {
        let parts = name.split(separator: ".", omittingEmptySubsequences: false)
        guard parts.count == 2, let t = SHA256Digest(hex: String(parts[0])), let b = SHA256Digest(hex: String(parts[1])) else { return nil }
        return (t, b)
    }

    /// The set as the JSON value Format.md §7.3 specifies.
    public var json: JSONValue {
        .object(["format": .int(1), "target": .string(target.hex), "base": .string(base.hex),
                 "packs": .array(packs.map { .string($0.hex) })])
    }

    /// The canonical JSON bytes written to deltas/<target>.<base>.
    public func encoded() -> [UInt8] { json.canonicalBytes() }

    /// Decodes and checks a delta set file; `source` names it in errors.
    public static func decode(_ bytes: [UInt8], source: String) throws -> DeltaSet {
        func bad(_ p: String) -> SLMError { .damaged(path: source, problem: "delta set: \(p)") }
        guard bytes.count <= maxEncodedSize else { throw bad("larger than \(maxEncodedSize) bytes") }
        let v: JSONValue
        do { v = try JSONValue.parse(bytes) } catch { throw bad("not valid JSON").caused(by: error) }
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
