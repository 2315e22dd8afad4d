import XCTest
@testable import SLMStoreKit
@testable import SLMFormats
@testable import SLMLocalStore
@testable import SLMRemote
@testable import SLMDevice
import SLMTestSupport

/// #42, trust as a class: everything someone other than the publisher can write (stage refs,
/// rollout records and the remote id on the remote; reports under reports/; trees a remote
/// serves) is forged here, and nothing the publisher signs or the fleet decides changes.
final class TrustClassTests: XCTestCase {
    var dir = ""
    var publisher = ""
    var remote = ""
    var key = "", pub = ""

    override func setUpWithError() throws {
        dir = TestSupport.scratch()
        publisher = dir + "/publisher"
        remote = dir + "/remote"
        key = dir + "/keys/release"
        pub = key + ".pub"
        XCTAssertEqual(TestSupport.cli(["keygen", key]).status, 0)
        add("n@1.0.0", seed: 1)
        add("n@1.1.0", seed: 2)
        add("other@1.0.0", seed: 3)
        promote("n@1.0.0")
        promote("n@1.1.0")
        push(["--sign", key])
    }

    func add(_ label: String, seed: UInt64, store: String? = nil) {
        let src = "\(dir)/src-\(label)-\(seed)"
        TestSupport.write(TestSupport.safetensors([("w", "BF16", [40_000], TestSupport.bf16Like(80_000, seed: seed))]), to: src + "/model.safetensors")
        let r = TestSupport.cli(["add", label, src], store: store ?? publisher)
        XCTAssertEqual(r.status, 0, r.stderr)
    }

    func promote(_ label: String) {
        let r = TestSupport.cli(["promote", label, "production", "--skip-staging", "--allow-breaking"], store: publisher)
        XCTAssertEqual(r.status, 0, r.stderr)
    }

    @discardableResult
    func push(_ extra: [String], store: String? = nil) -> TestSupport.Run {
        let r = TestSupport.cli(["push", remote, "--no-web", "--json"] + extra, store: store ?? publisher)
        XCTAssertEqual(r.status, 0, r.stderr)
        return r
    }

    func release() throws -> SignedRelease { try SignedRelease.decode(TestSupport.read(remote + "/release.json"), source: "release.json") }

    func versionID(_ label: String) throws -> SHA256Digest { try Store.open(at: publisher).resolve(try VersionRef.parse(label)).id }

    /// A device that trusts the key follows n@production from the remote.
    func deviceFollows(_ device: String) -> String? {
        let r = TestSupport.cli(["pull", remote, "n@production", "--to", device + "/install", "--trust", pub], store: device + "/store")
        XCTAssertEqual(r.status, 0, r.stderr)
        return InstallDirectory(root: device + "/install").current()
    }

    /// Whoever can write the remote moves n's stage back to 1.0.0; the next push rebuilds the
    /// manifest from the remote's refs, so the manifest says 1.0.0 too.
    func plantStageRollback() throws {
        TestSupport.write(Array((try versionID("n@1.0.0").hex + "\n").utf8), to: remote + "/" + RemoteLayout.stageRefPath(try ModelName("n"), "production"))
    }

    /// A rollout record on the remote sending every device to 1.0.0.
    func plantRollout() throws {
        let record: JSONValue = .object(["by": .string("attacker"), "id": .string(try versionID("n@1.0.0").hex), "percent": .int(100), "reset": .int(0),
                                         "serial": .int(99), "state": .string("active"), "time": .string(Timestamp.now()), "version": .string("1.0.0")])
        TestSupport.write(record.canonicalBytes(), to: remote + "/" + RemoteLayout.registryPath("n", "@rollouts/production"))
        // Any push that touches n (here the attacker's own, unsigned) lists it in the manifest.
        let attacker = dir + "/attacker"
        add("n@9.0.0", seed: 9, store: attacker)
        XCTAssertEqual(TestSupport.cli(["push", remote, "--no-web"], store: attacker).status, 0)
    }

    // MARK: the publisher signs only its own store's state

    func testAStageRefPlantedOnTheRemoteIsNotSignedByARoutinePushOfAnotherModel() throws {
        XCTAssertEqual(deviceFollows(dir + "/device"), "1.1.0")
        try plantStageRollback()
        for extra in [[String](), ["--from-scratch"]] {
            let r = push(["other@1.0.0", "--sign", key] + extra)
            XCTAssertEqual(try release().models["n"]?.stages["production"], "1.1.0", "\(extra)")
            let overridden = try TestSupport.json(r)["release"]?["overridden"]?.arrayValue?.compactMap(\.stringValue) ?? []
            XCTAssertTrue(overridden.contains { $0.hasPrefix("n@production: the remote names 1.0.0, signed 1.1.0") }, "\(overridden)")
            XCTAssertTrue(r.stderr.contains("not signed as the remote states it"), r.stderr)
        }
        XCTAssertEqual(deviceFollows(dir + "/device"), "1.1.0", "the device did not go back")
    }

    func testARolloutRecordPlantedOnTheRemoteIsNotSigned() throws {
        XCTAssertEqual(deviceFollows(dir + "/device"), "1.1.0")
        try plantRollout()
        push(["other@1.0.0", "--sign", key])
        // The manifest lists the planted rollout (it is rebuilt from the remote's records)...
        let manifest = try Manifest.decode(TestSupport.read(remote + "/manifest.json"), source: "m")
        XCTAssertEqual(manifest.models["n"]?.rollouts["production"]?.version, "1.0.0")
        // ...but the release does not, so trusting devices ignore it.
        XCTAssertNil(try release().models["n"]?.rollouts["production"])
        let r = TestSupport.cli(["sync", remote, "--to", dir + "/dev", "--follow", "n@production", "--once", "--trust", pub, "--device-id", "d"])
        XCTAssertEqual(r.status, 0, r.stdout + r.stderr)
        XCTAssertEqual(InstallDirectory(root: dir + "/dev/n").current(), "1.1.0")
        XCTAssertEqual(TestSupport.cli(["resign", remote, "--sign", key], store: publisher).status, 0)
        XCTAssertNil(try release().models["n"]?.rollouts["production"])
        XCTAssertEqual(try release().models["n"]?.stages["production"], "1.1.0")
    }

    /// `fleet --apply --sign` pushes what it changed, signed: the planted stage and rollout of
    /// another model are not in it.
    func testFleetApplySignsNoPlantedStateOfAnotherModel() throws {
        add("other@1.1.0", seed: 4)
        promote("other@1.0.0")
        let r = TestSupport.cli(["rollout", "other@1.1.0", "production", "--percent", "50", "--halt-on-failure", "0%", "--min-devices", "1",
                                 "--skip-staging"], store: publisher)
        XCTAssertEqual(r.status, 0, r.stderr)
        push(["--sign", key])
        // One enrolled device rejected other@1.1.0: the rollout is halted and pushed, signed.
        let deviceKey = try Ed25519PrivateKey.generate()
        let report = DeviceReport(device: "edge-1", time: Timestamp.now(),
                                  models: ["other": .init(installed: "1.0.0", target: "1.1.0", state: .rejected)], counter: 1)
        TestSupport.write(try XCTUnwrap(try report.signed(by: deviceKey)), to: remote + "/reports/edge-1.json")
        XCTAssertEqual(TestSupport.cli(["device", "enroll", remote, "edge-1", "--key", deviceKey.publicKey.hex], store: publisher).status, 0)
        try plantStageRollback()
        try plantRollout()
        let applied = TestSupport.cli(["fleet", remote, "--apply", "--sign", key, "--json"], store: publisher)
        XCTAssertEqual(applied.status, 0, applied.stderr)
        XCTAssertEqual(try TestSupport.json(applied)["halted"]?.arrayValue?.count, 1)
        XCTAssertEqual(try release().models["n"]?.stages["production"], "1.1.0")
        XCTAssertNil(try release().models["n"]?.rollouts["production"])
        XCTAssertEqual(try release().devices?.count, 1, "the enrolled set is named in the release")
        XCTAssertEqual(SHA256Hasher.hash(TestSupport.read(remote + "/devices.json")), try release().devices?.sha256)
    }

    /// A remote id planted in the manifest is never adopted: not by the store that created the
    /// remote (it recorded the id at its first push), nor by a store that never pushed there
    /// (it must confirm the id).
    func testAPlantedRemoteIDIsRefusedByEverySigningCommand() throws {
        let bytes = TestSupport.read(remote + "/manifest.json")
        let real = try XCTUnwrap(try Manifest.decode(bytes, source: "m").remoteID)
        let planted = String(decoding: bytes, as: UTF8.self).replacingOccurrences(of: real, with: "site-b")
        TestSupport.write(Array(planted.utf8), to: remote + "/manifest.json")
        let releaseBefore = TestSupport.read(remote + "/release.json")
        for args in [["push", remote, "other@1.0.0", "--sign", key], ["push", remote, "--sign", key, "--from-scratch"]] {
            let r = TestSupport.cli(args, store: publisher)
            XCTAssertNotEqual(r.status, 0, "\(args)")
            XCTAssertTrue(r.stderr.contains("site-b") && r.stderr.contains(real), r.stderr)
            XCTAssertEqual(TestSupport.read(remote + "/release.json"), releaseBefore)
        }
        // A fresh unsigned remote whose manifest someone gave another remote's id: a second
        // publisher store that never pushed there refuses to sign for it until told the id.
        let fresh = dir + "/fresh"
        XCTAssertEqual(TestSupport.cli(["push", fresh, "--no-web"], store: publisher).status, 0)
        let freshBytes = TestSupport.read(fresh + "/manifest.json")
        let freshID = try XCTUnwrap(try Manifest.decode(freshBytes, source: "m").remoteID)
        TestSupport.write(Array(String(decoding: freshBytes, as: UTF8.self).replacingOccurrences(of: freshID, with: "site-b").utf8), to: fresh + "/manifest.json")
        let second = dir + "/second"
        add("x@1.0.0", seed: 1, store: second)
        let refused = TestSupport.cli(["push", fresh, "--no-web", "--sign", key], store: second)
        XCTAssertEqual(refused.status, 8, refused.stderr)
        XCTAssertTrue(refused.stderr.contains("site-b") && refused.stderr.contains("--remote-id site-b"), refused.stderr)
        XCTAssertFalse(FileSystem.exists(fresh + "/release.json"))
        // The store that created it refuses the push outright: its record names the real id.
        let creator = TestSupport.cli(["push", fresh, "--no-web"], store: publisher)
        XCTAssertEqual(creator.status, 4, creator.stderr)
        XCTAssertTrue(creator.stderr.contains(freshID), creator.stderr)
    }

    // MARK: reports are evidence from enrolled devices

    func sync(_ device: String, id: String? = nil, _ extra: [String] = []) -> TestSupport.Run {
        TestSupport.cli(["sync", remote, "--to", "\(dir)/\(device)", "--follow", "n@production", "--once", "--store", "\(dir)/\(device)-store"]
                        + (id.map { ["--device-id", $0] } ?? []) + extra)
    }

    func fleet(_ extra: [String] = []) throws -> JSONValue {
        let r = TestSupport.cli(["fleet", remote, "--json"] + extra, store: publisher)
        XCTAssertEqual(r.status, 0, r.stderr)
        return try TestSupport.json(r)
    }

    func refused(_ view: JSONValue, _ reason: String) -> [JSONValue] {
        (view["refused"]?.arrayValue ?? []).filter { $0["reason"]?.stringValue == reason }
    }

    func testADeviceWritingUnderAnotherDevicesIdIsAForgeryAndCountsForNobody() throws {
        XCTAssertEqual(sync("victim", id: "victim").status, 0)
        XCTAssertEqual(sync("mallory", id: "mallory").status, 0)
        XCTAssertEqual(TestSupport.cli(["device", "enroll", remote, "victim", "mallory"], store: publisher).status, 0)
        XCTAssertEqual(try fleet()["devices"]?.int64Value, 2)
        // Mallory runs a second daemon claiming the victim's id: the report lands in the
        // victim's file, signed by Mallory's key.
        XCTAssertEqual(TestSupport.cli(["sync", remote, "--to", "\(dir)/mallory", "--follow", "n@production", "--once", "--store", "\(dir)/mallory-store",
                                        "--device-id", "victim"]).status, 0)
        let view = try fleet()
        XCTAssertEqual(view["devices"]?.int64Value, 1, "only Mallory's own report counts")
        XCTAssertEqual(refused(view, "forged").first?["file"]?.stringValue, "reports/victim.json")
        // A copy of Mallory's genuine report under five more names counts once.
        for n in 0..<5 { try FileManager.default.copyItem(atPath: remote + "/reports/mallory.json", toPath: remote + "/reports/m\(n).json") }
        let copies = try fleet()
        XCTAssertEqual(copies["devices"]?.int64Value, 1)
        XCTAssertEqual(refused(copies, "misnamed").count, 5)
    }

    func testFutureDatedOldAndJunkReportsNeitherCountNorStopTheHalt() throws {
        add("n@1.2.0", seed: 5)
        XCTAssertEqual(TestSupport.cli(["rollout", "n@1.2.0", "production", "--percent", "50", "--halt-on-failure", "10%", "--min-devices", "2",
                                        "--skip-staging"], store: publisher).status, 0)
        push(["--sign", key])
        var keys: [String: Ed25519PrivateKey] = [:]
        func report(_ id: String, state: DeviceReport.State, time: String, counter: UInt64 = 1) throws {
            let r = DeviceReport(device: id, time: time, models: ["n": .init(installed: state == .installed ? "1.2.0" : "1.1.0", target: "1.2.0", state: state)],
                                 counter: counter)
            TestSupport.write(try XCTUnwrap(try r.signed(by: keys[id]!)), to: "\(remote)/reports/\(id).json")
        }
        for id in ["a", "b", "c", "d"] {
            keys[id] = try Ed25519PrivateKey.generate()
            XCTAssertEqual(TestSupport.cli(["device", "enroll", remote, id, "--key", keys[id]!.publicKey.hex], store: publisher).status, 0)
        }
        // Two stale rejections (1970) and one from the future: none of them may halt it.
        try report("a", state: .rejected, time: "1970-01-01T00:00:00Z")
        try report("b", state: .rejected, time: "1970-01-01T00:00:00Z")
        try report("c", state: .rejected, time: "2099-01-01T00:00:00Z")
        try report("d", state: .installed, time: Timestamp.now())
        // Junk past what a run reads, and a FIFO where a report should be.
        let junk = remote + "/reports"
        for n in 0..<(Fleet.maxOtherReads + 50) { TestSupport.write(Array("x".utf8), to: "\(junk)/junk-\(n).json") }
        XCTAssertEqual(mkfifo("\(junk)/fifo.json", 0o644), 0)
        XCTAssertEqual(mkfifo("\(junk)/a.json.tmp", 0o644), 0)
        let started = Date()
        var view = try fleet(["--apply", "--sign", key])
        XCTAssertLessThan(Date().timeIntervalSince(started), 60, "the FIFO did not block")
        XCTAssertEqual(view["halted"]?.arrayValue?.count, 0, "\(view["halted"] ?? .null)")
        XCTAssertEqual(refused(view, "future").count, 1)
        XCTAssertEqual(view["silent_devices"]?.arrayValue?.count, 2)
        XCTAssertGreaterThan(view["skipped"]?.int64Value ?? 0, 0)
        XCTAssertTrue(refused(view, "damaged").contains { $0["detail"]?.stringValue?.contains("not a regular file") ?? false }, "the FIFO is listed")
        // Two fresh rejections from enrolled devices halt it, junk and all.
        try report("a", state: .rejected, time: Timestamp.now(), counter: 2)
        try report("b", state: .rejected, time: Timestamp.now(), counter: 2)
        view = try fleet(["--apply", "--sign", key])
        XCTAssertEqual(view["halted"]?.arrayValue?.count, 1, "\(view)")
    }

    func testPushDeltasForTheFleetUseOnlyVersionsEnrolledDevicesRun() throws {
        // An unenrolled report says some device runs other@1.0.0 (as do 1000 more, forged):
        // no delta set is built for it.
        let fake = try Ed25519PrivateKey.generate()
        let r = DeviceReport(device: "ghost", time: Timestamp.now(), models: ["n": .init(installed: "1.0.0", target: "1.1.0", state: .pending)], counter: 1)
        TestSupport.write(try XCTUnwrap(try r.signed(by: fake)), to: remote + "/reports/ghost.json")
        add("n@1.2.0", seed: 6)
        let pushed = try TestSupport.json(push(["--deltas-for-fleet", "n@1.2.0"]))
        XCTAssertFalse((pushed["delta_sets"]?.arrayValue ?? []).contains { $0.stringValue?.hasSuffix("<- n@1.0.0") ?? false }, "\(pushed)")
    }

    // MARK: devices

    func testARejectedFirstInstallLeavesNoCurrentAndReportsRejected() throws {
        let r = sync("fresh", id: "fresh", ["--health-check", "false", "--keep", "1"])
        XCTAssertEqual(r.status, 0, r.stdout + r.stderr)
        XCTAssertTrue(r.stdout.contains("back on nothing"), r.stdout)
        XCTAssertNil(InstallDirectory(root: dir + "/fresh/n").current(), "nothing runs rather than the rejected version")
        let report = try DeviceReport.decode(TestSupport.read(remote + "/reports/fresh.json"), source: "r")
        XCTAssertEqual(report.models["n"]?.state, .rejected)
        XCTAssertNil(report.models["n"]?.installed)
        XCTAssertEqual(report.models["n"]?.target, "1.1.0")
    }

    func testADeviceKeyIsMadeOnceOnlyItsOwnerReadsAndSignsEveryReport() throws {
        XCTAssertEqual(sync("k").status, 0)
        let keyPath = dir + "/k/.slmstore-device-key"
        var st = stat()
        XCTAssertEqual(stat(keyPath, &st), 0)
        XCTAssertEqual(st.st_mode & 0o777, 0o600)
        let file = try XCTUnwrap(try FileSystem.listDirectory(remote + "/reports").first)
        let first = try SignedDeviceReport.decode(TestSupport.read(remote + "/reports/" + file), source: "r")
        XCTAssertTrue(first.signatureValid)
        XCTAssertEqual(sync("k").status, 0)
        let second = try SignedDeviceReport.decode(TestSupport.read(remote + "/reports/\(first.report.device).json"), source: "r")
        XCTAssertEqual(first.key, second.key)
        XCTAssertGreaterThan(second.report.counter, first.report.counter)
        let shown = try TestSupport.json(TestSupport.cli(["device", "show", "--to", dir + "/k", "--json"]))
        XCTAssertEqual(shown["key"]?.stringValue, first.key?.hex)
        XCTAssertEqual(shown["device"]?.stringValue, first.report.device)
    }

    /// A tree listing one chunk the device already holds tens of thousands of times installs
    /// gigabytes from nothing downloaded: refused before install by the repeat rule.
    func testATreeRepeatingAHeldChunkIsRefusedBeforeAnythingIsInstalled() throws {
        let device = dir + "/rep"
        XCTAssertEqual(TestSupport.cli(["pull", remote, "n@1.0.0", "--to", device + "/install"], store: device + "/store").status, 0)
        let store = try Store.open(at: publisher)
        let v1 = try store.resolve(try VersionRef.parse("n@1.0.0"))
        let chunk = try XCTUnwrap(try store.readTree(v1.object.tree).files.first?.chunks.ref(at: 0))
        let count = 40_000
        let file = FileEntry(path: "model.bin", size: UInt64(chunk.rawLength) * UInt64(count), sha256: SHA256Hasher.hash([]),
                             chunks: Array(repeating: chunk, count: count), safetensors: nil)
        let treeBytes = try TreeObject(files: [file]).encoded()
        let treeID = SHA256Hasher.hash(treeBytes)
        let version = VersionObject(name: "n", version: try SemVer("6.6.6"), tree: treeID, parent: nil, created: Timestamp.now(), addedBy: "x", tool: "x")
        let versionBytes = version.encoded()
        let versionID = SHA256Hasher.hash(versionBytes)
        TestSupport.write(treeBytes, to: remote + "/" + RemoteLayout.objectPath(treeID))
        TestSupport.write(versionBytes, to: remote + "/" + RemoteLayout.objectPath(versionID))
        TestSupport.write(Array((versionID.hex + "\n").utf8), to: remote + "/refs/n/@versions/6.6.6")
        let r = TestSupport.cli(["pull", remote, "n@6.6.6", "--to", device + "/install"], store: device + "/store")
        XCTAssertNotEqual(r.status, 0)
        XCTAssertTrue(r.stderr.contains("distinct chunks") && r.stderr.contains("--max-expansion"), r.stderr)
        XCTAssertEqual(InstallDirectory(root: device + "/install").current(), "1.0.0")
        XCTAssertNil(InstallDirectory(root: device + "/install").installedID(of: "6.6.6"))
    }

    /// The remote's token goes to the remote's own origin only: a report URL on another host
    /// (or port) gets none; one on the remote's origin gets it.
    func testTheRemotesTokenIsNotSentToAReportURLOnAnotherHost() throws {
        let nginx = try NginxServer(serving: remote)
        defer { nginx.stop() }
        let log = dir + "/sink.log"
        let elsewhere = try FaultProxy(upstream: nginx.port, mode: "redirect-writes", log: log)
        let token = "tok-\(FileSystem.randomHex(8))"
        func round(_ remoteURL: String, report: String) -> String {
            try? FileManager.default.removeItem(atPath: log)
            let r = TestSupport.cli(["sync", remoteURL, "--to", dir + "/dev", "--follow", "n@production", "--once", "--device-id", "d",
                                     "--store", dir + "/dev-store", "--report-url", report], environment: ["SLMSTORE_TOKEN": token])
            XCTAssertEqual(r.status, 0, r.stdout + r.stderr)
            return ((try? String(contentsOfFile: log, encoding: .utf8)) ?? "")
        }
        let other = round(nginx.url, report: elsewhere.url + "/sink/reports")
        XCTAssertTrue(other.contains("SINK PUT /sink/reports/d.json"), other)
        XCTAssertTrue(other.contains("auth=no"), "the remote's token went to another host: \(other)")
        // The same origin as the remote (the proxy serves both): the token goes, as configured.
        let same = round(elsewhere.url, report: elsewhere.url + "/sink/reports")
        XCTAssertTrue(same.contains("auth=yes"), same)
    }

    // MARK: records a store keeps

    func testVerifyFailsOnADamagedRolloutRegistryOrDeltaSetRecordAndListingsNameIt() throws {
        let store = try Store.open(at: publisher)
        let id = try versionID("n@1.1.0")
        let damagedFiles = [store.registryDirectory + "/n/@rollouts/production", store.registryDirectory + "/n/@history.jsonl",
                            "\(store.deltasDirectory)/\(id.hex).\(try versionID("n@1.0.0").hex)"]
        for path in damagedFiles {
            let original = FileSystem.exists(path) ? TestSupport.read(path) : nil
            TestSupport.write(Array("{\"garbage".utf8), to: path)
            let v = TestSupport.cli(["verify", "--json"], store: publisher)
            XCTAssertEqual(v.status, 5, "\(path): \(v.stdout)")
            XCTAssertTrue(try TestSupport.json(v)["problems"]?.arrayValue?.contains { $0["path"]?.stringValue == path } ?? false, v.stdout)
            let ls = TestSupport.cli(["ls"], store: publisher)
            XCTAssertEqual(ls.status, 0, ls.stderr)
            XCTAssertTrue(ls.stdout.contains("1.1.0"), ls.stdout)
            let show = TestSupport.cli(["show", "n@1.1.0"], store: publisher)
            XCTAssertEqual(show.status, 0, show.stderr)
            if path.contains("@rollouts") { XCTAssertTrue(ls.stderr.contains(path) && show.stderr.contains(path), ls.stderr + show.stderr) }
            if let original { TestSupport.write(original, to: path) } else { FileSystem.remove(path) }
        }
        XCTAssertEqual(TestSupport.cli(["verify"], store: publisher).status, 0)
    }
}
