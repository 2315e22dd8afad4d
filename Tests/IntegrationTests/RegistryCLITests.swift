import XCTest
@testable import SLMStoreKit
@testable import SLMFormats
@testable import SLMLocalStore
@testable import SLMRemote
@testable import SLMDevice
@testable import SLMPages
import SLMSynthetic
import SLMTestSupport

/// The registry commands as a user runs them, following the seed article's lifecycle.
final class RegistryCLITests: XCTestCase {
    var dir = ""
    var store = ""

    override func setUp() {
        dir = TestSupport.scratch()
        store = dir + "/store"
    }

    func cli(_ args: [String], env: [String: String] = [:]) -> TestSupport.Run { TestSupport.cli(args, store: store, environment: env) }

    func model(_ name: String, seed: UInt64) -> String {
        let path = "\(dir)/\(name)"
        TestSupport.write(TestSupport.safetensors([("w", "BF16", [5000], TestSupport.bf16Like(10_000, seed: seed))]), to: path + "/model.safetensors")
        return path
    }

    func testLifecycleFromAddToProductionAndBack() throws {
        let card = dir + "/model_card.yaml"
        try """
        model_id: intent-classifier
        dataset_hash: sha256:abc123
        training_code_commit: 1a2b3c4
        hyperparameters:
          learning_rate: 2e-5
          epochs: 3
        """.write(toFile: card, atomically: true, encoding: .utf8)
        XCTAssertEqual(cli(["add", "base-tokenizer@1.0.0", model("tok", seed: 1)]).status, 0)
        XCTAssertEqual(cli(["add", "intent-classifier@2.1.0", model("a", seed: 2), "--depends", "base-tokenizer@^1.0"]).status, 0)
        let add = cli(["add", "intent-classifier@2.2.0", model("b", seed: 3), "--card", card, "--depends", "base-tokenizer@^1.0"])
        XCTAssertEqual(add.status, 0, add.stderr)
        XCTAssertEqual(cli(["policy", "intent-classifier", "set", "production: accuracy >= 0.93, f1 >= 0.9"]).status, 0)
        XCTAssertEqual(cli(["metrics", "intent-classifier@2.2.0", "set", "accuracy=0.941", "f1=0.902", "--source", "eval-run-88"]).status, 0)
        XCTAssertEqual(cli(["metrics", "intent-classifier@2.1.0", "set", "accuracy=0.95", "f1=0.91"]).status, 0)
        XCTAssertEqual(cli(["promote", "intent-classifier@2.1.0", "staging"]).status, 0)
        XCTAssertEqual(cli(["promote", "intent-classifier@2.1.0", "production"]).status, 0)
        XCTAssertEqual(cli(["promote", "intent-classifier@2.2.0", "staging"]).status, 0)
        let promoted = cli(["promote", "intent-classifier@2.2.0", "production"])
        XCTAssertEqual(promoted.status, 0, promoted.stderr)

        let resolved = try TestSupport.json(cli(["resolve", "intent-classifier@production", "--json"]))
        XCTAssertEqual(resolved["version"]?.stringValue, "2.2.0")
        XCTAssertEqual(try TestSupport.json(cli(["resolve", "intent-classifier@^2.1", "--json"]))["version"]?.stringValue, "2.2.0")
        let ls = try TestSupport.json(cli(["ls", "--stage", "production", "--json"]))
        XCTAssertEqual(ls["models"]?.arrayValue?.first?["versions"]?.arrayValue?.map { $0["version"]!.stringValue! }, ["2.2.0"])

        let show = try TestSupport.json(cli(["show", "intent-classifier@2.2.0", "--json"]))
        XCTAssertEqual(show["card"]?["dataset_hash"]?.stringValue, "sha256:abc123")
        XCTAssertEqual(show["card"]?["hyperparameters"]?["learning_rate"], .number("2e-5"))
        XCTAssertEqual(show["metrics"]?["accuracy"], .number("0.941"))
        // Promoted on, a version leaves staging (it moves through the stages).
        XCTAssertEqual(show["stages"], .array([.string("production")]))
        XCTAssertNotEqual(cli(["resolve", "intent-classifier@staging"]).status, 0)
        XCTAssertEqual(show["dependencies"]?.arrayValue?.first?["resolves_to"]?.stringValue, "base-tokenizer@1.0.0")
        XCTAssertNotNil(show["parent"]?.stringValue)

        let rollback = cli(["rollback", "intent-classifier", "production"])
        XCTAssertEqual(rollback.status, 0, rollback.stderr)
        XCTAssertEqual(try TestSupport.json(cli(["resolve", "intent-classifier@production", "--json"]))["version"]?.stringValue, "2.1.0")
        let history = try TestSupport.json(cli(["history", "intent-classifier", "--json"]))
        XCTAssertEqual(history["history"]?.arrayValue?.map { $0["action"]!.stringValue! }, ["promote", "promote", "leave", "promote", "promote", "leave", "rollback"])
    }

    /// The seed article's lifecycle: a version moves through staging to production, so staging
    /// is empty until the next candidate, on the remote too after a push.
    func testPromotionMovesAVersionThroughStagingAndPushCarriesThatToTheRemote() throws {
        XCTAssertEqual(cli(["add", "m@1.0.0", model("a", seed: 1)]).status, 0)
        XCTAssertEqual(cli(["promote", "m@1.0.0", "staging"]).status, 0)
        XCTAssertEqual(cli(["push", dir + "/remote"]).status, 0)
        XCTAssertTrue(FileSystem.exists(dir + "/remote/refs/m/@stages/staging"))
        XCTAssertEqual(cli(["promote", "m@1.0.0", "production"]).status, 0)
        XCTAssertFalse(FileSystem.exists(store + "/refs/m/@stages/staging"))
        let history = try TestSupport.json(cli(["history", "m", "--json"]))
        XCTAssertEqual(history["history"]?.arrayValue?.last?["action"]?.stringValue, "leave")
        XCTAssertEqual(cli(["push", dir + "/remote"]).status, 0)
        XCTAssertFalse(FileSystem.exists(dir + "/remote/refs/m/@stages/staging"))
        let manifest = try TestSupport.publishedManifest(dir + "/remote")
        XCTAssertEqual(manifest.models["m"]?.stages, ["production": "1.0.0"])
    }

    func testFailedGateSaysWhichGateAndChangesNothing() throws {
        XCTAssertEqual(cli(["add", "m@1.0.0", model("a", seed: 1)]).status, 0)
        XCTAssertEqual(cli(["policy", "m", "set", "staging: accuracy >= 0.9"]).status, 0)
        XCTAssertEqual(cli(["metrics", "m@1.0.0", "set", "accuracy=0.5"]).status, 0)
        let refsBefore = TestSupport.snapshot(store + "/refs")
        let r = cli(["promote", "m@1.0.0", "staging"])
        XCTAssertEqual(r.status, 4)
        XCTAssertTrue(r.stderr.contains("accuracy = 0.5 fails accuracy >= 0.9"), r.stderr)
        XCTAssertEqual(TestSupport.snapshot(store + "/refs"), refsBefore)
    }

    func testBadRegistryInputIsAClearError() throws {
        XCTAssertEqual(cli(["add", "m@1.0.0", model("a", seed: 1)]).status, 0)
        let badCard = dir + "/card.yaml"
        try "a: 1\nb: [x]\n".write(toFile: badCard, atomically: true, encoding: .utf8)
        var r = cli(["add", "m@1.0.1", model("b", seed: 2), "--card", badCard])
        XCTAssertTrue(r.status != 0 && r.stderr.contains("card.yaml: invalid model card: line 2, column 4"), r.stderr)
        r = cli(["promote", "m@1.0.0", "prod"])
        XCTAssertTrue(r.status != 0 && r.stderr.contains("unknown stage \"prod\""), r.stderr)
        r = cli(["policy", "m", "set", "production: accuracy >> 1"])
        XCTAssertTrue(r.status != 0 && r.stderr.contains("invalid policy"), r.stderr)
        r = cli(["promote", "m@9.9.9", "staging"])
        XCTAssertTrue(r.status == 3 && r.stderr.contains("unknown version m@9.9.9"), r.stderr)
        r = cli(["rollback", "m", "production"])
        XCTAssertTrue(r.status == 3 && r.stderr.contains("no version in production"), r.stderr)
        r = cli(["add", "n@1.0.0", model("c", seed: 3), "--depends", "m@^2"])
        XCTAssertTrue(r.status != 0 && r.stderr.contains("resolves to nothing"), r.stderr)
        r = cli(["resolve", "m@staging"])
        XCTAssertTrue(r.status == 3 && r.stderr.contains("no version holds stage staging"), r.stderr)
    }

    func testAFailureAskedForAsJSONIsAJSONObjectWithAStableCode() throws {
        XCTAssertEqual(cli(["add", "m@1.0.0", model("a", seed: 1)]).status, 0)
        let r = cli(["resolve", "m@9.9.9", "--json"])
        XCTAssertEqual(r.status, 3, r.stderr)
        XCTAssertTrue(r.stderr.contains("unknown version m@9.9.9"), r.stderr)
        let error = try XCTUnwrap(JSONValue.parse(r.stdout)["error"], r.stdout)
        XCTAssertEqual(error["code"]?.stringValue, "not-found")
        XCTAssertEqual(error["exit_status"]?.int64Value, 3)
        XCTAssertTrue(error["message"]?.stringValue?.contains("unknown version m@9.9.9") == true, r.stdout)
    }

    /// The library says "a health check needs ..."; the command line names the options a user typed.
    func testASettingTheLibraryRefusesIsNamedByItsOption() throws {
        let r = cli(["sync", dir + "/remote", "--to", dir + "/dev", "--follow", "m@production", "--once",
                     "--health-check", "true", "--keep", "0"])
        XCTAssertEqual(r.status, 2, r.stderr)
        XCTAssertTrue(r.stderr.contains("--health-check needs at least one earlier version kept") && r.stderr.contains("--keep 1 or more"), r.stderr)
    }

    func testConcurrentPromotesOfOneStageLetExactlyOneWin() throws {
        XCTAssertEqual(cli(["add", "m@1.0.0", model("a", seed: 1)]).status, 0)
        XCTAssertEqual(cli(["add", "m@1.1.0", model("b", seed: 2)]).status, 0)
        var procs: [(Process, Pipe)] = []
        for v in ["1.0.0", "1.1.0"] {
            let p = Process()
            p.executableURL = URL(fileURLWithPath: TestSupport.binary)
            p.arguments = ["--store", store, "promote", "m@\(v)", "staging"]
            var env = ProcessInfo.processInfo.environment
            env["SLMSTORE_PROMOTE_PAUSE_MS"] = "1500"  // both read the stage before either writes it
            p.environment = env
            let err = Pipe()
            p.standardError = err
            p.standardOutput = FileHandle.nullDevice
            try p.run()
            procs.append((p, err))
        }
        var statuses: [Int32] = []
        var messages: [String] = []
        for (p, err) in procs {
            p.waitUntilExit()
            statuses.append(p.terminationStatus)
            messages.append(String(decoding: err.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self))
        }
        XCTAssertEqual(statuses.sorted(), [0, 4], messages.joined())
        XCTAssertTrue(messages.joined().contains("moved to"), messages.joined())
        let history = try TestSupport.json(cli(["history", "m", "--json"]))["history"]!.arrayValue!
        XCTAssertEqual(history.count, 2)
        XCTAssertEqual(history.filter { $0["outcome"]?.stringValue == "ok" }.count, 1)
    }

    func testPullBringsDependenciesAlong() throws {
        XCTAssertEqual(cli(["add", "base@1.0.0", model("tok", seed: 1)]).status, 0)
        XCTAssertEqual(cli(["add", "lora@0.1.0", model("lora", seed: 2), "--depends", "base@^1.0"]).status, 0)
        XCTAssertEqual(cli(["push", dir + "/remote"]).status, 0)
        let r = TestSupport.cli(["pull", dir + "/remote", "lora@0.1.0", "--json"], store: dir + "/edge")
        XCTAssertEqual(r.status, 0, r.stderr)
        XCTAssertEqual(try TestSupport.json(r)["versions"], .array([.string("lora@0.1.0"), .string("base@1.0.0")]))
        XCTAssertEqual(TestSupport.cli(["show", "base@1.0.0"], store: dir + "/edge").status, 0)
    }

    func testStagesArePublishedInTheManifest() throws {
        XCTAssertEqual(cli(["add", "m@1.0.0", model("a", seed: 1)]).status, 0)
        XCTAssertEqual(cli(["promote", "m@1.0.0", "production", "--skip-staging"]).status, 0)
        XCTAssertEqual(cli(["push", dir + "/remote"]).status, 0)
        let manifest = try TestSupport.publishedManifest(dir + "/remote")
        XCTAssertEqual(manifest.models["m"]?.stages["production"], "1.0.0")
        let r = TestSupport.cli(["pull", dir + "/remote", "m@production", "--json"], store: dir + "/edge")
        XCTAssertEqual(try TestSupport.json(r)["version"]?.stringValue, "1.0.0")
    }
}
