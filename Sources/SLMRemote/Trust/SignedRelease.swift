// release.json: the publisher's signed statement of which versions a remote holds and which
// version each stage names, with a serial that only grows and an expiry (TUF's targets and
// timestamp roles in one file). The signature covers the payload's exact bytes, so a reader
// never has to re-encode JSON to check it. Format.md §7.4 is the byte-level contract.

import SLMFormats
import SLMLocalStore
import Foundation

/// What a release says of the enrolled devices: how many, and the SHA-256 of `devices.json`.
public struct EnrolledSetDigest: Sendable, Equatable {
    /// Devices enrolled.
    public var count: Int
    /// The SHA-256 of the exact bytes of `devices.json` at the remote's root.
    public var sha256: SHA256Digest
}

/// A remote's release.json: the versions and stages it holds, its serial and expiry, signed
/// (Format.md §7.4).
public struct SignedRelease: Sendable {
    /// What the release says of one model.
    public struct Model: Sendable, Equatable {
        /// version -> version id.
        public var versions: [String: SHA256Digest]
        /// stage -> version.
        public var stages: [String: String]
        /// stage -> the active rollout's canonical JSON, as the manifest carries it.
        public var rollouts: [String: JSONValue]
    }

    /// Its path in a remote.
    public static let path = "release.json"
    /// The largest release.json a reader accepts.
    public static let maxEncodedSize = 16 << 20
    /// Serials stay below 2^53 so every JSON reader holds them exactly, and `serial + 1` can
    /// never overflow: a release naming a larger one is damaged, not adopted.
    public static let maxSerial: UInt64 = 1 << 53
    /// The longest validity a publisher may sign (ten years): a typo such as `--expires 100000d`
    /// would otherwise pin devices to one release for good.
    public static let maxValidity: Int64 = 3650 * 86400
    /// Signed bytes are this prefix and the payload, so a signature over a release can never be
    /// mistaken for one over anything else the key signs.
    static let domain = Array("slmstore-release-v1\n".utf8)

    /// Grows with every release; a device refuses one lower than it accepted.
    public var serial: UInt64
    /// The publisher-chosen id of the remote this release is for (payload format 2). A device
    /// pins it at first trust and refuses a release for another remote, so a release copied
    /// from one remote to another (same key) moves nobody. Nil only in format 1 payloads.
    public var remote: String?
    /// Unix seconds.
    public var issued: Int64
    /// Unix seconds after which devices refuse it.
    public var expires: Int64
    /// The models, by name.
    public var models: [String: Model]
    /// Keys that sign from the next serial on (rotation); nil keeps the keys a device already trusts.
    public var nextKeys: [Ed25519PublicKey]?
    /// The enrolled devices the publisher published beside the release (`devices.json`), named
    /// by count and digest; nil when it enrolled none.
    public var devices: EnrolledSetDigest?
    /// The payload's exact bytes, as signed.
    public private(set) var payload: [UInt8] = []
    /// The signatures, by key.
    public private(set) var signatures: [(key: Ed25519PublicKey, signature: [UInt8])] = []

    /// An unsigned release from its fields (`payload` is made when it is signed).
    public init(serial: UInt64, remote: String? = nil, issued: Int64, expires: Int64, models: [String: Model], nextKeys: [Ed25519PublicKey]?) {
        self.serial = serial
        self.remote = remote
        self.issued = issued
        self.expires = expires
        self.models = models
        self.nextKeys = nextKeys
    }

    /// What the publisher states about a manifest it has just written.
    public init(manifest: Manifest, serial: UInt64, remote: String?, issued: Int64, expires: Int64, nextKeys: [Ed25519PublicKey]?) {
        var models: [String: Model] = [:]
        for (name, m) in manifest.models {
            var versions: [String: SHA256Digest] = [:]
            for v in m.versions { versions[v.version] = v.id }
            models[name] = Model(versions: versions, stages: m.stages.filter { versions[$0.value] != nil },
                                 rollouts: m.rollouts.mapValues(\.json))
        }
        self.init(serial: serial, remote: remote, issued: issued, expires: expires, models: models, nextKeys: nextKeys)
    }

    /// A remote id: 1 to 64 characters of [A-Za-z0-9._-], so it prints and compares plainly.
    public static func isValidRemoteID(_ s: String) -> Bool { PlainName.isPlain(s, maxBytes: 64) }

    /// The payload as the JSON value Format.md §7.4 specifies.
    public var payloadJSON: JSONValue {
        var models: [String: JSONValue] = [:]
        for (name, m) in self.models {
            var o: [String: JSONValue] = [
                "versions": .object(m.versions.mapValues { .string($0.hex) }),
                "stages": .object(m.stages.mapValues { .string($0) }),
            ]
            if !m.rollouts.isEmpty { o["rollouts"] = .object(m.rollouts) }
            models[name] = .object(o)
        }
        var o: [String: JSONValue] = [
            "type": .string("slmstore-release"), "format": .int(remote == nil ? 1 : 2), "serial": .int(serial),
            "issued": .number(String(issued)), "expires": .number(String(expires)), "models": .object(models),
        ]
        if let remote { o["remote"] = .string(remote) }
        if let devices { o["devices"] = .object(["count": .int(UInt64(devices.count)), "sha256": .string(devices.sha256.hex)]) }
        if let nextKeys { o["next_keys"] = .array(nextKeys.map { .string($0.hex) }.sorted { $0.stringValue! < $1.stringValue! }) }
        return .object(o)
    }

    /// The file: the payload's canonical JSON as a string, and one signature per key.
    public func signed(by keys: [Ed25519PrivateKey]) throws -> [UInt8] {
        let payload = payloadJSON.canonicalBytes()
        var sigs: [JSONValue] = []
        for key in keys {
            let sig = try key.sign(Self.domain + payload)
            sigs.append(.object(["key": .string(key.publicKey.hex), "sig": .string(Hex.encode(sig))]))
        }
        let file: JSONValue = .object(["format": .int(1), "signed": .string(String(decoding: payload, as: UTF8.self)),
                                       "signatures": .array(sigs)])
        return file.canonicalBytes() + [0x0a]
    }

    /// Keys among `trusted` with a valid signature over this release's payload.
    public func signers(among trusted: [Ed25519PublicKey]) -> [Ed25519PublicKey] {
        let message = Self.domain + payload
        return signatures.compactMap { s in
            trusted.contains(s.key) && s.key.isValidSignature(s.signature, of: message) ? s.key : nil
        }
    }

    /// The SHA-256 of the payload's exact bytes.
    public var payloadDigest: SHA256Digest { SHA256Hasher.hash(payload) }

    /// Parses and bounds everything; signatures are only parsed here, `signers` checks them.
    public static func decode(_ bytes: [UInt8], source: String) throws -> SignedRelease {
        func bad(_ p: String) -> SLMError { .damaged(path: source, problem: "release metadata: \(p)") }
        guard bytes.count <= maxEncodedSize else { throw bad("larger than \(maxEncodedSize) bytes") }
        let file: JSONValue
        // The wrapper holds a format, up to 16 signatures and the payload string: a few dozen
        // values. Anything larger is junk around the signed part, refused before it is built.
        do { file = try JSONValue.parse(bytes, maxValues: 256) } catch { throw bad("not valid JSON").caused(by: error) }
        guard let format = file["format"]?.uint64Value else { throw bad("no format") }
        guard format == 1 else { throw SLMError.unsupportedFormat(path: source, what: "release metadata", found: format, supported: 1) }
        guard let text = file["signed"]?.stringValue, let list = file["signatures"]?.arrayValue, list.count <= 16 else {
            throw bad("needs \"signed\" (a string) and \"signatures\" (at most 16)")
        }
        var sigs: [(Ed25519PublicKey, [UInt8])] = []
        for s in list {
            guard let k = s["key"]?.stringValue.flatMap(Hex.decode).flatMap(Ed25519PublicKey.init(raw:)),
                  let sig = s["sig"]?.stringValue.flatMap(Hex.decode), sig.count == 64 else { throw bad("malformed signature entry") }
            sigs.append((k, sig))
        }
        let payload = Array(text.utf8)
        let p: JSONValue
        do { p = try JSONValue.parse(payload, maxValues: JSONValue.remoteValueLimit(forBytes: payload.count)) } catch { throw bad("payload is not valid JSON").caused(by: error) }
        guard p["type"]?.stringValue == "slmstore-release", let payloadFormat = p["format"]?.uint64Value else {
            throw bad("payload needs type \"slmstore-release\" and a format")
        }
        guard payloadFormat <= 2 else {
            throw SLMError.unsupportedFormat(path: source, what: "release payload", found: payloadFormat, supported: 2)
        }
        guard payloadFormat >= 1, let serial = p["serial"]?.uint64Value, let issued = p["issued"]?.int64Value, let expires = p["expires"]?.int64Value,
              let modelList = p["models"]?.objectValue else {
            throw bad("payload needs serial, issued, expires and models")
        }
        guard serial <= maxSerial else { throw bad("serial \(serial) is above the largest serial a release may carry (2^53)") }
        var remote: String? = nil
        if payloadFormat == 2 {
            guard let r = p["remote"]?.stringValue, isValidRemoteID(r) else {
                throw bad("payload format 2 needs \"remote\": 1 to 64 characters of A-Z a-z 0-9 . _ -")
            }
            remote = r
        }
        var models: [String: Model] = [:]
        for (name, m) in modelList {
            guard ModelName(parsing: name) != nil else { throw bad("invalid model name \"\(name)\"") }
            var versions: [String: SHA256Digest] = [:]
            for (v, id) in m["versions"]?.objectValue ?? [:] {
                guard SemVer(parsing: v) != nil, let d = id.stringValue.flatMap(SHA256Digest.init(hex:)) else {
                    throw bad("bad version entry \(name)@\(v)")
                }
                versions[v] = d
            }
            var stages: [String: String] = [:]
            for (stage, v) in m["stages"]?.objectValue ?? [:] {
                guard let v = v.stringValue, versions[v] != nil else { throw bad("stage \(stage) of \(name) names a version the release does not list") }
                stages[stage] = v
            }
            models[name] = Model(versions: versions, stages: stages, rollouts: m["rollouts"]?.objectValue ?? [:])
        }
        var next: [Ed25519PublicKey]?
        if let keys = p["next_keys"] {
            guard let a = keys.arrayValue, !a.isEmpty, a.count <= 16 else { throw bad("next_keys must list 1 to 16 keys") }
            next = try a.map {
                guard let k = $0.stringValue.flatMap(Hex.decode).flatMap(Ed25519PublicKey.init(raw:)) else { throw bad("malformed key in next_keys") }
                return k
            }
        }
        var r = SignedRelease(serial: serial, remote: remote, issued: issued, expires: expires, models: models, nextKeys: next)
        if let d = p["devices"] {
            guard let count = d["count"]?.uint64Value, count <= UInt64(DeviceEnrollment.maxDevices),
                  let digest = d["sha256"]?.stringValue.flatMap(SHA256Digest.init(hex:)) else {
                throw bad("devices needs a count up to \(DeviceEnrollment.maxDevices) and a sha256")
            }
            r.devices = EnrolledSetDigest(count: Int(count), sha256: digest)
        }
        r.payload = payload
        r.signatures = sigs
        return r
    }

    /// The manifest as far as this release vouches for it: only versions it lists with the same
    /// id, its stages and its rollouts. Everything a device selects goes through this view.
    public func restrict(_ manifest: Manifest) -> Manifest {
        var out = manifest
        var kept: [String: Manifest.ModelEntry] = [:]
        for (name, m) in manifest.models {
            guard let signed = models[name] else { continue }
            let versions = m.versions.filter { signed.versions[$0.version] == $0.id }
            var rollouts: [String: RolloutRecord] = [:]
            for (stage, json) in signed.rollouts {
                // A signed rollout this release cannot decode is not followed; its stage still is.
                if let r = try? RolloutRecord.decode(json, source: "release"), r.state == .active, signed.versions[r.version] == r.id {
                    rollouts[stage] = r
                }
            }
            var entry = Manifest.ModelEntry(versions: versions, stages: signed.stages, rollouts: rollouts)
            // A model whose entries are not loaded stays so (what the manifest says of its entries
            // file is kept as it is): a reader loads the models it needs before restricting.
            entry.versionsLoaded = m.versionsLoaded
            entry.entriesFile = m.entriesFile
            (entry.listedCount, entry.listedDigest, entry.summary) = (m.listedCount, m.listedDigest, m.summary)
            entry.stageIDs = m.stageIDs.filter { signed.stages[$0.key] != nil }
            kept[name] = entry
        }
        out.models = kept
        return out
    }

    /// Whether this release lists exactly this version.
    public func lists(_ name: ModelName, _ version: SemVer, _ id: SHA256Digest) -> Bool {
        models[name.value]?.versions[version.description] == id
    }
}
