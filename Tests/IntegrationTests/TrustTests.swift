import XCTest
@testable import SLMStoreKit
@testable import SLMFormats
@testable import SLMLocalStore
@testable import SLMRemote
@testable import SLMDevice
@testable import SLMPages
import SLMSynthetic
import SLMTestSupport

/// Signed releases against a real nginx: a device that trusts a key installs only what that key
/// signed, never goes back to an older release, refuses expired and unsigned metadata once it has
/// seen signed, and follows a key rotation. The remote is the attacker in every test.
final class TrustTests: XCTestCase {
    var dir = ""
    var publisher = ""
    var remote = ""
    var key = "", pub = ""
    var nginx: NginxServer!

    override func setUpWithError() throws {
        dir = TestSupport.scratch()
        publisher = dir + "/publisher"
        remote = dir + "/remote"
        key = dir + "/keys/release"
        pub = key + ".pub"
        XCTAssertEqual(TestSupport.cli(["keygen", key]).status, 0)
        addVersion("1.0.0", seed: 1, to: publisher)
        addVersion("1.1.0", seed: 2, to: publisher)
        promote("1.0.0")
        push(["--sign", key])
        nginx = try NginxServer(serving: remote)
    }

    override func tearDown() { nginx?.stop() }

    func addVersion(_ v: String, seed: UInt64, to store: String, model: String = "intent") {
        let src = "\(dir)/src-\(model)-\(v)-\(seed)"
        TestSupport.write(TestSupport.safetensors([("w", "BF16", [150_000], TestSupport.bf16Like(300_000, seed: seed))]), to: src + "/model.safetensors")
        let r = TestSupport.cli(["add", "\(model)@\(v)", src], store: store)
        XCTAssertEqual(r.status, 0, r.stderr)
    }

    func promote(_ v: String) {
        let r = TestSupport.cli(["promote", "intent@\(v)", "production", "--skip-staging", "--allow-breaking"], store: publisher)
        XCTAssertEqual(r.status, 0, r.stderr)
    }

    @discardableResult
    func push(_ extra: [String], store: String? = nil) -> TestSupport.Run {
        let r = TestSupport.cli(["push", remote, "--json"] + extra, store: store ?? publisher)
        XCTAssertEqual(r.status, 0, r.stderr)
        return r
    }

    func pull(_ ref: String, device: String, trust: [String]? = nil, env: [String: String] = [:]) -> TestSupport.Run {
        TestSupport.cli(["pull", nginx.url, ref, "--to", device + "/install"] + (trust ?? [pub]).flatMap { ["--trust", $0] },
                        store: device + "/store", environment: env)
    }

    func current(_ device: String) -> String? { InstallDirectory(root: device + "/install").current() }

    func release() throws -> SignedRelease {
        try SignedRelease.decode(TestSupport.read(remote + "/release.json"), source: "release.json")
    }

    func testKeygenWritesAPrivateKeyOnlyItsOwnerReadsAndAPublicKeyOpenSSLReads() throws {
        var st = stat()
        XCTAssertEqual(stat(key, &st), 0)
        XCTAssertEqual(st.st_mode & 0o777, 0o600)
        let p = Process()
        p.executableURL = URL(fileURLWithPath: "/usr/bin/openssl")
        p.arguments = ["pkey", "-pubin", "-in", pub, "-noout", "-text"]
        let out = Pipe()
        p.standardOutput = out
        try p.run()
        p.waitUntilExit()
        XCTAssertEqual(p.terminationStatus, 0)
        XCTAssertTrue(String(decoding: out.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self).contains("ED25519 Public-Key"))
        let again = TestSupport.cli(["keygen", key])
        XCTAssertNotEqual(again.status, 0)
        XCTAssertTrue(again.stderr.contains("already exists"), again.stderr)
    }

    func testPushSignWritesASignedReleaseThatListsEveryVersionAndStage() throws {
        let r = try release()
        XCTAssertGreaterThanOrEqual(r.serial, UInt64(Date().timeIntervalSince1970) - 600)
        XCTAssertEqual(r.models["intent"]?.versions.keys.sorted(), ["1.0.0", "1.1.0"])
        XCTAssertEqual(r.models["intent"]?.stages["production"], "1.0.0")
        XCTAssertEqual(r.signers(among: [try Ed25519PublicKey.read(file: pub)]).count, 1)
        XCTAssertGreaterThan(r.expires - r.issued, 29 * 86400)
        let next = try TestSupport.json(push(["--sign", key, "--expires", "2d"]))
        XCTAssertEqual(next["release"]?["serial"]?.uint64Value, max(r.serial + 1, UInt64(try release().issued)))
        XCTAssertEqual(try release().expires - (try release()).issued, 2 * 86400)
    }

    func testTrustedDeviceInstallsASignedVersionAndRecordsTheRelease() throws {
        let device = dir + "/device"
        let r = pull("intent@production", device: device)
        XCTAssertEqual(r.status, 0, r.stderr)
        XCTAssertEqual(current(device), "1.0.0")
        for path in [device + "/store/trust", device + "/install/.slmstore-trust"] {
            let files = try FileSystem.listDirectory(path)
            XCTAssertEqual(files.count, 1, path)
        }
    }

    /// Finding 1: a forged version, with its own object, tree and pack, is on the remote.
    func testAForgedVersionOnTheRemoteIsNotInstalled() throws {
        let attacker = dir + "/attacker"
        addVersion("1.2.0", seed: 66, to: attacker)
        push([], store: attacker)
        let device = dir + "/device"
        let forged = pull("intent@1.2.0", device: device)
        XCTAssertEqual(forged.status, 8, forged.stderr)
        XCTAssertTrue(forged.stderr.contains("not in the signed release"), forged.stderr)
        XCTAssertNil(current(device))
        // Through the manifest (a range) the forged version is invisible: the signed 1.1.0 wins.
        let range = pull("intent@^1", device: device)
        XCTAssertEqual(range.status, 0, range.stderr)
        XCTAssertEqual(current(device), "1.1.0")
        // A device that trusts nothing is still fooled: that is what --trust is for.
        XCTAssertEqual(TestSupport.cli(["pull", nginx.url, "intent@1.2.0"], store: dir + "/naive").status, 0)
    }

    func testAReleaseSignedByAnotherKeyIsRefused() throws {
        XCTAssertEqual(TestSupport.cli(["keygen", dir + "/keys/other"]).status, 0)
        let r = pull("intent@production", device: dir + "/device", trust: [dir + "/keys/other.pub"])
        XCTAssertEqual(r.status, 8)
        XCTAssertTrue(r.stderr.contains("not signed by a trusted key"), r.stderr)
        XCTAssertNil(current(dir + "/device"))
    }

    /// Finding 2: a replayed older manifest and release moving production back are refused; a
    /// move back in a new signed release is followed.
    func testAReplayedOlderReleaseIsRefusedButANewSignedRollbackIsFollowed() throws {
        let device = dir + "/device"
        let oldManifest = TestSupport.read(remote + "/manifest.json"), oldRelease = TestSupport.read(remote + "/release.json")
        promote("1.1.0")
        push(["--sign", key])
        XCTAssertEqual(pull("intent@production", device: device).status, 0)
        XCTAssertEqual(current(device), "1.1.0")
        TestSupport.write(oldManifest, to: remote + "/manifest.json")
        TestSupport.write(oldRelease, to: remote + "/release.json")
        let replay = pull("intent@production", device: device)
        XCTAssertEqual(replay.status, 8)
        XCTAssertTrue(replay.stderr.contains("replayed"), replay.stderr)
        XCTAssertEqual(current(device), "1.1.0")
        // The record survives losing the store: the install directory's copy still counts.
        try FileManager.default.removeItem(atPath: device + "/store/trust")
        XCTAssertEqual(pull("intent@production", device: device).status, 8)
        // The publisher moves production back itself, in a new release: followed.
        XCTAssertEqual(TestSupport.cli(["rollback", "intent", "production"], store: publisher).status, 0)
        push(["--sign", key])
        let back = pull("intent@production", device: device)
        XCTAssertEqual(back.status, 0, back.stderr)
        XCTAssertEqual(current(device), "1.0.0")
    }

    /// release.json cut short, or larger than its bound: refused, nothing installed or moved.
    func testATruncatedOrOversizedReleaseIsRefusedAndTheInstalledVersionStays() throws {
        let device = dir + "/device"
        XCTAssertEqual(pull("intent@production", device: device).status, 0)
        promote("1.1.0")
        push(["--sign", key])
        let good = TestSupport.read(remote + "/release.json")
        TestSupport.write(Array(good.prefix(good.count / 2)), to: remote + "/release.json")
        let truncated = pull("intent@production", device: device)
        XCTAssertEqual(truncated.status, 5, truncated.stderr)
        XCTAssertTrue(truncated.stderr.contains("release.json"), truncated.stderr)
        XCTAssertEqual(truncate(remote + "/release.json", off_t(SignedRelease.maxEncodedSize + 1)), 0)
        let oversized = pull("intent@production", device: device)
        XCTAssertEqual(oversized.status, 6, oversized.stderr)
        XCTAssertTrue(oversized.stderr.contains("larger than"), oversized.stderr)
        XCTAssertEqual(current(device), "1.0.0")
        TestSupport.write(good, to: remote + "/release.json")
        XCTAssertEqual(pull("intent@production", device: device).status, 0)
        XCTAssertEqual(current(device), "1.1.0")
    }

    func testOnceSignedMetadataWasAcceptedUnsignedIsRefusedEvenWithoutTrust() throws {
        let device = dir + "/device"
        XCTAssertEqual(pull("intent@production", device: device).status, 0)
        try FileManager.default.removeItem(atPath: remote + "/release.json")
        let r = pull("intent@1.1.0", device: device, trust: [])
        XCTAssertEqual(r.status, 8)
        XCTAssertTrue(r.stderr.contains("refusing unsigned metadata"), r.stderr)
        XCTAssertEqual(current(device), "1.0.0")
    }

    func testAnExpiredReleaseIsRefusedAndResignRenewsIt() throws {
        // A release that expired an hour ago, signed through the library with the clock moved back.
        var signing = ReleaseSigning(keys: [try Ed25519PrivateKey.read(file: key)])
        let past = Int64(Date().timeIntervalSince1970) - 7200
        signing.now = { past }
        signing.validity = 3600
        _ = try Store.open(at: publisher).signRelease(on: LocalBackend(root: remote), signing: signing, renewOnly: true)
        let device = dir + "/device"
        let r = pull("intent@production", device: device)
        XCTAssertEqual(r.status, 8)
        XCTAssertTrue(r.stderr.contains("expired at") && r.stderr.contains("resign"), r.stderr)
        let before = try release()
        let renew = TestSupport.cli(["resign", remote, "--sign", key, "--expires", "7d", "--json"], store: publisher)
        XCTAssertEqual(renew.status, 0, renew.stderr)
        let after = try release()
        XCTAssertGreaterThan(after.serial, before.serial)
        XCTAssertEqual(after.models, before.models)
        XCTAssertEqual(after.expires - after.issued, 7 * 86400)
        XCTAssertEqual(pull("intent@production", device: device).status, 0)
    }

    /// The publisher rotates to a new key: a device that trusted the old one follows, and the
    /// old key alone no longer convinces it.
    func testKeyRotationIsFollowedThroughTheOldKey() throws {
        let device = dir + "/device"
        XCTAssertEqual(pull("intent@production", device: device).status, 0)
        let newKey = dir + "/keys/new"
        XCTAssertEqual(TestSupport.cli(["keygen", newKey]).status, 0)
        push(["--sign", key, "--next-key", newKey + ".pub"])
        XCTAssertEqual(pull("intent@production", device: device).status, 0)
        promote("1.1.0")
        push(["--sign", newKey])
        let r = pull("intent@production", device: device)
        XCTAssertEqual(r.status, 0, r.stderr)
        XCTAssertEqual(current(device), "1.1.0")
        // The retired key signs a newer release: refused.
        push(["--sign", key])
        let old = pull("intent@production", device: device)
        XCTAssertEqual(old.status, 8)
        XCTAssertTrue(old.stderr.contains("not signed by a trusted key"), old.stderr)
    }

    func testSlmstoreTrustEnvironmentNamesTrustedKeys() throws {
        let r = pull("intent@production", device: dir + "/device", trust: [], env: ["SLMSTORE_TRUST": "/nonexistent.pub:" + pub])
        XCTAssertNotEqual(r.status, 0)
        XCTAssertTrue(r.stderr.contains("/nonexistent.pub"), r.stderr)
        XCTAssertEqual(pull("intent@production", device: dir + "/device", trust: [], env: ["SLMSTORE_TRUST": pub]).status, 0)
    }

    func testAPushWithoutSignWarnsThatTheReleaseWasNotRenewed() throws {
        addVersion("1.3.0", seed: 3, to: publisher)
        let r = push([])
        XCTAssertTrue(r.stderr.contains("did not renew"), r.stderr)
        XCTAssertEqual(pull("intent@1.3.0", device: dir + "/device").status, 8)
    }

    /// A version the manifest lists that neither the previous release nor the signing store
    /// vouches for is left out of the release and reported.
    func testSigningLeavesOutVersionsThePublisherCannotVouchFor() throws {
        let attacker = dir + "/attacker"
        addVersion("1.2.0", seed: 66, to: attacker)
        push([], store: attacker)
        let r = try TestSupport.json(push(["--sign", key]))
        XCTAssertEqual(r["release"]?["unsigned"]?.arrayValue?.compactMap(\.stringValue), ["intent@1.2.0"])
        XCTAssertNil(try release().models["intent"]?.versions["1.2.0"])
    }

    /// An attacker who can write the remote replaces release.json with one listing a forged
    /// version and naming the attacker's key for the next serial (signed by the attacker, or by
    /// nobody). Before the fix the publisher's next `push --sign` or `resign` re-signed it.
    func plantForgedRelease(signedBy attackerKey: Ed25519PrivateKey?, serial: UInt64 = 5) throws -> Ed25519PrivateKey {
        let attacker = dir + "/attacker"
        addVersion("1.2.0", seed: 66, to: attacker)
        push([], store: attacker)
        let forgedID = try Store.open(at: attacker).resolve(try VersionRef.parse("intent@1.2.0")).id
        let attackerKey = try attackerKey ?? Ed25519PrivateKey.generate()
        var models = try release().models
        models["intent"]?.versions["1.2.0"] = forgedID
        models["intent"]?.stages["production"] = "1.2.0"
        let forged = SignedRelease(serial: serial, remote: try release().remote, issued: 0, expires: Int64(Date().timeIntervalSince1970) + 86400,
                                   models: models, nextKeys: [attackerKey.publicKey])
        TestSupport.write(try forged.signed(by: [attackerKey]), to: remote + "/release.json")
        return attackerKey
    }

    /// Finding 1 (critical): neither `push --sign` nor `resign` reuses a release its keys did not sign.
    func testThePublisherRefusesToResignAForgedReleaseAndFromScratchRecovers() throws {
        let device = dir + "/device"
        XCTAssertEqual(pull("intent@production", device: device).status, 0)
        _ = try plantForgedRelease(signedBy: nil)
        let planted = TestSupport.read(remote + "/release.json")
        for args in [["push", remote, "--sign", key], ["resign", remote, "--sign", key]] {
            let r = TestSupport.cli(args, store: publisher)
            XCTAssertNotEqual(r.status, 0, "\(args): \(r.stdout)")
            XCTAssertTrue(r.stderr.contains("release.json") && r.stderr.contains("not signed by the signing keys") && r.stderr.contains("--from-scratch"), r.stderr)
            XCTAssertEqual(r.stderr.split(separator: "\n").count, 1, r.stderr)
            XCTAssertEqual(TestSupport.read(remote + "/release.json"), planted, "\(args) must leave release.json alone")
        }
        XCTAssertEqual(pull("intent@production", device: device).status, 8)
        XCTAssertEqual(current(device), "1.0.0")
        // The way back: sign only what this store holds, over the planted file.
        let fixed = TestSupport.cli(["push", remote, "--sign", key, "--from-scratch", "--json"], store: publisher)
        XCTAssertEqual(fixed.status, 0, fixed.stderr)
        let r = try release()
        XCTAssertNil(r.models["intent"]?.versions["1.2.0"])
        XCTAssertNil(r.nextKeys)
        XCTAssertEqual(r.models["intent"]?.stages["production"], "1.0.0")
        XCTAssertEqual(try TestSupport.json(fixed)["release"]?["unsigned"]?.arrayValue?.compactMap(\.stringValue), ["intent@1.2.0"])
        XCTAssertEqual(pull("intent@production", device: device).status, 0)
        XCTAssertEqual(current(device), "1.0.0")
        // Trust did not move to the attacker's key: the device still follows the publisher's.
        XCTAssertEqual(TestSupport.cli(["resign", remote, "--sign", key], store: publisher).status, 0)
        XCTAssertEqual(pull("intent@production", device: device).status, 0)
    }

    /// Finding 2: a planted serial near 2^64 neither crashes the publisher nor freezes the fleet.
    func testAPlantedHugeSerialIsNotAdoptedAndAHugeExpiryIsAClearError() throws {
        for serial in [UInt64.max, UInt64.max - 2] {
            _ = try plantForgedRelease(signedBy: nil, serial: serial)
            let r = TestSupport.cli(["push", remote, "--sign", key], store: publisher)
            XCTAssertEqual(r.status, 8, r.stderr)  // refused, not a trap (SIGILL was 132)
            XCTAssertTrue(r.stderr.contains("release.json"), r.stderr)
            XCTAssertEqual(TestSupport.cli(["push", remote, "--sign", key, "--from-scratch"], store: publisher).status, 0)
            XCTAssertLessThan(try release().serial, SignedRelease.maxSerial)
        }
        for expires in ["106751991167300d", "3651d", "infd"] {
            let r = TestSupport.cli(["resign", remote, "--sign", key, "--expires", expires], store: publisher)
            XCTAssertEqual(r.status, 2, "\(expires): \(r.stderr)")
            XCTAssertTrue(r.stderr.contains("--expires"), r.stderr)
        }
        XCTAssertEqual(pull("intent@production", device: dir + "/device").status, 0)
    }

    /// Finding 3: a release signed for remote A, copied with A's manifest onto remote B (same
    /// key), does not move B's devices.
    func testAReleaseCopiedFromAnotherRemoteIsRefused() throws {
        let device = dir + "/device"
        XCTAssertEqual(pull("intent@production", device: device).status, 0)
        let other = dir + "/remote-a"
        addVersion("1.2.0", seed: 9, to: publisher)
        promote("1.2.0")
        XCTAssertEqual(TestSupport.cli(["push", other, "--sign", key, "--remote-id", "site-a"], store: publisher).status, 0)
        XCTAssertEqual(try SignedRelease.decode(TestSupport.read(other + "/release.json"), source: "a").remote, "site-a")
        let b = try release().remote
        XCTAssertNotNil(b)
        XCTAssertNotEqual(b, "site-a")
        let copy = Process()
        copy.executableURL = URL(fileURLWithPath: "/bin/cp")
        copy.arguments = ["-a", other + "/.", remote + "/"]
        try copy.run()
        copy.waitUntilExit()
        let r = pull("intent@production", device: device)
        XCTAssertEqual(r.status, 8, r.stderr)
        XCTAssertTrue(r.stderr.contains("is for remote site-a"), r.stderr)
        XCTAssertEqual(current(device), "1.0.0")
        // A remote keeps its id: a push naming another is refused.
        let rename = TestSupport.cli(["push", other, "--remote-id", "site-z"], store: publisher)
        XCTAssertNotEqual(rename.status, 0)
        XCTAssertTrue(rename.stderr.contains("site-a"), rename.stderr)
    }

    /// Finding 4 (device side, through the CLI): a damaged trust record stops the pull.
    func testADamagedTrustRecordStopsThePullInsteadOfDroppingTheFloor() throws {
        let device = dir + "/device"
        XCTAssertEqual(pull("intent@production", device: device).status, 0)
        let files = try FileSystem.listDirectory(device + "/store/trust")
        TestSupport.write(Array("{\"serial\":".utf8), to: device + "/store/trust/" + files[0])
        let r = pull("intent@1.1.0", device: device)
        XCTAssertNotEqual(r.status, 0)
        XCTAssertTrue(r.stderr.contains("trust record") && r.stderr.contains(files[0]), r.stderr)
        XCTAssertEqual(current(device), "1.0.0")
    }

    func sync(_ device: String, url: String? = nil, extra: [String] = []) -> TestSupport.Run {
        TestSupport.cli(["sync", url ?? nginx.url, "--to", device, "--follow", "intent@production", "--once", "--trust", pub,
                         "--log-format", "json"] + extra)
    }

    /// The daemon refuses an expired release, keeps the installed version, and `status` says why.
    func testSyncKeepsTheInstalledVersionOnAnExpiredReleaseAndStatusShowsIt() throws {
        let device = dir + "/sync-device"
        XCTAssertEqual(sync(device).status, 0)
        XCTAssertEqual(InstallDirectory(root: device + "/intent").current(), "1.0.0")
        promote("1.1.0")
        var signing = ReleaseSigning(keys: [try Ed25519PrivateKey.read(file: key)])
        let now = Int64(Date().timeIntervalSince1970)
        signing.now = { now }
        signing.validity = -60  // expired a minute before it was issued: what an old, unrenewed release looks like
        XCTAssertEqual(TestSupport.cli(["push", remote], store: publisher).status, 0)
        _ = try Store.open(at: publisher).signRelease(on: LocalBackend(root: remote), signing: signing)
        let r = sync(device)
        XCTAssertEqual(r.status, 1)
        XCTAssertTrue(r.stdout.contains("expired at"), r.stdout)
        XCTAssertEqual(InstallDirectory(root: device + "/intent").current(), "1.0.0")
        let status = try TestSupport.json(TestSupport.cli(["status", "--to", device, "--json"]))
        XCTAssertTrue(status["last_error"]?.stringValue?.contains("expired at") ?? false, "\(status)")
        XCTAssertEqual(TestSupport.cli(["resign", remote, "--sign", key], store: publisher).status, 0)
        XCTAssertEqual(sync(device).status, 0)
        XCTAssertEqual(InstallDirectory(root: device + "/intent").current(), "1.1.0")
    }

    /// Finding 2 (freeze): a server answers every conditional GET of the manifest with 304. The
    /// signed release names a version the cached manifest lacks, so the daemon fetches the
    /// manifest in full and installs it instead of reporting "up to date".
    func testAFrozenManifestDoesNotHideASignedRelease() throws {
        let proxy = try FaultProxy(upstream: nginx.port, mode: "freeze-manifest")
        let device = dir + "/sync-device"
        XCTAssertEqual(sync(device, url: proxy.url).status, 0)
        addVersion("1.2.0", seed: 5, to: publisher)
        promote("1.2.0")
        push(["--sign", key])
        let r = sync(device, url: proxy.url)
        XCTAssertEqual(r.status, 0, r.stdout)
        XCTAssertEqual(InstallDirectory(root: device + "/intent").current(), "1.2.0")
    }
}
