import XCTest
import Foundation
@testable import SLMStoreKit
import SLMTestSupport

/// #29's fleet loop, with 200 simulated devices: each round every device picks its version from
/// the published manifest the way `sync` does (stage holder, or the rollout's version when its
/// id falls in the share), runs a health check, and leaves the signed report `sync` leaves; then
/// the publisher runs `fleet --apply`'s library call against the reports. Devices are simulated
/// (200 daemons would take minutes); the manifest, slices, keys, signed reports, enrolled set,
/// fleet view, halt and advance rules, rollout records and pushes are the real ones. #42: 10% of
/// the devices also forge reports (the opposite verdict, under 20 invented ids each), which must
/// change nothing.
final class FleetSimulationTests: XCTestCase {
    let devices = (0..<200).map { String(format: "edge-%03d", $0) }
    var dir = ""
    var remote: LocalBackend!
    var store: Store!
    var keys: [String: Ed25519PrivateKey] = [:]
    var counter: UInt64 = 0
    /// The 10% of devices that also write forged reports.
    var forgers: Set<String> { Set(devices.filter { RolloutSlice.position(device: $0, model: "forger", version: "1") < 10 }) }

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
        var enrolled = DeviceEnrollment()
        for id in devices {
            keys[id] = try Ed25519PrivateKey.generate()
            enrolled.devices[id] = .init(key: keys[id]!.publicKey, enrolled: Timestamp.now())
        }
        try enrolled.save(store: store, location: remote.location)
    }

    struct Device { var installed = "1.0.0"; var rejected = false; var tookRelease = false }

    /// One round on every device: what `sync` would install, the health check where a version is
    /// new to the device, and the report. `failing` says which devices' checks fail on 1.1.0.
    func round(_ fleet: inout [String: Device], failing: (String) -> Bool, forgedState: DeviceReport.State? = nil) throws {
        counter += 1
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
                                      models: ["intent": .init(installed: d.installed, target: target, state: state)], counter: counter)
            try remote.write("reports/\(DeviceReport.fileName(device: id))", bytes: try XCTUnwrap(try report.signed(by: keys[id]!)))
            // A forging device writes 20 reports under ids it made up, signed with its own key,
            // all saying the opposite of the truth about the release.
            if let forgedState, forgers.contains(id) {
                for n in 0..<20 {
                    let fake = "\(id)-sock-\(n)"
                    let lie = DeviceReport(device: fake, time: Timestamp.now(),
                                           models: ["intent": .init(installed: forgedState == .rejected ? "1.0.0" : "1.1.0", target: "1.1.0", state: forgedState)],
                                           counter: counter)
                    try remote.write("reports/\(DeviceReport.fileName(device: fake))", bytes: try XCTUnwrap(try lie.signed(by: keys[id]!)))
                }
            }
        }
    }

    /// The publisher's cron job, run as if an hour (and a second) had passed since the last step.
    func apply() throws -> [FleetAction] {
        let manifest = try Manifest.decode(TestSupport.read(dir + "/remote/manifest.json"), source: "manifest.json")
        var counters = try ReportCounters.load(store: store, location: remote.location)
        let view = try Fleet.view(of: remote, manifest: manifest, enrolled: try DeviceEnrollment.load(store: store, location: remote.location),
                                  counters: &counters, now: time(nil), silentAfter: 86400)
        try counters.save(store: store, location: remote.location)
        lastView = view
        return try store.applyFleet(view, to: remote, now: time(nil) + 3601, push: PushOptions())
    }
    var lastView: FleetView?

    func testABadReleaseIsHaltedAfterTheFirstStepAndNoDeviceKeepsIt() throws {
        // Health checks fail on 30% of devices (a fixed, id-based third).
        let failing = { (id: String) in RolloutSlice.position(device: id, model: "health", version: "1.1.0") < 30 }
        var fleet: [String: Device] = [:]
        // The forgers say everyone took 1.1.0 happily: 400 reports against the real takers' ~20.
        try round(&fleet, failing: failing, forgedState: .installed)
        let firstStep = devices.filter { RolloutSlice.includes(device: $0, model: "intent", version: "1.1.0", percent: 10) }
        XCTAssertGreaterThanOrEqual(firstStep.count, 10, "the first step reaches at least --min-devices devices")
        let actions = try apply()
        guard case .halted(_, "production", let reason)? = actions.first else { return XCTFail("not halted: \(actions)") }
        XCTAssertTrue(reason.hasPrefix("fleet: "), reason)
        let view = try XCTUnwrap(lastView)
        XCTAssertEqual(view.devices, 200, "one report per enrolled device, and no more")
        XCTAssertEqual(view.refused.filter { $0.reason == .unenrolled }.count, forgers.count * 20)
        XCTAssertEqual(view.suspicious.count, 0, "made-up ids are unenrolled, not forgeries of enrolled devices")
        XCTAssertEqual(view.models["intent"]?["1.1.0"]?.running ?? 0, firstStep.count - firstStep.filter(failing).count)
        XCTAssertEqual(try store.rollout(of: try ModelName("intent"), stage: "production")?.state, .halted)
        // Later rounds: the halt is published, so nobody else takes it and the takers go back.
        for _ in 0..<3 {
            try round(&fleet, failing: failing, forgedState: .installed)
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
            // The forgers say the release fails everywhere: 400 rejections, none of them counted.
            try round(&fleet, failing: { _ in false }, forgedState: .rejected)
            for case let .advanced(_, _, _, to) in try apply() { shares.append(to) }
            if devices.allSatisfy({ fleet[$0]!.installed == "1.1.0" }) { break }
        }
        XCTAssertEqual(shares, [40, 70, 100])
        XCTAssertEqual(try store.rollout(of: try ModelName("intent"), stage: "production")?.state, .completed)
        XCTAssertEqual(devices.filter { fleet[$0]!.installed != "1.1.0" }, [], "every device runs the release")
        let history = try store.history(of: try ModelName("intent"))
        XCTAssertTrue(history.contains { $0.reason?.contains("advanced after 3600 s") ?? false }, "\(history)")
        XCTAssertEqual(lastView?.refused.filter { $0.reason == .unenrolled }.count, forgers.count * 20)
    }

    /// A report written over an enrolled device's own file by another device (a shared
    /// reports/ directory) is a forgery: it is not counted, and while it is there nothing
    /// advances; halts by the genuine reports still happen.
    func testAForgeryOfAnEnrolledDevicesReportHoldsTheAdvance() throws {
        var fleet: [String: Device] = [:]
        try round(&fleet, failing: { _ in false })
        let (forger, victim) = (devices[0], devices[1])
        let lie = DeviceReport(device: victim, time: Timestamp.now(), models: ["intent": .init(installed: "1.0.0", target: "1.1.0", state: .rejected)],
                               counter: counter + 1)
        try remote.write("reports/\(DeviceReport.fileName(device: victim))", bytes: try XCTUnwrap(try lie.signed(by: keys[forger]!)))
        let actions = try apply()
        guard case let .held(_, "production", reason)? = actions.first else { return XCTFail("not held: \(actions)") }
        XCTAssertTrue(reason.contains("forged"), reason)
        XCTAssertEqual(lastView?.devices, 199)
        XCTAssertEqual(try store.rollout(of: try ModelName("intent"), stage: "production")?.percent, 10)
        // The victim's next genuine report replaces it: the rollout advances again.
        try round(&fleet, failing: { _ in false })
        guard case .advanced? = try apply().first else { return XCTFail("did not advance once the forgery was gone") }
    }

    /// A device's older report written back over its newer one (a replay) is not counted.
    func testAReplayedOlderReportIsRefused() throws {
        var fleet: [String: Device] = [:]
        try round(&fleet, failing: { _ in false })
        let old = TestSupport.read(dir + "/remote/reports/\(devices[5]).json")
        _ = try apply()
        try round(&fleet, failing: { _ in false })
        _ = try apply()
        try remote.write("reports/\(devices[5]).json", bytes: old)
        _ = try apply()
        XCTAssertEqual(lastView?.refused.first { $0.device == devices[5] }?.reason, .replayed)
        XCTAssertEqual(lastView?.devices, 199)
    }
}
