import XCTest
@testable import SLMStoreKit
@testable import SLMFormats
@testable import SLMLocalStore
@testable import SLMRemote
@testable import SLMDevice
@testable import SLMPages
import SLMSynthetic
import SLMTestSupport

/// Staged rollouts and on-device health checks: a simulated fleet of 200 device directories on
/// one remote (one real sync round per device), health checks that fail, time out or are killed.
final class RolloutTests: XCTestCase {
    var dir = ""
    var publisher = ""
    var remote = ""
    let fleetSize = 200

    override func setUp() {
        dir = TestSupport.scratch()
        publisher = dir + "/publisher"
        remote = dir + "/remote"
    }

    func cli(_ args: [String], store: String? = nil) {
        let r = TestSupport.cli(args, store: store ?? publisher)
        XCTAssertEqual(r.status, 0, "\(args): \(r.stderr)")
    }

    func add(_ ref: String, seed: UInt64) {
        let src = "\(dir)/src-\(ref)"
        TestSupport.write(TestSupport.random(20_000, seed: seed), to: src + "/weights.bin")
        cli(["add", ref, src])
    }

    /// One sync round of device `i` (its own install directory and store), in process.
    @discardableResult
    func round(_ i: Int, follow: [String] = ["m"]) throws -> [String: String] {
        var o = SyncOptions(remote: remote, installRoot: "\(dir)/fleet/dev-\(i)", follow: try follow.map { (try ModelName($0), "production") })
        o.deviceID = "device-\(i)"
        let daemon = try SyncDaemon(options: o)
        daemon.emit = { _ in }
        XCTAssertTrue(daemon.run(once: true), "device \(i)")
        var out: [String: String] = [:]
        for m in follow { out[m] = InstallDirectory(root: "\(dir)/fleet/dev-\(i)/\(m)").current() }
        return out
    }

    func fleet(on version: String, model: String = "m", follow: [String] = ["m"]) throws -> Set<Int> {
        var on = Set<Int>()
        for i in 0..<fleetSize where try round(i, follow: follow)[model] == version { on.insert(i) }
        return on
    }

    func testAFleetFollowsARolloutByShareRaisesItAndReturnsOnHalt() throws {
        add("m@1.0.0", seed: 1)
        cli(["promote", "m@1.0.0", "production", "--skip-staging"])
        cli(["push", remote, "--no-web"])
        XCTAssertEqual(try fleet(on: "1.0.0").count, fleetSize)

        add("m@1.1.0", seed: 2)
        cli(["rollout", "m@1.1.0", "production", "--percent", "10", "--skip-staging"])
        cli(["push", remote, "--no-web"])
        let tenth = try fleet(on: "1.1.0")
        // Binomial(200, 0.1): mean 20, standard deviation 4.2; these bounds are 3.5 deviations out.
        XCTAssertTrue((6...35).contains(tenth.count), "\(tenth.count) devices took a 10% rollout")
        for i in 0..<fleetSize {
            XCTAssertEqual(tenth.contains(i), RolloutSlice.includes(device: "device-\(i)", model: "m", version: "1.1.0", percent: 10))
        }

        cli(["rollout", "m@1.1.0", "production", "--percent", "50", "--skip-staging"])
        cli(["push", remote, "--no-web"])
        let half = try fleet(on: "1.1.0")
        XCTAssertTrue(tenth.isSubset(of: half), "raising the share keeps every device that had it")
        XCTAssertTrue((75...125).contains(half.count), "\(half.count) devices at 50%")

        cli(["rollout", "m", "production", "--halt", "--reason", "error rate up"])
        cli(["push", remote, "--no-web"])
        XCTAssertEqual(try fleet(on: "1.0.0").count, fleetSize, "a halt brings every device back")

        cli(["rollout", "m@1.1.0", "production", "--percent", "100", "--skip-staging"])
        cli(["push", remote, "--no-web"])
        XCTAssertEqual(try fleet(on: "1.1.0").count, fleetSize, "a completed rollout reaches every device")

        let history = try TestSupport.json(TestSupport.cli(["history", "m", "--json"], store: publisher))["history"]!.arrayValue!
        let actions = history.compactMap { $0["action"]?.stringValue }
        XCTAssertEqual(Array(actions.suffix(4)), ["rollout 10%", "rollout 50%", "halt", "promote"])
    }

    func testTwoModelsRollingOutAtOnceUseIndependentSlices() throws {
        for model in ["a", "b"] {
            add("\(model)@1.0.0", seed: 1)
            cli(["promote", "\(model)@1.0.0", "production", "--skip-staging"])
            add("\(model)@1.1.0", seed: 2)
        }
        cli(["push", remote, "--no-web"])
        for model in ["a", "b"] { cli(["rollout", "\(model)@1.1.0", "production", "--percent", "50", "--skip-staging"]) }
        cli(["push", remote, "--no-web"])
        var onA = Set<Int>(), onB = Set<Int>()
        for i in 0..<fleetSize {
            let current = try round(i, follow: ["a", "b"])
            if current["a"] == "1.1.0" { onA.insert(i) }
            if current["b"] == "1.1.0" { onB.insert(i) }
        }
        let both = onA.intersection(onB).count
        // Independent halves overlap on about a quarter of the fleet; the same slice would overlap fully.
        XCTAssertTrue((25...75).contains(both), "\(both) devices in both rollouts (a: \(onA.count), b: \(onB.count))")
    }

    func testLsShowsTheSplit() throws {
        add("m@1.0.0", seed: 1)
        cli(["promote", "m@1.0.0", "production", "--skip-staging"])
        add("m@1.1.0", seed: 2)
        cli(["rollout", "m@1.1.0", "production", "--percent", "25", "--skip-staging"])
        let ls = TestSupport.cli(["ls", "m"], store: publisher)
        XCTAssertTrue(ls.stdout.contains("production 25%"), ls.stdout)
        let show = TestSupport.cli(["show", "m@1.0.0"], store: publisher)
        XCTAssertTrue(show.stdout.contains("production: 1.1.0 for 25% of devices, 1.0.0 for the rest"), show.stdout)
        let bad = TestSupport.cli(["rollout", "m@1.1.0", "production", "--percent", "0", "--skip-staging"], store: publisher)
        XCTAssertEqual(bad.status, 2, bad.stderr)
    }

    // MARK: Health checks (the CLI daemon)

    func publishTwoVersions() {
        add("m@1.0.0", seed: 1)
        cli(["promote", "m@1.0.0", "production", "--skip-staging"])
        cli(["push", remote, "--no-web"])
    }

    /// A device that installed 1.0.0 (its check passed), then 1.1.0 published to production.
    func deviceOnFirstVersionWithSecondPublished() throws -> String {
        publishTwoVersions()
        let device = dir + "/device"
        XCTAssertEqual(sync(device, check: "true").status, 0)
        add("m@1.1.0", seed: 2)
        cli(["promote", "m@1.1.0", "production", "--skip-staging"])
        cli(["push", remote, "--no-web"])
        return device
    }

    func sync(_ device: String, check: String, extra: [String] = []) -> TestSupport.Run {
        TestSupport.cli(["sync", remote, "--to", device, "--follow", "m@production", "--once", "--health-check", check] + extra)
    }

    func testAFailingHealthCheckSwitchesBackAndIsNotRetried() throws {
        publishTwoVersions()
        let device = dir + "/device"
        let marker = dir + "/checks"
        let check = "echo $SLMSTORE_NEW_VERSION >> \(marker); test \"$SLMSTORE_NEW_VERSION\" != 1.1.0"
        XCTAssertEqual(sync(device, check: check).status, 0)
        add("m@1.1.0", seed: 2)
        cli(["promote", "m@1.1.0", "production", "--skip-staging"])
        cli(["push", remote, "--no-web"])
        let r = sync(device, check: check)
        XCTAssertTrue(r.stdout.contains("failed its health check"), r.stdout)
        XCTAssertEqual(InstallDirectory(root: device + "/m").current(), "1.0.0")
        let status = try TestSupport.json(TestSupport.cli(["status", "--to", device, "--json"]))
        XCTAssertEqual(status["models"]?["m"]?["rejected"]?.arrayValue?.compactMap(\.stringValue), ["1.1.0"])
        _ = sync(device, check: check)
        XCTAssertEqual(InstallDirectory(root: device + "/m").current(), "1.0.0")
        let runs = String(decoding: TestSupport.read(marker), as: UTF8.self).split(separator: "\n")
        XCTAssertEqual(runs, ["1.0.0", "1.1.0"], "the rejected version is not checked again")
    }

    func testAHealthCheckThatHangsIsStoppedAtItsTimeout() throws {
        let device = try deviceOnFirstVersionWithSecondPublished()
        let start = Date()
        let r = sync(device, check: "sleep 30", extra: ["--health-timeout", "1s"])
        XCTAssertLessThan(Date().timeIntervalSince(start), 15)
        XCTAssertTrue(r.stdout.contains("did not finish within 1 s"), r.stdout)
        XCTAssertEqual(InstallDirectory(root: device + "/m").current(), "1.0.0")
    }

    func testAKillDuringTheHealthCheckEndsOnAVersionThatPassed() throws {
        let device = try deviceOnFirstVersionWithSecondPublished()
        var rng = SplitMix(11)
        for attempt in 0..<4 {
            let started = dir + "/started-\(attempt)"
            let p = Process()
            p.executableURL = URL(fileURLWithPath: TestSupport.binary)
            p.arguments = ["sync", remote, "--to", device, "--follow", "m@production", "--once",
                           "--health-check", "touch \(started); sleep 30"]
            p.standardOutput = FileHandle.nullDevice
            p.standardError = FileHandle.nullDevice
            try p.run()
            let deadline = Date().addingTimeInterval(20)
            while !FileSystem.exists(started) && Date() < deadline { usleep(20_000) }
            XCTAssertTrue(FileSystem.exists(started), "the check started")
            usleep(UInt32(rng.next() % 300_000))
            TestSupport.killAndReap(p)
            // Killed between the flip and the verdict: the new version is current but unproven.
            // A restart whose check fails must end on 1.0.0, which passed.
            let r = sync(device, check: "false")
            XCTAssertTrue(r.stdout.contains("interrupted"), r.stdout)
            XCTAssertEqual(InstallDirectory(root: device + "/m").current(), "1.0.0", "attempt \(attempt)")
            // Forget the rejection so the next attempt goes through the check again.
            FileSystem.remove(device + "/m/.slmstore-rejected")
        }
        XCTAssertEqual(sync(device, check: "true").status, 0)
        XCTAssertEqual(InstallDirectory(root: device + "/m").current(), "1.1.0")
    }

    // MARK: Gateway

    func testTheGatewaySplitsRequestsBetweenTwoLoadedVersions() throws {
        add("m@1.0.0", seed: 1)
        add("m@1.1.0", seed: 2)
        cli(["promote", "m@1.0.0", "production", "--skip-staging"])
        cli(["promote", "m@1.1.0", "staging"])
        let store = try Store.open(at: publisher)
        let gateway = ModelGateway(source: .store(store, cache: dir + "/cache"))
        try gateway.split("m", to: "staging", share: 0.3)
        var onCandidate = 0
        for i in 0..<1000 {
            let h = try gateway.route("m", requestKey: "user-\(i)")
            XCTAssertTrue(FileSystem.exists(h.path("weights.bin")), "both versions are loaded")
            if h.version == "1.1.0" { onCandidate += 1 }
        }
        XCTAssertTrue((240...360).contains(onCandidate), "\(onCandidate) of 1000 requests on the split version")
        XCTAssertEqual(try gateway.route("m", requestKey: "user-7").version, try gateway.route("m", requestKey: "user-7").version,
                       "a request key always gets the same version")
        gateway.unsplit("m")
        XCTAssertEqual(try gateway.route("m").version, "1.0.0")
    }
}
