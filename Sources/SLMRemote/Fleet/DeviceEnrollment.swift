// The devices a publisher accepted for one remote (`trust/devices-<16 hex>.json` in its store,
// published as the remote's `devices.json` and named by digest in the signed release), and the
// highest report counter seen from each (`trust/fleet-<16 hex>.json`). Only these devices'
// signed reports are counted: anyone who can write reports/ is otherwise a voter.

import SLMFormats
import SLMLocalStore
import Foundation

/// The enrolled devices of one remote: device id -> its Ed25519 public key and when it was
/// enrolled. The publisher's own state; a remote's copy is only published, never read back.
public struct DeviceEnrollment: Sendable, Equatable {
    /// One enrolled device.
    public struct Device: Sendable, Equatable {
        /// The key its reports are signed with.
        public var key: Ed25519PublicKey
        /// When it was enrolled (RFC 3339 UTC).
        public var enrolled: String

        /// A device enrolled with `key` at `enrolled`.
        public init(key: Ed25519PublicKey, enrolled: String) { (self.key, self.enrolled) = (key, enrolled) }
    }

    /// Where the publisher publishes the set beside its release.
    public static let remotePath = "devices.json"
    /// Devices one remote may enroll (the file stays under 16 MiB).
    public static let maxDevices = 100_000
    /// The file is refused above this.
    static let maxEncodedSize = 16 << 20

    /// Device id -> device.
    public var devices: [String: Device] = [:]

    /// An empty set.
    public init() {}

    static func path(store: Store, location: String) -> String {
        "\(store.root)/trust/devices-\(ReleaseGate.locationKey(for: location)).json"
    }

    /// The set this store holds for the remote at `location` (empty when none); a damaged file
    /// is an error, never an empty set (which would count nobody, silently).
    public static func load(store: Store, location: String) throws -> DeviceEnrollment {
        let path = path(store: store, location: location)
        guard FileSystem.exists(path) else { return DeviceEnrollment() }
        return try decode(try FileSystem.readFile(path, limit: maxEncodedSize), source: path)
    }

    /// Parses and bounds the file.
    public static func decode(_ bytes: [UInt8], source: String) throws -> DeviceEnrollment {
        func bad(_ p: String) -> SLMError { .damaged(path: source, problem: "enrolled devices: \(p)") }
        let v: JSONValue
        do { v = try JSONValue.parse(bytes, maxValues: JSONValue.remoteValueLimit(forBytes: bytes.count)) } catch {
            throw bad("not valid JSON").caused(by: error)
        }
        guard v["format"]?.uint64Value == 1, let list = v["devices"]?.objectValue, list.count <= maxDevices else {
            throw bad("needs format 1 and at most \(maxDevices) devices")
        }
        var set = DeviceEnrollment()
        for (id, d) in list {
            guard isValidDeviceID(id), let key = d["key"]?.stringValue.flatMap(Hex.decode).flatMap(Ed25519PublicKey.init(raw:)),
                  let when = d["enrolled"]?.stringValue, Timestamp.parse(when) != nil else {
                throw bad("malformed entry \(String(id.prefix(64)).debugDescription)")
            }
            set.devices[id] = Device(key: key, enrolled: when)
        }
        return set
    }

    /// Canonical JSON + "\n" (the same bytes in the store and at the remote).
    public func encoded() -> [UInt8] {
        JSONValue.object(["format": .int(1), "devices": .object(devices.mapValues {
            .object(["key": .string($0.key.hex), "enrolled": .string($0.enrolled)])
        })]).canonicalBytes() + [0x0a]
    }

    /// Written atomically into the publisher's store.
    public func save(store: Store, location: String) throws {
        try FileSystem.makeDirectories("\(store.root)/trust")
        try FileSystem.writeAtomically(encoded(), to: Self.path(store: store, location: location))
    }

    /// An id a device may be enrolled under: one its report file is named by directly
    /// (1-128 characters of [A-Za-z0-9._-], not starting with "."), so the file an enrolled
    /// device writes is fixed by its id.
    public static func isValidDeviceID(_ id: String) -> Bool {
        PlainName.isPlain(id, maxBytes: 128) && !id.hasPrefix(".")
    }
}

/// The highest counter (and that report's digest) the publisher has seen from each enrolled
/// device on one remote: a report below it is a replay of an older one, one with the same
/// counter and another digest a second statement under one counter. Kept in the publisher's
/// store, raised by every `fleet` run.
public struct ReportCounters: Sendable, Equatable {
    /// Device id -> (counter, payload digest).
    public var seen: [String: (counter: UInt64, digest: SHA256Digest)] = [:]

    /// None seen.
    public init() {}

    public static func == (a: ReportCounters, b: ReportCounters) -> Bool {
        a.seen.count == b.seen.count && a.seen.allSatisfy { k, v in b.seen[k].map { $0.counter == v.counter && $0.digest == v.digest } ?? false }
    }

    static func path(store: Store, location: String) -> String {
        "\(store.root)/trust/fleet-\(ReleaseGate.locationKey(for: location)).json"
    }

    /// This store's floors for the remote at `location`; a damaged file is an error (dropping
    /// the floors would let replays count).
    public static func load(store: Store, location: String) throws -> ReportCounters {
        let path = path(store: store, location: location)
        guard FileSystem.exists(path) else { return ReportCounters() }
        let bytes = try FileSystem.readFile(path, limit: 32 << 20)
        func bad(_ p: String) -> SLMError { .damaged(path: path, problem: "report counters: \(p); remove it only if you accept replayed reports once") }
        let v: JSONValue
        do { v = try JSONValue.parse(bytes) } catch { throw bad("not valid JSON").caused(by: error) }
        guard v["format"]?.uint64Value == 1, let list = v["devices"]?.objectValue else { throw bad("needs format 1 and devices") }
        var c = ReportCounters()
        for (id, d) in list {
            guard let n = d["counter"]?.uint64Value, let digest = d["sha256"]?.stringValue.flatMap(SHA256Digest.init(hex:)) else {
                throw bad("malformed entry \(String(id.prefix(64)).debugDescription)")
            }
            c.seen[id] = (n, digest)
        }
        return c
    }

    /// Written atomically into the publisher's store.
    public func save(store: Store, location: String) throws {
        try FileSystem.makeDirectories("\(store.root)/trust")
        let o = JSONValue.object(["format": .int(1), "devices": .object(seen.mapValues {
            .object(["counter": .int($0.counter), "sha256": .string($0.digest.hex)])
        })])
        try FileSystem.writeAtomically(o.canonicalBytes() + [0x0a], to: Self.path(store: store, location: location))
    }
}
