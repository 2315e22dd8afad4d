import XCTest
import Foundation
@testable import SLMStoreKit
import SLMTestSupport

/// #29's fleet loop, with 200 simulated devices: each round every device picks its version from
/// the published manifest the way `sync` does (stage holder, or the rollout's version when its
/// id falls in the share), runs a health check, and leaves the report `sync` leaves; then the
/// publisher runs `fleet --apply`'s library call against the reports. Devices are simulated (200
/// daemons would take minutes); the manifest, slices, reports, fleet view, halt and advance
/// rules, rollout records and pushes are the real ones.
final class FleetSimulationTests: XCTestCase {
    let devices = (0..<200).map { String(format: "edge-%03d", $0) }
    var dir = ""
    var remote: LocalBackend!
    var store: Store!

    override func setUpWithError() throws {
        dir = TestSupport.scratch()
        for (v, seed) in [("1.0.0", UInt64(1)), ("1.1.0", UInt64(2))] {
            TestSupport.write(TestSupport.safetensors([("w", "BF16", [20_000], TestSupport.bf16Like(40_000, seed: seed))]), to: "\(dir)/src-\(v)/model.safetensors")
            XCTAssertEqual(TestSupport.cli(["add", "intent@\(v)", "\(dir)/src-\(v)"], store: dir + "/publisher").status, 0)
        }
        for (v, stage) in [("1.0.0", "staging"), ("1.0.0", "production"), ("1.1.0", "staging")] {
            XCTAssertEqual(TestSupport.cli(["promote", "intent@\(v)", stage], store: dir + "/publisher").status, 0)
        }
        // 10% first, then 30 points each time an hour passed with at least 10 devices on it and
        // at most 10% of them failing.
        let r = TestSupport.cli(["rollout", "intent@1.1.0", "production", "--percent", "10", "--halt-on-failure", "10%",
                                 "--min-devices", "10", "--advance-after", "1h", "--advance-step", "30"], store: dir + "/publisher")
        XCTAssertEqual(r.status, 0, r.stderr)
        XCTAssertEqual(TestSupport.cli(["push", dir + "/remote", "--no-web"], store: dir + "/publisher").status, 0)
        remote = LocalBackend(root: dir + "/remote")
        store = try Store.open(at: dir + "/publisher")
    }

    struct Device { var installed = "1.0.0"; var rejected = false; var tookRelease = false }

    /// One round on every device: what `sync` would install, the health check where a version is
    /// new to the device, and the report. `failing` says which devices' checks fail on 1.1.0.
    func round(_ fleet: inout [String: Device], failing: (String) -> Bool) throws {
        let manifest = try Manifest.decode(TestSupport.read(dir + "/remote/manifest.json"), source: "manifest.json")
        let model = try XCTUnwrap(manifest.models["intent"])
        for id in devices {
            var d = fleet[id] ?? Device()
            var target = try XCTUnwrap(model.stages["production"])
            if let rollout = model.rollouts["production"], rollout.state == .active, !d.rejected,
               RolloutSlice.includes(device: id, model: "intent", version: rollout.version, percent: rollout.percent) {
                target = rollout.version
            }
            var state = DeviceReport.State.installed
            if target != d.installed {
                if target == "1.1.0" && failing(id) {
                    d.rejected = true
                    d.tookRelease = true
                    state = .rejected
                } else {
                    d.tookRelease = d.tookRelease || target == "1.1.0"
                    d.installed = target
                }
            }
            fleet[id] = d
            let report = DeviceReport(device: id, time: Timestamp.now(),
                                      models: ["intent": .init(installed: d.installed, target: target, state: state)])
            try remote.write("reports/\(DeviceReport.fileName(device: id))", bytes: try XCTUnwrap(report.encoded()))
        }
    }

    /// The publisher's cron job, run as if an hour (and a second) had passed since the last step.
    func apply() throws -> [FleetAction] {
        let manifest = try Manifest.decode(TestSupport.read(dir + "/remote/manifest.json"), source: "manifest.json")
        let view = try Fleet.view(of: remote, manifest: manifest, now: time(nil), silentAfter: 86400)
        return try store.applyFleet(view, to: remote, now: time(nil) + 3601, push: PushOptions())
    }

    func testABadReleaseIsHaltedAfterTheFirstStepAndNoDeviceKeepsIt() throws {
        // Health checks fail on 30% of devices (a fixed, id-based third).
        let failing = { (id: String) in RolloutSlice.position(device: id, model: "health", version: "1.1.0") < 30 }
        var fleet: [String: Device] = [:]
        try round(&fleet, failing: failing)
        let firstStep = devices.filter { RolloutSlice.includes(device: $0, model: "intent", version: "1.1.0", percent: 10) }
        XCTAssertGreaterThanOrEqual(firstStep.count, 10, "the first step reaches at least --min-devices devices")
        let actions = try apply()
        guard case .halted(_, "production", let reason)? = actions.first else { return XCTFail("not halted: \(actions)") }
        XCTAssertTrue(reason.hasPrefix("fleet: "), reason)
        XCTAssertEqual(try store.rollout(of: try ModelName("intent"), stage: "production")?.state, .halted)
        // Later rounds: the halt is published, so nobody else takes it and the takers go back.
        for _ in 0..<3 {
            try round(&fleet, failing: failing)
            XCTAssertEqual(try apply(), [], "a halted rollout stays halted")
        }
        let took = devices.filter { fleet[$0]!.tookRelease }
        XCTAssertTrue(Set(took).isSubset(of: Set(firstStep)), "only the first step's devices ever took it")
        XCTAssertEqual(devices.filter { fleet[$0]!.installed == "1.1.0" }, [])
    }

    func testAGoodReleaseAdvancesStepByStepToEveryDevice() throws {
        var fleet: [String: Device] = [:]
        var shares: [Double] = []
        for _ in 0..<6 {
            try round(&fleet, failing: { _ in false })
            for case let .advanced(_, _, _, to) in try apply() { shares.append(to) }
            if devices.allSatisfy({ fleet[$0]!.installed == "1.1.0" }) { break }
        }
        XCTAssertEqual(shares, [40, 70, 100])
        XCTAssertEqual(try store.rollout(of: try ModelName("intent"), stage: "production")?.state, .completed)
        XCTAssertEqual(devices.filter { fleet[$0]!.installed != "1.1.0" }, [], "every device runs the release")
        let history = try store.history(of: try ModelName("intent"))
        XCTAssertTrue(history.contains { $0.reason?.contains("advanced after 3600 s") ?? false }, "\(history)")
    }
}
