import XCTest
@testable import SLMStoreKit
@testable import SLMFormats
@testable import SLMLocalStore
@testable import SLMRemote
@testable import SLMDevice
@testable import SLMPages
import SLMSynthetic
import SLMTestSupport

/// The gateway swaps versions atomically under concurrent readers: no reader ever sees a mixed
/// or missing file, and handles stay valid while the stage moves.
final class GatewayTests: XCTestCase {
    func testHotSwapUnderConcurrentReaders() throws {
        let dir = TestSupport.scratch()
        let store = try Store.create(at: dir + "/store")
        // Each version: two files that name the version, so a mix is detectable.
        var expected: [String: [String: SHA256Digest]] = [:]
        for v in ["1.0.0", "1.1.0", "1.2.0"] {
            let src = "\(dir)/src-\(v)"
            let a = Array("version \(v)\n".utf8) + TestSupport.random(300_000, seed: UInt64(v.hashValueStable))
            let b = Array("paired with \(v)\n".utf8)
            TestSupport.write(a, to: src + "/weights.bin")
            TestSupport.write(b, to: src + "/config.txt")
            expected[v] = ["weights.bin": SHA256Hasher.hash(a), "config.txt": SHA256Hasher.hash(b)]
            _ = try store.add(name: try ModelName("m"), version: try SemVer(v), inputs: try AddInputs.collect([src]))
        }
        var o = PromoteOptions()
        o.skipStaging = true
        _ = try store.promote(try store.resolve("m@1.0.0"), to: "production", options: o)

        let gateway = ModelGateway(source: .store(store, cache: dir + "/cache"))
        XCTAssertEqual(try gateway.current("m").version, "1.0.0")
        let expectedDigests = expected
        let stop = ManagedAtomicFlag()
        let failures = ManagedCounter()
        let reads = ManagedCounter()
        let group = DispatchGroup()
        for _ in 0..<6 {
            group.enter()
            Thread.detachNewThread {
                defer { group.leave() }
                while !stop.isSet {
                    guard let h = try? gateway.current("m") else { failures.add(); continue }
                    let w = TestSupport.read(h.path("weights.bin"))
                    let c = TestSupport.read(h.path("config.txt"))
                    let want = expectedDigests[h.version]!
                    if SHA256Hasher.hash(w) != want["weights.bin"] || SHA256Hasher.hash(c) != want["config.txt"] { failures.add() }
                    reads.add()
                }
            }
        }
        // Flip production back and forth while the readers run; the gateway follows.
        for v in ["1.1.0", "1.2.0", "1.0.0", "1.2.0", "1.1.0"] {
            _ = try store.promote(try store.resolve("m@\(v)"), to: "production", options: o)
            gateway.poll()
            XCTAssertEqual(try gateway.current("m").version, v)
            usleep(100_000)
        }
        _ = try store.rollback(try ModelName("m"), stage: "production")
        gateway.poll()
        XCTAssertEqual(try gateway.current("m").version, "1.2.0")
        stop.set()
        group.wait()
        XCTAssertEqual(failures.value, 0, "a reader saw a mixed or missing file")
        XCTAssertGreaterThan(reads.value, 20)
        // Old versions were pruned once no handle held them.
        XCTAssertLessThanOrEqual(InstallDirectory(root: dir + "/cache/m").installedVersions().count, 2)
    }

    func testAHandleKeepsItsFilesWhileTheStageMoves() throws {
        let dir = TestSupport.scratch()
        let store = try Store.create(at: dir + "/store")
        for v in ["1.0.0", "1.1.0", "1.2.0"] {
            TestSupport.write(Array(v.utf8), to: "\(dir)/s\(v)/f.txt")
            _ = try store.add(name: try ModelName("m"), version: try SemVer(v), inputs: try AddInputs.collect(["\(dir)/s\(v)"]))
        }
        let gateway = ModelGateway(source: .store(store, cache: dir + "/cache"))
        let held = try gateway.resolve("m", "1.0.0")
        try gateway.switchTo("m", selector: "1.1.0")
        try gateway.switchTo("m", selector: "1.2.0")
        XCTAssertEqual(TestSupport.read(held.path("f.txt")), Array("1.0.0".utf8), "pruning skipped the version in use")
    }

    func testInstalledDirectorySourceFollowsCurrent() throws {
        let dir = TestSupport.scratch()
        let store = try Store.create(at: dir + "/store")
        for v in ["1.0.0", "1.1.0"] {
            TestSupport.write(Array(v.utf8), to: "\(dir)/s\(v)/f.txt")
            _ = try store.add(name: try ModelName("m"), version: try SemVer(v), inputs: try AddInputs.collect(["\(dir)/s\(v)"]))
        }
        _ = try store.push(to: LocalBackend(root: dir + "/remote"), refs: [])
        var o = PullOptions()
        o.installDirectory = dir + "/device/m"
        _ = try store.pull(from: LocalBackend(root: dir + "/remote"), ref: try VersionRef.parse("m@1.0.0"), options: o)
        let gateway = ModelGateway(source: .installed(root: dir + "/device"))
        XCTAssertEqual(try gateway.current("m").version, "1.0.0")
        _ = try store.pull(from: LocalBackend(root: dir + "/remote"), ref: try VersionRef.parse("m@1.1.0"), options: o)
        gateway.poll()
        XCTAssertEqual(TestSupport.read(try gateway.current("m").path("f.txt")), Array("1.1.0".utf8))
    }
}
