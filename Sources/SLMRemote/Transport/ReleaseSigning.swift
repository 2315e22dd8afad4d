// The publisher side of signed releases: `push --sign` states what the remote's manifest holds
// (only versions the publisher can vouch for), `resign` renews serial and expiry alone. Nothing
// is taken from the remote's previous release.json unless the publisher's own keys (or its own
// record of what it signed last) vouch for it: a remote is writable by whoever holds the
// bucket, and re-signing its unsigned content would launder a forgery. Both replace
// release.json with a compare-and-swap, so two publishers never sign the same serial.

import SLMFormats
import SLMLocalStore
import Foundation

/// How a publisher signs a release: keys, validity, and whether to start from scratch.
public struct ReleaseSigning: Sendable {
    /// The keys that sign (each adds a signature).
    public var keys: [Ed25519PrivateKey]
    /// Seconds from now until devices refuse the release (at most `SignedRelease.maxValidity`).
    public var validity: Int64 = 30 * 86400
    /// Keys that sign from the next serial on (key rotation); nil keeps the current ones.
    public var nextKeys: [Ed25519PublicKey]?
    /// More keys whose signature makes the previous release trustworthy (a key rotated away
    /// from, when this store did not sign the previous release itself).
    public var previousKeys: [Ed25519PublicKey] = []
    /// Ignore the remote's previous release entirely: versions only from this store, the serial
    /// from this store's record and the clock (the way back from a tampered release.json).
    public var fromScratch = false
    /// Unix seconds now; a parameter so tests can move the clock.
    public var now: @Sendable () -> Int64 = { Int64(Date().timeIntervalSince1970) }

    /// Signing with `keys` for 30 days.
    public init(keys: [Ed25519PrivateKey]) { self.keys = keys }
}

/// What a signing wrote.
public struct ReleaseSigningResult: Sendable {
    /// The new release's serial.
    public var serial: UInt64
    /// When it expires (Unix seconds).
    public var expires: Int64
    /// Versions it lists.
    public var versions: Int
    /// The remote id the release names.
    public var remote: String
    /// Versions the manifest lists that were left out: neither in this store nor in the previous release.
    public var unsigned: [String]
    /// Stages and rollouts the remote states otherwise than this store (or, for a model this
    /// store does not hold, the previous release): signed as the store has them, never as the
    /// remote does ("NAME@STAGE: …").
    public var overridden: [String] = []
    /// Enrolled devices the release names (its `devices` digest), 0 when none.
    public var enrolledDevices: Int = 0
}

/// The id this store gave a remote (or was told with `--remote-id`) when it first pushed there:
/// `trust/remote-<16 hex>.json`. A signing takes the id from here, a verified release or the
/// store's own signing record, never from the remote's manifest, which anyone who can write the
/// remote can change.
package struct RemoteIDRecord: Equatable {
    /// The id the store gave the remote.
    package var remote: String

    /// Where the store keeps the record for the remote at `location`.
    package static func path(store: Store, location: String) -> String {
        "\(store.root)/trust/remote-\(ReleaseGate.locationKey(for: location)).json"
    }

    /// Nil when absent; a damaged one is an error (it is what stops a planted id).
    package static func load(store: Store, location: String) throws -> RemoteIDRecord? {
        let path = path(store: store, location: location)
        guard FileSystem.exists(path) else { return nil }
        let v: JSONValue
        do { v = try JSONValue.parse(try FileSystem.readFile(path, limit: 4096)) } catch {
            throw SLMError.damaged(path: path, problem: "remote id record: not valid JSON").caused(by: error)
        }
        guard v["format"]?.uint64Value == 1, let id = v["remote"]?.stringValue, SignedRelease.isValidRemoteID(id) else {
            throw SLMError.damaged(path: path, problem: "remote id record: needs format 1 and a remote id of 1-64 characters of A-Z a-z 0-9 . _ -")
        }
        return RemoteIDRecord(remote: id)
    }

    /// Written atomically into the store (canonical JSON + "\n").
    package func save(store: Store, location: String) throws {
        try FileSystem.makeDirectories("\(store.root)/trust")
        try FileSystem.writeAtomically(JSONValue.object(["format": .int(1), "remote": .string(remote)]).canonicalBytes() + [0x0a],
                                       to: Self.path(store: store, location: location))
    }
}

/// What a publisher's store remembers of the last release it signed for one remote
/// (`trust/signed-<record name>`): the serial floor, the payload (so a release it signed itself
/// is recognised after a key rotation) and the remote id it signed for.
struct PublisherRecord: Equatable {
    var serial: UInt64
    var payload: SHA256Digest?
    var remote: String?

    /// Nil when absent; a damaged record is an error, never a serial floor of zero.
    static func load(_ path: String) throws -> PublisherRecord? {
        guard FileSystem.exists(path) else { return nil }
        let bytes = try FileSystem.readFile(path, limit: 4096)
        let text = String(decoding: bytes, as: UTF8.self).trimmingCharacters(in: .whitespacesAndNewlines)
        func damaged(_ p: String) -> SLMError { .damaged(path: path, problem: "publisher release record: \(p); remove it only if no device took a release from this remote") }
        // Records written before format 1 hold the serial alone.
        if let serial = UInt64(text) {
            guard serial <= SignedRelease.maxSerial else { throw damaged("serial \(serial) is above 2^53") }
            return PublisherRecord(serial: serial, payload: nil, remote: nil)
        }
        let v: JSONValue
        do { v = try JSONValue.parse(bytes) } catch { throw damaged("not valid JSON").caused(by: error) }
        guard v["format"]?.uint64Value == 1, let serial = v["serial"]?.uint64Value, serial <= SignedRelease.maxSerial,
              let payload = v["payload_sha256"]?.stringValue.flatMap(SHA256Digest.init(hex:)) else {
            throw damaged("needs format 1, a serial up to 2^53 and payload_sha256")
        }
        let remote = v["remote"]?.stringValue
        if let remote, !SignedRelease.isValidRemoteID(remote) { throw damaged("malformed remote id") }
        return PublisherRecord(serial: serial, payload: payload, remote: remote)
    }

    var encoded: [UInt8] {
        var o: [String: JSONValue] = ["format": .int(1), "serial": .int(serial)]
        if let payload { o["payload_sha256"] = .string(payload.hex) }
        if let remote { o["remote"] = .string(remote) }
        return JSONValue.object(o).canonicalBytes() + [0x0a]
    }
}

extension Store {
    /// Signs what `backend`'s manifest lists: versions the (verified) previous release listed or
    /// this store holds with the same id, their stages and rollouts. `renewOnly` keeps the
    /// previous release's content and changes only serial, times and (if given) next keys.
    public func signRelease(on backend: StoreBackend, signing: ReleaseSigning, renewOnly: Bool = false) throws -> ReleaseSigningResult {
        guard !signing.keys.isEmpty else { throw SLMError.invalidSetting(.signingKeys, problem: "needs at least one key") }
        guard signing.validity <= SignedRelease.maxValidity else {
            throw SLMError.argument("a release may be valid for at most \(SignedRelease.maxValidity / 86400) days, not \(signing.validity / 86400)")
        }
        let source = "\(backend.location)/\(SignedRelease.path)"
        let recordPath = "\(root)/trust/signed-\(ReleaseGate.recordName(for: backend.location))"
        let record = try PublisherRecord.load(recordPath)
        for _ in 0..<20 {
            var expected: String? = nil
            var previous: SignedRelease? = nil
            switch try backend.readIfChanged(SignedRelease.path, validator: nil, limit: SignedRelease.maxEncodedSize) {
            case .absent: break
            case .unchanged: continue
            case let .changed(bytes, v):
                guard let v else { continue }
                expected = v
                if !signing.fromScratch {
                    previous = try verifiedPrevious(bytes, source: source, signing: signing, record: record)
                }
            }
            let now = signing.now()
            // The clock and this store's own record as floors: a remote rolled back to an old
            // release.json (or a lost one) cannot make the publisher sign a serial devices already took.
            let serial = max(previous?.serial ?? 0, record?.serial ?? 0) + 1
            guard serial <= SignedRelease.maxSerial else {
                throw SLMError.failed("\(source): serial \(serial - 1) is the largest a release may carry; devices cannot be moved past it with this key")
            }
            var release: SignedRelease
            var unsigned: [String] = []
            var overridden: [String] = []
            let (expires, overflow) = now.addingReportingOverflow(signing.validity)
            guard !overflow else { throw SLMError.argument("release expiry \(now) + \(signing.validity) s is out of range") }
            let finalSerial = max(serial, UInt64(min(max(0, now), Int64(SignedRelease.maxSerial))))
            if renewOnly {
                guard let previous else {
                    if signing.fromScratch {
                        throw SLMError.argument("a renewal from scratch has no release to renew and takes no versions")
                            .remedied(by: .signFromScratch)
                    }
                    throw SLMError.notFound("\(source) does not exist: sign a release first").remedied(by: .signRelease)
                }
                let remote = try remoteID(previous: previous, record: record, manifest: nil, backend: backend)
                release = SignedRelease(serial: finalSerial, remote: remote, issued: now, expires: expires,
                                        models: previous.models, nextKeys: signing.nextKeys ?? previous.nextKeys)
            } else {
                guard let bytes = try backend.read(RemoteLayout.manifest, limit: Manifest.maxEncodedSize) else {
                    throw SLMError.remote(url: "\(backend.location)/manifest.json", problem: "missing; nothing to sign")
                }
                var manifest = try Manifest.decode(bytes, source: "\(backend.location)/manifest.json")
                try manifest.loadVersions(of: nil, location: backend.location, read: backend.read)
                let remote = try remoteID(previous: previous, record: record, manifest: manifest, backend: backend)
                (release, unsigned, overridden) = try vouchedRelease(manifest: manifest, previous: previous, serial: finalSerial, remote: remote,
                                                                     issued: now, expires: expires, nextKeys: signing.nextKeys)
            }
            // The enrolled devices this store holds for the remote, published beside the release
            // and named by digest in it, so whoever reads reports can check who may send them.
            let enrolled = try DeviceEnrollment.load(store: self, location: backend.location)
            if !enrolled.devices.isEmpty {
                let bytes = enrolled.encoded()
                try backend.write(DeviceEnrollment.remotePath, bytes: bytes)
                release.devices = .init(count: enrolled.devices.count, sha256: SHA256Hasher.hash(bytes))
            }
            let bytes = try release.signed(by: signing.keys)
            try FileSystem.makeDirectories("\(root)/trust")
            // The digest of the payload as signed (a release built here has no decoded payload yet).
            let next = PublisherRecord(serial: release.serial, payload: SHA256Hasher.hash(release.payloadJSON.canonicalBytes()), remote: release.remote)
            try FileSystem.writeAtomically(next.encoded, to: recordPath)
            if try backend.write(SignedRelease.path, bytes: bytes, ifMatching: expected) {
                return ReleaseSigningResult(serial: release.serial, expires: release.expires,
                                            versions: release.models.values.reduce(0) { $0 + $1.versions.count },
                                            remote: release.remote ?? "", unsigned: unsigned.sorted(), overridden: overridden.sorted(),
                                            enrolledDevices: release.devices?.count ?? 0)
            }
        }
        throw SLMError.conflict("\(source) kept changing while being replaced; sign again")
    }

    /// The remote's release.json, if the publisher's keys signed it or it is the release this
    /// store signed last; otherwise an error that says how to recover.
    func verifiedPrevious(_ bytes: [UInt8], source: String, signing: ReleaseSigning, record: PublisherRecord?) throws -> SignedRelease {
        let previous: SignedRelease
        do { previous = try SignedRelease.decode(bytes, source: source) } catch {
            throw SLMError.untrusted(source: source, problem: "cannot be read").caused(by: error).remedied(by: .signFromScratch)
        }
        let own = signing.keys.map(\.publicKey) + signing.previousKeys
        guard !previous.signers(among: own).isEmpty || (record?.payload != nil && record?.payload == previous.payloadDigest) else {
            throw SLMError.untrusted(source: source, problem: "is not signed by the signing keys and is not the release this store signed last, so nothing in it is reused; if it was tampered with, sign it again")
                .remedied(by: .signFromScratch)
        }
        return previous
    }

    /// The remote id a release names: the one this publisher's own state holds (the verified
    /// previous release, its signing record, the id it gave the remote at its first push). The
    /// manifest's id is only checked against it, never adopted: whoever can write the remote can
    /// plant another remote's id there, and a release signed for it would move that remote's devices.
    func remoteID(previous: SignedRelease?, record: PublisherRecord?, manifest: Manifest?, backend: StoreBackend) throws -> String {
        let own = try RemoteIDRecord.load(store: self, location: backend.location)?.remote
        let known = [previous?.remote, record?.remote, own].compactMap { $0 }
        let source = "\(backend.location)/manifest.json"
        if let first = known.first, let other = known.first(where: { $0 != first }) {
            throw SLMError.untrusted(source: source, problem: "this store's records name two ids for this remote (\(first) and \(other)); remove the wrong trust/ record")
        }
        if let pinned = known.first {
            if let listed = manifest?.remoteID, listed != pinned {
                throw SLMError.untrusted(source: source, problem: "names remote id \(listed), but this store published to this remote as \(pinned) (someone replaced manifest.json)")
            }
            return pinned
        }
        guard let listed = manifest?.remoteID else {
            throw SLMError.remote(url: source, problem: "names no remote id; push to it once (which gives it one) before signing")
        }
        throw SLMError.untrusted(source: source, problem: "names remote id \(listed), which this store neither gave this remote nor signed for; confirm it by pushing with that remote id (checked against what your devices pinned)")
            .remedied(by: .confirmRemoteID(listed))
    }

    /// The manifest as far as this publisher vouches for it. Versions: those the verified
    /// previous release lists or this store holds with the same id. Stages and rollouts: this
    /// store's own for a model it holds, the previous release's for one it does not; the
    /// manifest's are only compared with them (a remote writer can move a stage ref or plant a
    /// rollout record, and a routine push of another model must not sign that).
    func vouchedRelease(manifest: Manifest, previous: SignedRelease?, serial: UInt64, remote: String, issued: Int64, expires: Int64,
                        nextKeys: [Ed25519PublicKey]?) throws -> (SignedRelease, unsigned: [String], overridden: [String]) {
        var release = SignedRelease(manifest: manifest, serial: serial, remote: remote, issued: issued, expires: expires, nextKeys: nextKeys)
        var unsigned: [String] = [], overridden: [String] = []
        for (name, listed) in release.models {
            let model = ModelName(parsing: name)
            // A model this store does not hold (or cannot name) vouches for nothing, which is what
            // an empty list says.
            let heldVersions = try model.map { try versions(of: $0) } ?? []
            let held = Dictionary(heldVersions.map { ($0.0.description, $0.1) }, uniquingKeysWith: { a, _ in a })
            let prior = previous?.models[name]
            var kept = listed
            for (v, id) in listed.versions where prior?.versions[v] != id && held[v] != id {
                kept.versions[v] = nil
                unsigned.append("\(name)@\(v)")
            }
            if let model, !heldVersions.isEmpty {
                kept.stages = [:]
                for (stage, id) in try stageRefs(of: model) {
                    let v = try readVersion(id).version.description
                    if kept.versions[v] == id { kept.stages[stage] = v }
                }
                kept.rollouts = [:]
                for (stage, r) in try rollouts(of: model) where r.state == .active && kept.versions[r.version] == r.id {
                    kept.rollouts[stage] = r.json
                }
            } else {
                kept.stages = (prior?.stages ?? [:]).filter { kept.versions[$0.value] != nil && kept.versions[$0.value] == prior?.versions[$0.value] }
                kept.rollouts = (prior?.rollouts ?? [:]).filter { _, r in
                    r["version"]?.stringValue.flatMap { kept.versions[$0] }?.hex == r["id"]?.stringValue
                }
            }
            for stage in Set(listed.stages.keys).union(kept.stages.keys).sorted() where listed.stages[stage] != kept.stages[stage] {
                overridden.append("\(name)@\(stage): the remote names \(listed.stages[stage] ?? "nothing"), signed \(kept.stages[stage] ?? "nothing")")
            }
            for stage in Set(listed.rollouts.keys).union(kept.rollouts.keys).sorted() where listed.rollouts[stage] != kept.rollouts[stage] {
                func describe(_ r: JSONValue?) -> String {
                    guard let r else { return "none" }
                    return "\(r["version"]?.stringValue ?? "?") at \(r["percent"].map { $0.canonicalString() } ?? "?")% (serial \(r["serial"].map { $0.canonicalString() } ?? "?"))"
                }
                overridden.append("\(name)@\(stage) rollout: the remote has \(describe(listed.rollouts[stage])), signed \(describe(kept.rollouts[stage]))")
            }
            release.models[name] = kept.versions.isEmpty ? nil : kept
        }
        return (release, unsigned, overridden)
    }
}
