// The device side of signed releases: which keys it trusts, the last release it accepted from a
// remote (kept in the store and under the install directory, so neither a restart nor a lost
// store rolls it back), and the checks a new release must pass: a trusted signature, a serial no
// lower than the last, not expired; and never unsigned again once signed was seen.

import SLMFormats
import SLMLocalStore
import Foundation
#if canImport(Glibc)
import Glibc
#endif

/// What a device remembers of the last release it accepted from one remote.
public struct TrustRecord: Sendable, Equatable {
    /// The serial accepted last.
    public var serial: UInt64
    /// The SHA-256 of that release's payload.
    public var payload: SHA256Digest
    /// When that release expires (Unix seconds).
    public var expires: Int64
    /// Keys that may sign the next release (after rotation, not necessarily those given by --trust).
    public var keys: [Ed25519PublicKey]

    /// The remote id pinned at first trust (from the first format 2 release accepted).
    public var remote: String? = nil

    var json: JSONValue {
        var o: [String: JSONValue] = ["format": .int(1), "serial": .int(serial), "payload_sha256": .string(payload.hex),
                                      "expires": .number(String(expires)), "keys": .array(keys.map { .string($0.hex) })]
        if let remote { o["remote"] = .string(remote) }
        return .object(o)
    }

    /// Nil when the file does not exist. A record that exists but cannot be read is an error:
    /// taking it for absent would drop the device's replay floor and pinned keys.
    static func load(_ path: String) throws -> TrustRecord? {
        guard FileSystem.exists(path) else { return nil }
        func damaged(_ p: String) -> SLMError {
            .damaged(path: path, problem: "release trust record: \(p); restore it from the other copy or re-provision the device")
        }
        let bytes = try FileSystem.readFile(path, limit: 1 << 20)
        let v: JSONValue
        do { v = try JSONValue.parse(bytes) } catch { throw damaged("not valid JSON").caused(by: error) }
        guard let serial = v["serial"]?.uint64Value, serial <= SignedRelease.maxSerial,
              let payload = v["payload_sha256"]?.stringValue.flatMap(SHA256Digest.init(hex:)),
              let expires = v["expires"]?.int64Value, let list = v["keys"]?.arrayValue, !list.isEmpty, list.count <= 16 else {
            throw damaged("needs serial, payload_sha256, expires and 1 to 16 keys")
        }
        let keys = try list.map {
            guard let k = $0.stringValue.flatMap(Hex.decode).flatMap(Ed25519PublicKey.init(raw:)) else { throw damaged("malformed key") }
            return k
        }
        var r = TrustRecord(serial: serial, payload: payload, expires: expires, keys: keys)
        if let remote = v["remote"] {
            guard let id = remote.stringValue, SignedRelease.isValidRemoteID(id) else { throw damaged("malformed remote id") }
            r.remote = id
        }
        return r
    }
}

/// A device's check of a remote's signed releases: trusted keys, the record of the last release it
/// accepted, and the rules (signature, serial, expiry, remote id, key rotation).
public struct ReleaseGate: Sendable {
    /// Keys given by --trust / SLMSTORE_TRUST: the starting point before any release was accepted.
    public var trusted: [Ed25519PublicKey]
    /// Where the record for this remote is kept; the highest serial among them counts.
    public var recordPaths: [String]
    /// The remote, for messages.
    public var location: String
    /// Unix seconds; a parameter so tests can move the clock.
    public var now: @Sendable () -> Int64 = { Int64(time(nil)) }

    /// A gate trusting `trusted` for the remote at `location`, keeping its record at `recordPaths`.
    public init(trusted: [Ed25519PublicKey], location: String, recordPaths: [String]) {
        self.trusted = trusted
        self.location = location
        self.recordPaths = recordPaths
    }

    /// A file name for one remote's record, without the remote's credentials or path in it.
    public static func recordName(for location: String) -> String {
        "release-" + locationKey(for: location) + ".json"
    }

    /// 16 hex digits naming one remote in a store's records (trust/), without its credentials or path.
    public static func locationKey(for location: String) -> String {
        // A path remote is named by its absolute path, so `pull ./remote` and `pull /x/remote` agree.
        var key = location
        if !location.contains("://") && !location.hasPrefix("/") {
            key = FileManager.default.currentDirectoryPath + "/" + location
        }
        return String(SHA256Hasher.hash(Array(key.utf8)).hex.prefix(16))
    }

    /// The highest-serial record among the copies; any damaged copy is an error.
    public func record() throws -> TrustRecord? {
        try recordPaths.compactMap(TrustRecord.load).max { $0.serial < $1.serial }
    }

    /// Whether releases are checked at all: keys were given, or one was accepted before.
    public func isActive() throws -> Bool { try !trusted.isEmpty || record() != nil }

    /// The one release-acceptance step of `pull` and `sync`: when this device checks releases,
    /// reads `remote`'s release.json and accepts it (or throws why not); nil when it does not check.
    public func acceptRelease(of remote: any ReadableBackend) throws -> SignedRelease? {
        guard try isActive() else { return nil }
        return try accept(try remote.read(SignedRelease.path, limit: SignedRelease.maxEncodedSize))
    }

    /// Checks the remote's release.json (nil: the remote has none). Returns the release to
    /// restrict the manifest with, or nil when this device does not check releases.
    public func accept(_ bytes: [UInt8]?) throws -> SignedRelease? {
        let last = try record()
        guard !trusted.isEmpty || last != nil else { return nil }
        let source = "\(location)/\(SignedRelease.path)"
        func refuse(_ problem: String) -> SLMError { .untrusted(source: source, problem: problem) }
        guard let bytes else {
            if let last { throw refuse("missing, but this device accepted signed release metadata (serial \(last.serial)) from this remote before; refusing unsigned metadata") }
            throw refuse("missing: the remote has no signed release metadata and this device was given keys to trust").remedied(by: .signRelease)
        }
        let release = try SignedRelease.decode(bytes, source: source)
        let keys = last?.keys ?? trusted
        guard !release.signers(among: keys).isEmpty else {
            throw refuse("not signed by a trusted key (trusted: \(keys.map { String($0.hex.prefix(16)) }.joined(separator: ", ")))")
        }
        if let last {
            if let pinned = last.remote, release.remote != pinned {
                throw refuse(release.remote.map { "is for remote \($0), but this device follows remote \(pinned) (a release copied from another remote)" }
                             ?? "names no remote, but this device follows remote \(pinned)")
            }
            if release.serial < last.serial {
                throw refuse("serial \(release.serial) is older than serial \(last.serial) this device already accepted (a replayed release)")
            }
            if release.serial == last.serial && release.payloadDigest != last.payload {
                throw refuse("serial \(release.serial) names different content than the release this device accepted with that serial")
            }
        }
        let now = self.now()
        if release.expires <= now {
            throw refuse("expired at \(Timestamp.format(time_t(release.expires))) (serial \(release.serial))").remedied(by: .renewRelease)
        }
        var next = TrustRecord(serial: release.serial, payload: release.payloadDigest, expires: release.expires,
                               keys: release.nextKeys ?? keys)
        next.remote = last?.remote ?? release.remote
        if next != last {
            for path in recordPaths {
                try FileSystem.makeDirectories((path as NSString).deletingLastPathComponent)
                try FileSystem.writeAtomically(Array(next.json.prettyString().utf8) + [0x0a], to: path)
            }
        }
        return release
    }
}
