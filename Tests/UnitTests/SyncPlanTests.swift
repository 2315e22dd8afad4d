import XCTest
@testable import SLMFormats
@testable import SLMLocalStore
@testable import SLMRemote
@testable import SLMDevice
import SLMTestSupport

/// What a sync round does for a model is decided by SyncModelPlan from the manifest and the
/// device's records alone: tested here without a remote, a store or an install directory.
final class SyncPlanTests: XCTestCase {
    let model = try! ModelName("m")
    func id(_ i: UInt8) -> SHA256Digest { SHA256Hasher.hash([i]) }

    /// 1.0.0 in production, 1.1.0 listed; `rollout` percent of devices take 1.1.0 from production.
    func manifest(rollout percent: Double? = nil, reset: UInt64 = 0) -> Manifest {
        let entries = ["1.0.0", "1.1.0"].enumerated().map { i, v in
            Manifest.VersionEntry(version: v, id: id(UInt8(i)), tree: id(UInt8(100 + i)), created: "", size: 0, files: [], dependencies: [], packs: [])
        }
        var model = Manifest.ModelEntry(versions: entries, stages: ["production": "1.0.0"])
        if let percent {
            model.rollouts["production"] = RolloutRecord(serial: 1, version: "1.1.0", id: id(1), percent: percent, state: .active,
                                                         reset: reset, time: "", by: "")
        }
        return Manifest(project: "p", lastUpdated: "", models: ["m": model], packs: [])
    }

    func decide(_ manifest: Manifest, rejected: RejectedVersions = RejectedVersions(), current: String? = nil,
                onDisk: [String: SHA256Digest] = [:], downloadOnly: Bool = false) throws -> SyncModelPlan {
        try SyncModelPlan.decide(model, "production", manifest: manifest, location: "r", deviceID: "device-1", rejected: rejected,
                                 current: current, installedID: { onDisk[$0] }, downloadOnly: downloadOnly)
    }

    func testANewTargetIsDownloaded() throws {
        let plan = try decide(manifest())
        XCTAssertEqual(plan.action, .download)
        XCTAssertEqual(plan.target.description, "1.0.0")
        XCTAssertEqual(plan.targetID, id(0))
    }

    func testTheInstalledCurrentTargetIsUpToDate() throws {
        XCTAssertEqual(try decide(manifest(), current: "1.0.0", onDisk: ["1.0.0": id(0)]).action, .upToDate)
    }

    func testACurrentVersionOfTheSameNameButAnotherIdIsDownloadedAgain() throws {
        XCTAssertEqual(try decide(manifest(), current: "1.0.0", onDisk: ["1.0.0": id(9)]).action, .download)
    }

    func testATargetOnDiskIsActivatedWithoutDownloading() throws {
        XCTAssertEqual(try decide(manifest(), current: "1.1.0", onDisk: ["1.0.0": id(0), "1.1.0": id(1)]).action, .activate)
    }

    func testDownloadOnlyLeavesATargetOnDiskForALaterRound() throws {
        XCTAssertEqual(try decide(manifest(), current: "1.1.0", onDisk: ["1.0.0": id(0)], downloadOnly: true).action, .awaitActivation)
    }

    func testARejectedTargetIsSkipped() throws {
        var rejected = RejectedVersions()
        rejected.entries[id(0).hex] = ("1.0.0", 0, "")
        XCTAssertEqual(try decide(manifest(), rejected: rejected, current: "0.9.0").action, .skipRejected)
    }

    func testADeviceInTheRolloutShareTakesTheRolloutVersion() throws {
        let plan = try decide(manifest(rollout: 100, reset: 3))
        XCTAssertEqual(plan.target.description, "1.1.0")
        XCTAssertEqual(plan.rolloutReset, 3)
    }

    func testADeviceOutsideTheRolloutShareStaysOnTheStage() throws {
        // The share is a position in [0, 100): a tiny share leaves this device out.
        let percent = RolloutSlice.position(device: "device-1", model: "m", version: "1.1.0") / 2
        XCTAssertEqual(try decide(manifest(rollout: max(percent, 1e-9))).target.description, "1.0.0")
    }

    func testARejectedRolloutVersionFallsBackToTheStage() throws {
        var rejected = RejectedVersions()
        rejected.entries[id(1).hex] = ("1.1.0", 0, "")
        XCTAssertEqual(try decide(manifest(rollout: 100), rejected: rejected).target.description, "1.0.0")
    }

    func testAResetRolloutIsTakenAgainAfterARejection() throws {
        var rejected = RejectedVersions()
        rejected.entries[id(1).hex] = ("1.1.0", 0, "")
        let plan = try decide(manifest(rollout: 100, reset: 1), rejected: rejected)
        XCTAssertEqual(plan.target.description, "1.1.0")
        XCTAssertEqual(plan.action, .download)
    }
}
