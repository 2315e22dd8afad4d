// The publisher side of signed releases: `push --sign` states what the remote's manifest holds
// (only versions the publisher can vouch for), `resign` renews serial and expiry alone. Both
// replace release.json with a compare-and-swap, so two publishers never sign the same serial.

import Foundation

public struct ReleaseSigning: Sendable {
    public var keys: [Ed25519PrivateKey]
    /// Seconds from now until devices refuse the release.
    public var validity: Int64 = 30 * 86400
    /// Keys that sign from the next serial on (key rotation); nil keeps the current ones.
    public var nextKeys: [Ed25519PublicKey]?
    public var now: @Sendable () -> Int64 = { Int64(Date().timeIntervalSince1970) }

    public init(keys: [Ed25519PrivateKey]) { self.keys = keys }
}

public struct ReleaseSigningResult: Sendable {
    public var serial: UInt64
    public var expires: Int64
    public var versions: Int
    /// Versions the manifest lists that were left out: neither in this store nor in the previous release.
    public var unsigned: [String]
}

extension Store {
    /// Signs what `backend`'s manifest lists: versions the previous release listed or this store
    /// holds with the same id, their stages and rollouts. `renewOnly` keeps the previous
    /// release's content and changes only serial, times and (if given) next keys.
    public func signRelease(on backend: StoreBackend, signing: ReleaseSigning, renewOnly: Bool = false) throws -> ReleaseSigningResult {
        guard !signing.keys.isEmpty else { throw SLMError.argument("signing needs at least one key (--sign KEY)") }
        let source = "\(backend.location)/\(SignedRelease.path)"
        let record = "\(root)/trust/signed-\(ReleaseGate.recordName(for: backend.location))"
        let lastSigned = (try? FileSystem.readFile(record, limit: 64)).flatMap { UInt64(String(decoding: $0, as: UTF8.self).trimmingCharacters(in: .whitespacesAndNewlines)) } ?? 0
        for _ in 0..<20 {
            var expected: String? = nil
            var previous: SignedRelease? = nil
            switch try backend.readIfChanged(SignedRelease.path, validator: nil, limit: SignedRelease.maxEncodedSize) {
            case .absent: break
            case .unchanged: continue
            case let .changed(bytes, v):
                guard let v else { continue }
                expected = v
                previous = try SignedRelease.decode(bytes, source: source)
            }
            let now = signing.now()
            // The clock and this store's own record as floors: a remote rolled back to an old
            // release.json (or a lost one) cannot make the publisher sign a serial devices already took.
            let serial = max((previous?.serial ?? 0) + 1, lastSigned + 1, UInt64(max(0, now)))
            var release: SignedRelease
            var unsigned: [String] = []
            if renewOnly {
                guard let previous else {
                    throw SLMError.notFound("\(source) does not exist: sign a release first with `slmstore push REMOTE --sign KEY`")
                }
                release = SignedRelease(serial: serial, issued: now, expires: now + signing.validity,
                                        models: previous.models, nextKeys: signing.nextKeys ?? previous.nextKeys)
            } else {
                guard let bytes = try backend.read(RemoteLayout.manifest, limit: Manifest.maxEncodedSize) else {
                    throw SLMError.remote(url: "\(backend.location)/manifest.json", problem: "missing; nothing to sign")
                }
                var manifest = try Manifest.decode(bytes, source: "\(backend.location)/manifest.json")
                try manifest.loadVersions(of: nil, location: backend.location, read: backend.read)
                release = SignedRelease(manifest: manifest, serial: serial, issued: now,
                                        expires: now + signing.validity, nextKeys: signing.nextKeys)
                for (name, m) in release.models {
                    let held = Dictionary((try? versions(of: try ModelName(name)).map { ($0.0.description, $0.1) }) ?? [],
                                          uniquingKeysWith: { a, _ in a })
                    var kept = m
                    for (v, id) in m.versions where previous?.models[name]?.versions[v] != id && held[v] != id {
                        kept.versions[v] = nil
                        unsigned.append("\(name)@\(v)")
                    }
                    kept.stages = kept.stages.filter { kept.versions[$0.value] != nil }
                    kept.rollouts = kept.rollouts.filter { _, r in
                        r["version"]?.stringValue.flatMap { kept.versions[$0] }?.hex == r["id"]?.stringValue
                    }
                    release.models[name] = kept.versions.isEmpty ? nil : kept
                }
            }
            let bytes = try release.signed(by: signing.keys)
            try FileSystem.makeDirectories("\(root)/trust")
            try FileSystem.writeAtomically(Array("\(release.serial)\n".utf8), to: record)
            if try backend.write(SignedRelease.path, bytes: bytes, ifMatching: expected) {
                return ReleaseSigningResult(serial: release.serial, expires: release.expires,
                                            versions: release.models.values.reduce(0) { $0 + $1.versions.count }, unsigned: unsigned.sorted())
            }
        }
        throw SLMError.conflict("\(source) kept changing while being replaced; sign again")
    }
}
