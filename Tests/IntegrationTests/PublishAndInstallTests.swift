import XCTest
@testable import SLMStoreKit
@testable import SLMFormats
@testable import SLMLocalStore
@testable import SLMRemote
@testable import SLMDevice
@testable import SLMPages
import SLMSynthetic
import SLMTestSupport

/// The one way to publish and the one way to install, end to end through the CLI: what push
/// refuses, what concurrent publishers keep, and remotes that say odd things.
final class PublishAndInstallTests: XCTestCase {
    var dir = ""
    var publisher = ""
    var remote = ""

    override func setUp() {
        dir = TestSupport.scratch()
        publisher = dir + "/publisher"
        remote = dir + "/remote"
    }

    @discardableResult
    func add(_ ref: String, store: String? = nil, seed: UInt64, extra: [String] = []) -> TestSupport.Run {
        let src = "\(dir)/src-\(ref)-\(seed)"
        TestSupport.write(TestSupport.random(50_000, seed: seed), to: src + "/weights.bin")
        let r = TestSupport.cli(["add", ref, src] + extra, store: store ?? publisher)
        XCTAssertEqual(r.status, 0, r.stderr)
        return r
    }

    func manifestVersions(_ model: String) throws -> Set<String> {
        let m = try TestSupport.publishedManifest(remote)
        return Set(m.models[model]?.versions.map(\.version) ?? [])
    }

    func testPushToAnUnsupportedSchemeIsRefusedAndCreatesNothing() throws {
        add("m@1.0.0", seed: 1)
        let cwd = dir + "/cwd"
        try FileSystem.makeDirectories(cwd)
        for remote in ["gs://bucket/prefix", "ftp://host/store", "s4://bucket/x"] {
            let r = TestSupport.cli(["push", remote], store: publisher, cwd: cwd)
            XCTAssertEqual(r.status, 2, r.stderr)
            XCTAssertTrue(r.stderr.contains(remote), r.stderr)
        }
        XCTAssertEqual(try FileSystem.listDirectory(cwd), [], "no directory named after a scheme appears")
    }

    func testPushIntoADirectoryThatIsNotAStoreIsRefused() throws {
        add("m@1.0.0", seed: 1)
        TestSupport.write(Array("keep me".utf8), to: remote + "/notes.txt")
        let r = TestSupport.cli(["push", remote], store: publisher)
        XCTAssertEqual(r.status, 1, r.stderr)
        XCTAssertTrue(r.stderr.contains("not a slmstore store"), r.stderr)
        XCTAssertEqual(try FileSystem.listDirectory(remote), ["notes.txt"])
    }

    func testConcurrentPushesOfDifferentVersionsAreAllListed() throws {
        let other = dir + "/publisher-b"
        var expected = Set<String>()
        for round in 0..<8 {
            add("m@1.\(round).0", seed: UInt64(100 + round))
            add("m@2.\(round).0", store: other, seed: UInt64(200 + round))
            expected.formUnion(["1.\(round).0", "2.\(round).0"])
            let a = try TestSupport.spawn(["push", remote, "m@1.\(round).0"], store: publisher)
            let b = try TestSupport.spawn(["push", remote, "m@2.\(round).0"], store: other)
            a.waitUntilExit()
            b.waitUntilExit()
            XCTAssertEqual(a.terminationStatus, 0, "round \(round)")
            XCTAssertEqual(b.terminationStatus, 0, "round \(round)")
            XCTAssertEqual(try manifestVersions("m"), expected, "round \(round): a publisher's version went missing")
        }
        XCTAssertEqual(TestSupport.cli(["verify"], store: remote).status, 0)
    }

    func testPushStopsAtADependencyThatDoesNotResolve() throws {
        add("tok@1.0.0", seed: 1)
        add("m@1.0.0", seed: 2, extra: ["--depends", "tok@^1"])
        FileSystem.remove(publisher + "/refs/tok/@versions/1.0.0")   // a store damaged by hand
        let r = TestSupport.cli(["push", remote, "m@1.0.0"], store: publisher)
        XCTAssertEqual(r.status, 3, r.stderr)
        XCTAssertTrue(r.stderr.contains("tok@^1"), r.stderr)
        XCTAssertFalse(FileSystem.exists(remote + "/refs/m/@versions/1.0.0"), "m must not be published without what it needs")
    }

    func testPullKeepsTheExactVersionObjectBytesItVerified() throws {
        add("m@1.0.0", seed: 1)
        XCTAssertEqual(TestSupport.cli(["push", remote], store: publisher).status, 0)
        // Another writer's version object with a key this release does not know (readers ignore it).
        let refPath = remote + "/refs/m/@versions/1.0.0"
        let oldID = try Store.parseRefFile(TestSupport.read(refPath), source: refPath)
        let store = try Store.open(at: remote)
        guard case var .object(fields) = try JSONValue.parse(try store.readObject(oldID, limit: 1 << 20)) else { return XCTFail() }
        fields["x_future_key"] = .string("ignored")
        let bytes = JSONValue.object(fields).canonicalBytes()
        let newID = try store.writeObject(bytes)
        TestSupport.write(Array((newID.hex + "\n").utf8), to: refPath)
        try TestSupport.rewriteManifest(remote) { m in
            for i in m.models["m"]!.versions.indices where m.models["m"]!.versions[i].id == oldID { m.models["m"]!.versions[i].id = newID }
        }

        let edge = dir + "/edge"
        let r = TestSupport.cli(["pull", remote, "m@1.0.0", "--to", dir + "/device"], store: edge)
        XCTAssertEqual(r.status, 0, r.stderr)
        XCTAssertEqual(TestSupport.cli(["verify"], store: edge).status, 0)
        XCTAssertEqual(TestSupport.cli(["ls"], store: edge).status, 0)
        XCTAssertEqual(TestSupport.cli(["gc"], store: edge).status, 0)
        XCTAssertEqual(try Store.open(at: edge).readRef(at: edge + "/refs/m/@versions/1.0.0"), newID)
    }

    func testAStageNamingAnUnlistedVersionFailsClearlyInPullAndSync() throws {
        add("m@1.0.0", seed: 1)
        XCTAssertEqual(TestSupport.cli(["promote", "m@1.0.0", "production", "--skip-staging"], store: publisher).status, 0)
        XCTAssertEqual(TestSupport.cli(["push", remote], store: publisher).status, 0)
        let path = remote + "/manifest.json"
        guard case var .object(top) = try JSONValue.parse(TestSupport.read(path)),
              case var .object(models) = top["models"]!, case var .object(m) = models["m"]! else { return XCTFail() }
        m["stages"] = .object(["production": .object(["version": .string("9.9.9"), "id": .string(String(repeating: "0", count: 64))])])
        models["m"] = .object(m)
        top["models"] = .object(models)
        TestSupport.write(JSONValue.object(top).canonicalBytes(), to: path)

        let pull = TestSupport.cli(["pull", remote, "m@production"], store: dir + "/edge")
        XCTAssertEqual(pull.status, 6, pull.stderr)
        XCTAssertTrue(pull.stderr.contains("9.9.9"), pull.stderr)
        let sync = TestSupport.cli(["sync", remote, "--to", dir + "/device", "--follow", "m@production", "--once"])
        XCTAssertEqual(sync.status, 1, sync.stderr)
        let status = try TestSupport.json(TestSupport.cli(["status", "--to", dir + "/device", "--json"]))
        XCTAssertTrue(status["last_error"]?.stringValue?.contains("9.9.9") ?? false, "\(status)")
    }

    func testSyncStopsOnAManifestFormatItCannotReadAndKeepsTheInstalledVersion() throws {
        add("m@1.0.0", seed: 1)
        XCTAssertEqual(TestSupport.cli(["push", remote], store: publisher).status, 0)
        let device = dir + "/device"
        XCTAssertEqual(TestSupport.cli(["sync", remote, "--to", device, "--follow", "m@latest", "--once"]).status, 0)
        let path = remote + "/manifest.json"
        guard case var .object(top) = try JSONValue.parse(TestSupport.read(path)) else { return XCTFail() }
        top["format"] = .int(Manifest.currentFormat + 1)
        TestSupport.write(JSONValue.object(top).canonicalBytes(), to: path)
        let start = Date()
        // Not --once: a daemon that retried forever would never return.
        let r = TestSupport.cli(["sync", remote, "--to", device, "--follow", "m@latest", "--interval", "1s"])
        XCTAssertEqual(r.status, 7, r.stdout + r.stderr)
        XCTAssertLessThan(Date().timeIntervalSince(start), 20)
        XCTAssertTrue(r.stdout.contains("upgrade slmstore"), r.stdout)
        XCTAssertEqual(InstallDirectory(root: device + "/m").current(), "1.0.0")
    }

    func testGCKeepsTheDataOfRefsWhoseNamesItCannotParse() throws {
        add("m@1.0.0", seed: 1)
        let versions = publisher + "/refs/m/@versions"
        TestSupport.write(TestSupport.read(versions + "/1.0.0"), to: versions + "/1.0.0+from-a-later-release~x")
        FileSystem.remove(versions + "/1.0.0")
        XCTAssertEqual(TestSupport.cli(["gc"], store: publisher).status, 0)
        try FileSystem.rename(versions + "/1.0.0+from-a-later-release~x", versions + "/1.0.0")
        XCTAssertEqual(TestSupport.cli(["verify"], store: publisher).status, 0)
        let out = dir + "/out"
        XCTAssertEqual(TestSupport.cli(["checkout", "m@1.0.0", out], store: publisher).status, 0)
        XCTAssertSameBytes(TestSupport.read(out + "/weights.bin"), TestSupport.random(50_000, seed: 1))
    }
}
