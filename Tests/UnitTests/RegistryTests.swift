import XCTest
@testable import SLMStoreKit
@testable import SLMFormats
@testable import SLMLocalStore
@testable import SLMRemote
@testable import SLMDevice
@testable import SLMPages
import SLMSynthetic
import SLMTestSupport

/// SemVer ranges, gates, history, rollback and dependencies, through the library.
final class SemVerRangeTests: XCTestCase {
    func check(_ range: String, _ yes: [String], _ no: [String], file: StaticString = #filePath, line: UInt = #line) throws {
        let r = try SemVerRange(range)
        for v in yes { XCTAssertTrue(r.contains(try SemVer(v)), "\(v) should satisfy \(range)", file: file, line: line) }
        for v in no { XCTAssertFalse(r.contains(try SemVer(v)), "\(v) should not satisfy \(range)", file: file, line: line) }
    }

    func testNpmRangeRules() throws {
        try check("^2.1", ["2.1.0", "2.9.9"], ["2.0.9", "3.0.0", "2.2.0-rc.1"])
        try check("^1.2.3", ["1.2.3", "1.9.0"], ["1.2.2", "2.0.0", "2.0.0-rc.1"])
        try check("^0.2.3", ["0.2.3", "0.2.9"], ["0.3.0"])
        try check("^0.0.3", ["0.0.3"], ["0.0.4"])
        try check("~2.1.3", ["2.1.3", "2.1.9"], ["2.2.0", "2.1.2"])
        try check("~1", ["1.0.0", "1.9.9"], ["2.0.0"])
        try check(">=2.0.0 <3.0.0", ["2.0.0", "2.5.1"], ["3.0.0", "1.9.9"])
        try check("2.x", ["2.0.0", "2.99.0"], ["3.0.0", "1.0.0"])
        try check("1.2.x || >=3.1", ["1.2.7", "3.1.0", "4.0.0"], ["1.3.0", "3.0.9"])
        try check("1.2.3 - 2.3", ["1.2.3", "2.3.9"], ["2.4.0", "1.2.2"])
        try check("*", ["0.0.1", "9.9.9"], ["1.0.0-alpha"])
        try check(">1.2", ["1.3.0"], ["1.2.9"])
        try check("<=1.2", ["1.2.9"], ["1.3.0"])
        try check(">=1.2.3-alpha.3", ["1.2.3-alpha.7", "1.2.3", "3.0.0"], ["3.4.5-alpha.9", "1.2.3-alpha.2"])
    }

    func testInvalidRangesAreRejected() {
        for bad in ["^x.y", ">=a", "1.2.3.4", "~", "01.2"] { XCTAssertThrowsError(try SemVerRange(bad), bad) }
    }

    func testSelectorPicksHighestMatchStageOrLatest() throws {
        let vs = try ["1.0.0", "2.1.0", "2.2.0", "2.3.0-rc.1", "3.0.0"].map { try SemVer($0) }
        XCTAssertEqual(try VersionSelector.pick("^2.1", versions: vs, stageHolders: [:]).0.description, "2.2.0")
        XCTAssertEqual(try VersionSelector.pick("latest", versions: vs, stageHolders: [:]).0.description, "3.0.0")
        XCTAssertEqual(try VersionSelector.pick("production", versions: vs, stageHolders: ["production": vs[1]]).0.description, "2.1.0")
        XCTAssertEqual(try VersionSelector.pick("development", versions: vs, stageHolders: ["production": vs[4]]).0.description, "2.3.0-rc.1")
        XCTAssertThrowsError(try VersionSelector.pick("^4", versions: vs, stageHolders: [:])) { e in
            XCTAssertTrue("\(e)".contains("no version matches ^4; versions: 1.0.0, 2.1.0"), "\(e)")
        }
        XCTAssertThrowsError(try VersionSelector.pick("staging", versions: vs, stageHolders: [:]))
    }
}

final class RegistryTests: XCTestCase {
    var dir = ""
    var store: Store!

    override func setUp() {
        dir = TestSupport.scratch()
        store = try! Store.create(at: dir + "/store")
    }

    @discardableResult
    func add(_ name: String, _ version: String, deps: [Dependency] = [], card: JSONValue? = nil) throws -> ResolvedVersion {
        let src = "\(dir)/src-\(name)-\(version)"
        TestSupport.write(TestSupport.random(2000, seed: UInt64(version.hashValueStable)), to: src + "/w.bin")
        var o = AddOptions()
        o.dependencies = deps
        o.card = card
        _ = try store.addVersion(name: try ModelName(name), version: try SemVer(version), inputs: try AddInputs.collect([src]), options: o)
        return try store.resolve("\(name)@\(version)")
    }

    func testProductionRequiresPassingGatesAndStaging() throws {
        let v = try add("intent", "2.2.0")
        try store.setPolicy(of: try ModelName("intent"), try PromotionPolicy(parsing: "production: accuracy >= 0.93, f1 >= 0.9"))
        _ = try store.promote(v, to: "staging")
        XCTAssertThrowsError(try store.promote(v, to: "production")) { e in
            XCTAssertTrue("\(e)".contains("metric accuracy is not recorded"), "\(e)")
        }
        _ = try store.addMetrics(v, values: ["accuracy": .number("0.92"), "f1": .number("0.95")], source: "eval-1")
        XCTAssertThrowsError(try store.promote(v, to: "production")) { e in
            XCTAssertTrue("\(e)".contains("accuracy = 0.92 fails accuracy >= 0.93"), "\(e)")
        }
        _ = try store.addMetrics(v, values: ["accuracy": .number("0.941")], source: "eval-2")
        XCTAssertEqual(try store.promote(v, to: "production").to, "2.2.0")
        XCTAssertEqual(try store.resolveSelector(name: v.name, selector: "production").resolved.id, v.id)
    }

    func testPromotionToProductionMustComeFromStagingUnlessSkipped() throws {
        let v = try add("intent", "1.0.0")
        XCTAssertThrowsError(try store.promote(v, to: "production")) { e in
            XCTAssertTrue("\(e)".contains("production must come from staging"), "\(e)")
        }
        var o = PromoteOptions()
        o.skipStaging = true
        XCTAssertNoThrow(try store.promote(v, to: "production", options: o))
    }

    func testMajorVersionChangeNeedsAllowBreaking() throws {
        var o = PromoteOptions()
        o.skipStaging = true
        _ = try store.promote(try add("intent", "1.4.0"), to: "production", options: o)
        let v2 = try add("intent", "2.0.0")
        XCTAssertThrowsError(try store.promote(v2, to: "production", options: o)) { e in
            XCTAssertTrue("\(e)".contains("breaking change"), "\(e)")
        }
        o.allowBreaking = true
        XCTAssertNoThrow(try store.promote(v2, to: "production", options: o))
    }

    func testNonNumericMetricFailsANumericGate() throws {
        let v = try add("intent", "1.0.0")
        try store.setPolicy(of: v.name, try PromotionPolicy(parsing: "staging: accuracy >= 0.5"))
        _ = try store.addMetrics(v, values: ["accuracy": .string("high")], source: "x")
        XCTAssertThrowsError(try store.promote(v, to: "staging")) { e in
            XCTAssertTrue("\(e)".contains("is not a number"), "\(e)")
        }
    }

    func testRollbackReturnsToThePreviousHolderAndHistoryRecordsEverything() throws {
        var o = PromoteOptions()
        o.skipStaging = true
        let a = try add("intent", "2.1.0"), b = try add("intent", "2.2.0"), c = try add("intent", "2.3.0")
        _ = try store.promote(a, to: "production", options: o)
        _ = try store.promote(b, to: "production", options: o)
        _ = try store.promote(c, to: "production", options: o)
        XCTAssertEqual(try store.rollback(a.name, stage: "production").to, "2.2.0")
        XCTAssertEqual(try store.rollback(a.name, stage: "production").to, "2.1.0")
        XCTAssertThrowsError(try store.rollback(a.name, stage: "production")) { e in
            XCTAssertTrue("\(e)".contains("no previous holder"), "\(e)")
        }
        XCTAssertThrowsError(try store.promote(a, to: "production", options: o))  // already holds it: refused, recorded
        let h = try store.history(of: a.name)
        XCTAssertEqual(h.map(\.action), ["promote", "promote", "promote", "rollback", "rollback", "promote"])
        XCTAssertEqual(h.map(\.to), ["2.1.0", "2.2.0", "2.3.0", "2.2.0", "2.1.0", "2.1.0"])
        XCTAssertTrue(h.last!.outcome.hasPrefix("refused"))
        XCTAssertThrowsError(try store.rollback(a.name, stage: "staging"))
    }

    func testDependenciesMustResolveAndMayNotCycle() throws {
        XCTAssertThrowsError(try add("extract", "1.0.0", deps: [Dependency(name: "intent", range: "^2.0")])) { e in
            XCTAssertTrue("\(e)".contains("resolves to nothing"), "\(e)")
        }
        XCTAssertTrue(try store.models().isEmpty, "a refused add writes nothing")
        _ = try add("intent", "2.0.0")
        _ = try add("extract", "1.0.0", deps: [Dependency(name: "intent", range: "^2.0")])
        XCTAssertThrowsError(try add("intent", "2.1.0", deps: [Dependency(name: "extract", range: "^1.0")])) { e in
            XCTAssertTrue("\(e)".contains("dependency cycle: intent -> extract@1.0.0 -> intent@^2.0"), "\(e)")
        }
    }

    func testRequiredCardKeysAreEnforced() throws {
        try store.setRequiredCardKeys(["model_id", "training.dataset_hash"])
        XCTAssertThrowsError(try add("m", "1.0.0", card: .object(["model_id": .string("x")]))) { e in
            XCTAssertTrue("\(e)".contains("training.dataset_hash"), "\(e)")
        }
        let v = try add("m", "1.0.1", card: .object(["model_id": .string("x"), "training": .object(["dataset_hash": .string("abc")])]))
        XCTAssertEqual(v.object.card?["model_id"], .string("x"))
    }

    func testCardIsCoveredByTheVersionID() throws {
        let v = try add("m", "1.0.0", card: .object(["lr": .number("3e-4")]))
        var tampered = v.object
        tampered.card = .object(["lr": .number("1e-3")])
        XCTAssertNotEqual(tampered.id, v.id)
    }

    /// `--advance-after`: the record carries the wait and the step; a step is due only after the
    /// wait, from --min-devices devices on, and never while the failure rate passes the halt rule.
    func testARolloutAdvancesOnlyWhenDueTakenByEnoughDevicesAndHealthy() throws {
        let start = time(nil)
        var r = RolloutRecord(serial: 1, version: "1.1.0", id: SHA256Hasher.hash([1]), percent: 10, state: .active, reset: 0,
                              time: Timestamp.format(start), by: "ci")
        (r.haltOnFailure, r.minDevices, r.advanceAfter, r.advanceStep) = (5, 10, 7200, 30)
        let decoded = try RolloutRecord.decode(try JSONValue.parse(r.json.canonicalBytes()), source: "r")
        XCTAssertEqual(decoded, r)
        XCTAssertNil(r.nextShare(running: 20, rejected: 0, failed: 0, now: start + 7199), "not yet due")
        XCTAssertEqual(r.nextShare(running: 20, rejected: 0, failed: 0, now: start + 7200), 40)
        XCTAssertNil(r.nextShare(running: 9, rejected: 0, failed: 0, now: start + 7200), "too few devices took it")
        XCTAssertNil(r.nextShare(running: 18, rejected: 2, failed: 0, now: start + 7200), "10% failing passes the 5% rule")
        r.percent = 90
        XCTAssertEqual(r.nextShare(running: 20, rejected: 0, failed: 0, now: start + 7200), 100, "the last step stops at 100")
        for bad in [#"{"advance_after":0,"advance_step":10,"min_devices":1}"#, #"{"advance_after":60,"min_devices":1}"#,
                    #"{"advance_after":60,"advance_step":101,"min_devices":1}"#, #"{"advance_after":60,"advance_step":10}"#] {
            var o = r.json.objectValue!
            for (k, v) in try JSONValue.parse(Array(bad.utf8)).objectValue! { o[k] = v }
            for key in ["min_devices", "advance_step"] where !bad.contains(key) { o[key] = nil }
            o["halt_on_failure"] = nil
            XCTAssertThrowsError(try RolloutRecord.decode(.object(o), source: "r"), bad)
        }
    }

    func testPolicyThatDoesNotParseIsRejected() {
        for bad in ["production accuracy >= 0.9", "prod: accuracy >= 0.9", "production: accuracy >> high", "production: accuracy >= x"] {
            XCTAssertThrowsError(try PromotionPolicy(parsing: bad), bad)
        }
    }
}
