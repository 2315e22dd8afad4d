import XCTest
@testable import SLMStoreKit
@testable import SLMFormats
@testable import SLMLocalStore
@testable import SLMRemote
@testable import SLMDevice
@testable import SLMPages
import SLMSynthetic
import SLMTestSupport

/// A real `slmstore add` killed with SIGKILL at any moment leaves a store that passes verify,
/// and two adds at once both land.
final class CrashTests: XCTestCase {
    var dir = ""
    var storePath = ""

    override func setUp() {
        dir = TestSupport.scratch()
        storePath = dir + "/store"
        TestSupport.cli(["init"], store: storePath)
    }

    func source(_ name: String, size: Int, seed: UInt64) -> String {
        let path = "\(dir)/\(name)"
        TestSupport.write(TestSupport.bf16Like(size, seed: seed), to: path + "/weights.bin")
        TestSupport.write(Array("{}".utf8), to: path + "/config.json")
        return path
    }

    func assertVerifies(_ context: String, file: StaticString = #filePath, line: UInt = #line) {
        let r = TestSupport.cli(["verify", "--json"], store: storePath)
        XCTAssertEqual(r.status, 0, "\(context): \(r.stdout) \(r.stderr)", file: file, line: line)
    }

    func testKillAtEachCommitStepLeavesAVerifiableStore() throws {
        let src = source("m", size: 1_500_000, seed: 1)
        let points = ["add-before-commit", "add-between-pack-and-index", "add-after-packs", "publish-before-refs"]
        for (i, point) in points.enumerated() {
            let r = TestSupport.cli(["add", "m@1.0.\(i)", src], store: storePath, environment: ["SLMSTORE_CRASH_AT": point])
            XCTAssertEqual(r.status, 9, "process should have died by SIGKILL at \(point)")  // Process reports the signal number
            assertVerifies(point)
            let show = TestSupport.cli(["show", "m@1.0.\(i)"], store: storePath)
            XCTAssertNotEqual(show.status, 0, "a killed add must not leave a version ref (\(point))")
        }
        // The store still works: the same add now completes and reads back.
        XCTAssertEqual(TestSupport.cli(["add", "m@1.0.0", src], store: storePath).status, 0)
        XCTAssertEqual(TestSupport.cli(["checkout", "m@1.0.0", dir + "/out"], store: storePath).status, 0)
        XCTAssertSameBytes(TestSupport.read(dir + "/out/weights.bin"), TestSupport.read(src + "/weights.bin"))
        assertVerifies("after recovery")
    }

    func testKillAfterRefLeavesACompleteVersion() {
        let src = source("m", size: 500_000, seed: 2)
        let r = TestSupport.cli(["add", "m@1.0.0", src], store: storePath, environment: ["SLMSTORE_CRASH_AT": "add-after-ref"])
        XCTAssertEqual(r.status, 9)
        assertVerifies("after ref")
        XCTAssertEqual(TestSupport.cli(["checkout", "m@1.0.0", dir + "/out"], store: storePath).status, 0)
        XCTAssertSameBytes(TestSupport.read(dir + "/out/weights.bin"), TestSupport.read(src + "/weights.bin"))
    }

    func testKillAtRandomMomentsDuringAddLeavesAVerifiableStore() throws {
        let src = source("big", size: 12_000_000, seed: 3)
        var rng = SplitMix(42)
        for round in 0..<6 {
            let p = try TestSupport.spawn(["add", "big@1.0.\(round)", src], store: storePath)
            usleep(useconds_t(20_000 + rng.next() % 400_000))
            TestSupport.killAndReap(p)
            assertVerifies("random kill \(round)")
            // Any version that made it is complete.
            let ls = try TestSupport.json(TestSupport.cli(["ls", "--json"], store: storePath))
            for m in ls["models"]?.arrayValue ?? [] {
                for v in m["versions"]?.arrayValue ?? [] {
                    let ref = "big@\(v["version"]!.stringValue!)"
                    let out = "\(dir)/check-\(round)-\(v["version"]!.stringValue!)"
                    XCTAssertEqual(TestSupport.cli(["checkout", ref, out], store: storePath).status, 0, ref)
                }
            }
        }
    }

    func testTwoConcurrentAddsBothSucceed() throws {
        let a = source("a", size: 4_000_000, seed: 4)
        let b = source("b", size: 4_000_000, seed: 5)
        var procs: [Process] = []
        for (ref, src) in [("a@1.0.0", a), ("b@1.0.0", b), ("a@1.1.0", b)] {
            procs.append(try TestSupport.spawn(["add", ref, src], store: storePath))
        }
        for p in procs { p.waitUntilExit(); XCTAssertEqual(p.terminationStatus, 0) }
        assertVerifies("concurrent adds")
        for (ref, src) in [("a@1.0.0", a), ("b@1.0.0", b), ("a@1.1.0", b)] {
            let out = "\(dir)/out-\(ref)"
            XCTAssertEqual(TestSupport.cli(["checkout", ref, out], store: storePath).status, 0)
            XCTAssertSameBytes(TestSupport.read(out + "/weights.bin"), TestSupport.read(src + "/weights.bin"))
        }
    }
}
