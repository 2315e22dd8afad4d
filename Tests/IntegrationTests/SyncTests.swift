import XCTest
@testable import SLMStoreKit
@testable import SLMFormats
@testable import SLMLocalStore
@testable import SLMRemote
@testable import SLMDevice
@testable import SLMPages
import SLMSynthetic
import SLMTestSupport

/// The sync daemon as a real child process against nginx on loopback: it converges, survives
/// SIGKILL at random moments, rides out server, data and disk faults, and runs alone.
final class SyncTests: XCTestCase {
    var dir = ""
    var publisher = ""
    var remote = ""
    var nginx: NginxServer!
    /// version -> file -> SHA-256, for checking what a device has installed.
    var expected: [String: [String: SHA256Digest]] = [:]
    /// When set, every push signs a release with this key and every daemon trusts its .pub.
    var signingKey: String?

    override func setUpWithError() throws {
        dir = TestSupport.scratch()
        publisher = dir + "/publisher"
        remote = dir + "/remote"
        nginx = try NginxServer(serving: remote)
    }

    override func tearDown() { nginx?.stop() }

    /// Adds a version whose weights are `size` bytes (seeded, so versions differ).
    func addVersion(_ v: String, size: Int, seed: UInt64) {
        let src = "\(dir)/src-\(v)"
        let weights = TestSupport.safetensors([("w", "BF16", [size / 2], TestSupport.bf16Like(size, seed: seed))])
        let config = Array("{\"version\": \"\(v)\"}\n".utf8)
        TestSupport.write(weights, to: src + "/model.safetensors")
        TestSupport.write(config, to: src + "/config.json")
        expected[v] = ["model.safetensors": SHA256Hasher.hash(weights), "config.json": SHA256Hasher.hash(config)]
        XCTAssertEqual(TestSupport.cli(["add", "intent@\(v)", src], store: publisher).status, 0)
    }

    func publish(production v: String) {
        let r = TestSupport.cli(["promote", "intent@\(v)", "production", "--skip-staging", "--allow-breaking"], store: publisher)
        XCTAssertTrue(r.status == 0 || r.stderr.contains("already holds"), r.stderr)
        XCTAssertEqual(TestSupport.cli(["push", remote] + (signingKey.map { ["--sign", $0] } ?? []), store: publisher).status, 0)
    }

    final class Daemon {
        let process = Process()
        let logPath: String

        init(_ args: [String], log: String) throws {
            logPath = log
            _ = FileManager.default.createFile(atPath: log, contents: nil)
            process.executableURL = URL(fileURLWithPath: TestSupport.binary)
            process.arguments = args
            process.standardOutput = FileHandle(forWritingAtPath: log)!
            process.standardError = process.standardOutput
            try process.run()
        }

        var events: [JSONValue] {
            ((try? String(contentsOfFile: logPath, encoding: .utf8)) ?? "").split(separator: "\n").compactMap { try? JSONValue.parse(String($0)) }
        }

        func kill9() { TestSupport.killAndReap(process) }
        func stop() { if process.isRunning { process.terminate(); process.waitUntilExit() } }
    }

    func daemon(_ device: String, extra: [String] = [], log: String? = nil) throws -> Daemon {
        try Daemon(["sync", nginx.url, "--to", device, "--follow", "intent@production", "--interval", "1s",
                    "--max-backoff", "2s", "--log-format", "json"] + (signingKey.map { ["--trust", $0 + ".pub"] } ?? []) + extra,
                   log: log ?? "\(dir)/daemon-\(FileSystem.randomHex(3)).log")
    }

    func waitFor(_ timeout: Double, _ condition: () -> Bool) -> Bool {
        let deadline = Date().addingTimeInterval(timeout)
        while Date() < deadline { if condition() { return true }; usleep(50_000) }
        return condition()
    }

    /// Checks that `current` is a complete version whose files have the expected SHA-256.
    func checkCurrent(_ device: String) -> (ok: Bool, version: String?) { Self.checkCurrent(device, expected) }

    static func checkCurrent(_ device: String, _ expected: [String: [String: SHA256Digest]]) -> (ok: Bool, version: String?) {
        let gateway = ModelGateway(source: .installed(root: device))
        guard let h = try? gateway.resolve("intent", "current") else { return (true, nil) }  // nothing installed yet
        guard let want = expected[h.version] else { return (false, h.version) }
        for (file, digest) in want where SHA256Hasher.hash(TestSupport.read(h.path(file))) != digest { return (false, h.version) }
        return (true, h.version)
    }

    /// #43: a round pulls the version id its plan chose from the manifest, without resolving the
    /// version's ref file again (here the remote has lost it: the install still happens).
    func testARoundPullsThePlannedVersionIDWithoutReadingItsRefAgain() throws {
        addVersion("2.1.0", size: 200_000, seed: 1)
        publish(production: "2.1.0")
        try FileManager.default.removeItem(atPath: remote + "/refs/intent/@versions/2.1.0")
        let r = TestSupport.cli(["sync", remote, "--to", dir + "/device", "--follow", "intent@production", "--once", "--device-id", "d"])
        XCTAssertEqual(r.status, 0, r.stdout + r.stderr)
        XCTAssertEqual(checkCurrent(dir + "/device").version, "2.1.0")
    }

    func testDaemonConvergesWithinAnIntervalDownloadingExactlyTheDiff() throws {
        addVersion("2.1.0", size: 3_000_000, seed: 1)
        publish(production: "2.1.0")
        let device = dir + "/device"
        let d = try daemon(device)
        defer { d.stop() }
        XCTAssertTrue(waitFor(20) { checkCurrent(device).version == "2.1.0" })
        // A fine-tune: same first half, new second half.
        let src = "\(dir)/src-2.2.0"
        let old = TestSupport.read("\(dir)/src-2.1.0/model.safetensors")
        var new = old
        let tail = TestSupport.bf16Like(old.count / 4, seed: 99)
        new.replaceSubrange((new.count - tail.count)..., with: tail)
        TestSupport.write(new, to: src + "/model.safetensors")
        TestSupport.write(TestSupport.read("\(dir)/src-2.1.0/config.json"), to: src + "/config.json")
        expected["2.2.0"] = ["model.safetensors": SHA256Hasher.hash(new), "config.json": expected["2.1.0"]!["config.json"]!]
        XCTAssertEqual(TestSupport.cli(["add", "intent@2.2.0", src], store: publisher).status, 0)
        let diff = try TestSupport.json(TestSupport.cli(["diff", "intent@2.1.0", "intent@2.2.0", "--json"], store: publisher))
        let published = Date()
        publish(production: "2.2.0")
        XCTAssertTrue(waitFor(20) { checkCurrent(device).version == "2.2.0" })
        XCTAssertLessThan(Date().timeIntervalSince(published), 8, "converged within a few 1-second intervals")
        // The log line follows the switch; wait for it rather than racing it.
        func updateEvent(from old: String, to new: String) -> JSONValue? {
            _ = waitFor(10) { d.events.contains { $0["event"]?.stringValue == "update" && $0["old"]?.stringValue == old && $0["new"]?.stringValue == new } }
            return d.events.last { $0["event"]?.stringValue == "update" && $0["old"]?.stringValue == old && $0["new"]?.stringValue == new }
        }
        let update = updateEvent(from: "2.1.0", to: "2.2.0")
        XCTAssertEqual(update?["chunk_bytes"]?.uint64Value, diff["bytes_to_fetch"]!.uint64Value!)
        XCTAssertTrue(checkCurrent(device).ok)
        // A rollback on the remote is followed back without downloading.
        XCTAssertEqual(TestSupport.cli(["rollback", "intent", "production"], store: publisher).status, 0)
        XCTAssertEqual(TestSupport.cli(["push", remote], store: publisher).status, 0)
        XCTAssertTrue(waitFor(20) { checkCurrent(device).version == "2.1.0" })
        let back = updateEvent(from: "2.2.0", to: "2.1.0")
        XCTAssertEqual(back?["bytes_downloaded"]?.uint64Value, 0)
        let status = try TestSupport.json(TestSupport.cli(["status", "--to", device, "--json"]))
        XCTAssertEqual(status["models"]?["intent"]?["current"]?.stringValue, "2.1.0")
        XCTAssertEqual(status["daemon_running"]?.boolValue, true)
    }

    /// A full fine-tune reaches a device as deltas against the version it runs; with --no-delta
    /// as full records. Both install the same bytes.
    func testAFineTuneArrivesAsDeltasOrWithNoDeltaAsFullRecords() throws {
        addVersion("2.1.0", size: 2_000_000, seed: 1)
        publish(production: "2.1.0")
        var new = TestSupport.read("\(dir)/src-2.1.0/model.safetensors")
        let dataStart = 8 + Int(new[0]) + Int(new[1]) << 8
        for i in stride(from: dataStart, to: new.count, by: 8) { new[i] ^= 1 }   // every 4th weight moves by one unit
        TestSupport.write(new, to: "\(dir)/src-2.2.0/model.safetensors")
        TestSupport.write(TestSupport.read("\(dir)/src-2.1.0/config.json"), to: "\(dir)/src-2.2.0/config.json")
        expected["2.2.0"] = ["model.safetensors": SHA256Hasher.hash(new), "config.json": expected["2.1.0"]!["config.json"]!]
        XCTAssertEqual(TestSupport.cli(["add", "intent@2.2.0", "\(dir)/src-2.2.0"], store: publisher).status, 0)
        var results: [String: JSONValue] = [:]
        for (device, extra) in [("with-deltas", [String]()), ("no-delta", ["--no-delta"])] {
            let path = "\(dir)/\(device)"
            let first = try daemon(path, extra: ["--once"] + extra)
            first.process.waitUntilExit()
            XCTAssertEqual(checkCurrent(path).version, "2.1.0")
        }
        publish(production: "2.2.0")
        for (device, extra) in [("with-deltas", [String]()), ("no-delta", ["--no-delta"])] {
            let path = "\(dir)/\(device)"
            let round = try daemon(path, extra: ["--once"] + extra)
            round.process.waitUntilExit()
            XCTAssertEqual(round.process.terminationStatus, 0, device)
            XCTAssertEqual(checkCurrent(path).version, "2.2.0", device)
            XCTAssertTrue(checkCurrent(path).ok, device)
            results[device] = round.events.last { $0["event"]?.stringValue == "update" }
        }
        let deltas = try XCTUnwrap(results["with-deltas"]), full = try XCTUnwrap(results["no-delta"])
        XCTAssertGreaterThan(deltas["chunks_from_deltas"]!.uint64Value!, 0)
        XCTAssertEqual(full["chunks_from_deltas"]?.uint64Value, 0)
        XCTAssertLessThan(2 * deltas["chunk_bytes"]!.uint64Value!, full["chunk_bytes"]!.uint64Value!)
    }

    /// With signed releases on, as a fleet that trusts its publisher runs.
    func testSurvivesSIGKILLAtRandomMomentsDuringPulls() throws {
        signingKey = dir + "/release-key"
        XCTAssertEqual(TestSupport.cli(["keygen", signingKey!]).status, 0)
        let versions = ["1.0.0", "2.0.0", "3.0.0"]
        for (i, v) in versions.enumerated() { addVersion(v, size: 3_000_000, seed: UInt64(100 + i)) }
        publish(production: "1.0.0")
        let device = dir + "/device"
        // A reader checks `current` continuously for the whole run.
        let stop = ManagedAtomicFlag(), bad = ManagedCounter(), checks = ManagedCounter()
        let want = expected
        let reader = Thread {
            while !stop.isSet {
                if !SyncTests.checkCurrent(device, want).ok { bad.add() }
                checks.add()
                usleep(5_000)
            }
        }
        reader.start()
        var rng = SplitMix(UInt64(ProcessInfo.processInfo.environment["SLMSTORE_SOAK_SEED"] ?? "7") ?? 7)
        // Benchmarks/soak raises this for the long run.
        let kills = Int(ProcessInfo.processInfo.environment["SLMSTORE_SOAK_KILLS"] ?? "") ?? 20
        var converged = 0
        for k in 0..<kills {
            let target = versions[(k + 1) % versions.count]
            publish(production: target)
            let d = try daemon(device, extra: ["--keep", "0", "--max-rate", "6M"])
            usleep(useconds_t(50_000 + rng.next() % 700_000))
            d.kill9()
            if k % 5 == 4 {
                // Every fifth restart runs to completion: it must converge on the target.
                let r = try daemon(device, extra: ["--once"])
                r.process.waitUntilExit()
                XCTAssertEqual(r.process.terminationStatus, 0, (try? String(contentsOfFile: r.logPath, encoding: .utf8)) ?? "")
                XCTAssertEqual(checkCurrent(device).version, target, "restart after kill \(k) converged")
                if checkCurrent(device).version == target { converged += 1 }
            }
        }
        let final = versions[kills % versions.count]
        publish(production: final)
        let d = try daemon(device, extra: ["--once"])
        d.process.waitUntilExit()
        stop.set()
        while !reader.isFinished { usleep(10_000) }
        XCTAssertEqual(d.process.terminationStatus, 0, (try? String(contentsOfFile: d.logPath, encoding: .utf8)) ?? "")
        XCTAssertEqual(checkCurrent(device).version, final)
        XCTAssertTrue(checkCurrent(device).ok)
        XCTAssertEqual(bad.value, 0, "a reader saw current pointing at an incomplete or wrong version")
        XCTAssertGreaterThan(checks.value, 50)
        XCTAssertEqual(TestSupport.cli(["verify"], store: device + "/.slmstore").status, 0)
        let leftovers = try FileSystem.listDirectory(device + "/intent").filter { $0.hasPrefix(".incoming") }
        XCTAssertEqual(leftovers, [])
        print("soak: \(kills) SIGKILLs during pulls, \(kills) restarts, \(converged) of \(kills / 5) checked restarts converged, \(checks.value) reader checks, \(bad.value) bad reads, bytes lost: \(bad.value == 0 && checkCurrent(device).ok ? 0 : -1)")
    }

    func testServerOutageCorruptionAndFullDiskNeverTouchTheInstalledVersion() throws {
        addVersion("1.0.0", size: 2_000_000, seed: 1)
        addVersion("1.1.0", size: 2_000_000, seed: 2)
        addVersion("1.2.0", size: 2_000_000, seed: 3)
        publish(production: "1.0.0")
        let device = dir + "/device"
        let once = { (extra: [String]) -> Int32 in
            let d = try! self.daemon(device, extra: ["--once"] + extra)
            d.process.waitUntilExit()
            return d.process.terminationStatus
        }
        XCTAssertEqual(once([]), 0)
        XCTAssertEqual(checkCurrent(device).version, "1.0.0")

        // 1. The server goes away mid-transfer, then comes back.
        publish(production: "1.1.0")
        let port = nginx.port
        nginx.stop()
        nginx = try NginxServer(serving: remote, port: port, limitRate: "400k")
        let d = try daemon(device)
        // Stop the server once chunk requests are under way (the pull's working directory exists).
        XCTAssertTrue(waitFor(10) { ((try? FileSystem.listDirectory(device + "/.slmstore/tmp")) ?? []).contains { $0.hasPrefix("pull-") } })
        usleep(300_000)
        nginx.stop()
        XCTAssertTrue(waitFor(10) { d.events.contains { $0["event"]?.stringValue == "error" } })
        XCTAssertEqual(checkCurrent(device).version, "1.0.0")
        XCTAssertTrue(checkCurrent(device).ok)
        nginx = try NginxServer(serving: remote, port: nginx.port)
        XCTAssertTrue(waitFor(30) { checkCurrent(device).version == "1.1.0" }, (try? String(contentsOfFile: d.logPath, encoding: .utf8)) ?? "")
        XCTAssertTrue(waitFor(10) { d.events.contains { $0["event"]?.stringValue == "recovered" } })
        d.stop()

        // 2. A corrupt byte in a pack on the server.
        publish(production: "1.2.0")
        let remoteStore = try Store.open(at: remote)
        let target = try remoteStore.readTree(try remoteStore.resolve("intent@1.2.0").object.tree)
        let index = try remoteStore.loadChunkIndex()
        let chunk = try target.file("model.safetensors")!.chunks.ref(at: 1).id
        let loc = index.location(of: chunk)!
        TestSupport.flipByte(in: remoteStore.packPath(loc.pack), at: loc.offset + 40)
        XCTAssertEqual(once([]), 1)
        XCTAssertEqual(checkCurrent(device).version, "1.1.0")
        XCTAssertTrue(checkCurrent(device).ok)
        let status = try TestSupport.json(TestSupport.cli(["status", "--to", device, "--json"]))
        XCTAssertTrue(status["last_error"]?.stringValue?.contains("served bad data") ?? false, "\(status)")
        XCTAssertGreaterThanOrEqual(status["consecutive_failures"]?.uint64Value ?? 0, 1)
        TestSupport.flipByte(in: remoteStore.packPath(loc.pack), at: loc.offset + 40)
        XCTAssertEqual(once([]), 0)
        XCTAssertEqual(checkCurrent(device).version, "1.2.0")

        // 3. A full disk: the device lives on a small tmpfs.
        let small = dir + "/small"
        try FileSystem.makeDirectories(small)
        guard mountTmpfs(small, size: "5m") else {
            throw XCTSkip("cannot mount a tmpfs here (not root?); disk-full case not run")
        }
        defer { unmount(small) }
        publish(production: "1.0.0")
        let tiny = small + "/device"
        let first = try daemon(tiny, extra: ["--once"])
        first.process.waitUntilExit()
        XCTAssertEqual(first.process.terminationStatus, 0, (try? String(contentsOfFile: first.logPath, encoding: .utf8)) ?? "")
        publish(production: "1.1.0")
        let full = try daemon(tiny, extra: ["--once"])
        full.process.waitUntilExit()
        XCTAssertEqual(full.process.terminationStatus, 1)
        XCTAssertTrue(full.events.contains { ($0["message"]?.stringValue ?? "").contains("not enough disk space") }, full.events.map { $0.canonicalString() }.joined())
        XCTAssertEqual(checkCurrent(tiny).version, "1.0.0")
        XCTAssertTrue(checkCurrent(tiny).ok)
        // Space comes back (the old version is dropped by hand): the daemon recovers.
        XCTAssertTrue(mountTmpfs(small, size: "16m", remount: true))
        let again = try daemon(tiny, extra: ["--once"])
        again.process.waitUntilExit()
        XCTAssertEqual(again.process.terminationStatus, 0, (try? String(contentsOfFile: again.logPath, encoding: .utf8)) ?? "")
        XCTAssertEqual(checkCurrent(tiny).version, "1.1.0")
        XCTAssertEqual(TestSupport.cli(["verify"], store: tiny + "/.slmstore").status, 0)
    }

    /// After the daemon prunes an old version and collects it, it holds no descriptor of a
    /// deleted pack, so the blocks are really freed (an open descriptor would keep them on disk).
    func testTheDaemonLetsGoOfPacksItsGcDeletes() throws {
        addVersion("1.0.0", size: 2_000_000, seed: 1)
        publish(production: "1.0.0")
        let device = dir + "/device"
        let d = try daemon(device, extra: ["--keep", "0"])
        defer { d.stop() }
        XCTAssertTrue(waitFor(20) { checkCurrent(device).version == "1.0.0" })
        addVersion("2.0.0", size: 2_000_000, seed: 2)
        publish(production: "2.0.0")
        XCTAssertTrue(waitFor(20) { d.events.contains { $0["event"]?.stringValue == "gc" } }, d.events.map { $0.canonicalString() }.joined())
        XCTAssertEqual(checkCurrent(device).version, "2.0.0")
        let fdDir = "/proc/\(d.process.processIdentifier)/fd"
        let open = try FileManager.default.contentsOfDirectory(atPath: fdDir).compactMap { try? FileManager.default.destinationOfSymbolicLink(atPath: "\(fdDir)/\($0)") }
        XCTAssertTrue(open.contains { $0.contains("/packs/") }, "the daemon reads packs through cached descriptors: \(open)")
        XCTAssertEqual(open.filter { $0.contains("(deleted)") }, [])
    }

    func testASecondDaemonOnTheSameDirectoryRefuses() throws {
        addVersion("1.0.0", size: 100_000, seed: 1)
        publish(production: "1.0.0")
        let device = dir + "/device"
        let first = try daemon(device)
        defer { first.stop() }
        XCTAssertTrue(waitFor(20) { checkCurrent(device).version == "1.0.0" })
        let second = TestSupport.cli(["sync", nginx.url, "--to", device, "--follow", "intent@production", "--once"])
        XCTAssertEqual(second.status, 4)
        XCTAssertTrue(second.stderr.contains("another slmstore sync is already running for \(device)"), second.stderr)
    }

    func testSIGTERMStopsTheDaemonCleanly() throws {
        addVersion("1.0.0", size: 100_000, seed: 1)
        publish(production: "1.0.0")
        let device = dir + "/device"
        let d = try daemon(device)
        XCTAssertTrue(waitFor(20) { checkCurrent(device).version == "1.0.0" })
        d.process.terminate()
        d.process.waitUntilExit()
        XCTAssertEqual(d.process.terminationStatus, 0)
        XCTAssertTrue(d.events.last?["event"]?.stringValue == "stop")
    }
}

func mountTmpfs(_ path: String, size: String, remount: Bool = false) -> Bool {
    let p = Process()
    p.executableURL = URL(fileURLWithPath: "/bin/mount")
    p.arguments = ["-t", "tmpfs", "-o", (remount ? "remount,size=" : "size=") + size, "tmpfs", path]
    p.standardError = FileHandle.nullDevice
    guard (try? p.run()) != nil else { return false }
    p.waitUntilExit()
    return p.terminationStatus == 0
}

func unmount(_ path: String) {
    let p = Process()
    p.executableURL = URL(fileURLWithPath: "/bin/umount")
    p.arguments = ["-l", path]
    try? p.run()
    p.waitUntilExit()
}
