import XCTest
@testable import SLMStoreKit
@testable import SLMFormats
@testable import SLMLocalStore
@testable import SLMRemote
@testable import SLMDevice
@testable import SLMPages
import SLMSynthetic
import SLMTestSupport

/// diff, push and pull against a real nginx on loopback: only missing chunks travel, in few
/// requests, verified; hostile answers are refused and leave the edge intact.
final class DeliveryTests: XCTestCase {
    var dir = ""
    var publisher = ""   // the store versions are added to
    var remote = ""      // the pushed store directory nginx serves
    var edge = ""        // the device's store
    var nginx: NginxServer!
    var v1 = "", v2 = ""

    override func setUpWithError() throws {
        dir = TestSupport.scratch()
        publisher = dir + "/publisher"
        remote = dir + "/remote"
        edge = dir + "/edge-store"
        let m1 = SyntheticModel.llamaLike(targetBytes: 6 << 20)
        let (m2, _) = m1.fineTuned(fraction: 0.10)
        v1 = dir + "/v1"; v2 = dir + "/v2"
        for (path, m) in [(v1, m1), (v2, m2)] {
            try FileSystem.makeDirectories(path)
            try m.write(to: path + "/model.safetensors")
            TestSupport.write(m.configJSON, to: path + "/config.json")
        }
        XCTAssertEqual(TestSupport.cli(["add", "intent@2.1.0", v1], store: publisher).status, 0)
        XCTAssertEqual(TestSupport.cli(["add", "intent@2.2.0", v2], store: publisher).status, 0)
        let push = TestSupport.cli(["push", remote], store: publisher)
        XCTAssertEqual(push.status, 0, push.stderr)
        nginx = try NginxServer(serving: remote)
    }

    override func tearDown() { nginx?.stop() }

    func pull(_ ref: String, from url: String? = nil, to install: String? = nil, extra: [String] = [],
              env: [String: String] = [:]) -> TestSupport.Run {
        TestSupport.cli(["pull", url ?? nginx.url, ref, "--json"] + (install.map { ["--to", $0] } ?? []) + extra,
                        store: edge, environment: env)
    }

    func versionCompressedBytes(_ ref: String) throws -> UInt64 {
        let show = try TestSupport.json(TestSupport.cli(["show", ref, "--json"], store: publisher))
        return show["stats"]!["stored_bytes"]!.uint64Value!
    }

    func assertInstalled(_ install: String, matches source: String, file: StaticString = #filePath, line: UInt = #line) {
        for name in ["model.safetensors", "config.json"] {
            XCTAssertSameBytes(TestSupport.read("\(install)/current/\(name)"), TestSupport.read("\(source)/\(name)"), name, file: file, line: line)
        }
    }

    func testFullPullStaysWithinTheWireBudget() throws {
        let r = pull("intent@2.1.0", to: dir + "/device")
        XCTAssertEqual(r.status, 0, r.stderr)
        let j = try TestSupport.json(r)
        let chunkBytes = try versionCompressedBytes("intent@2.1.0")
        let downloaded = j["bytes_downloaded"]!.uint64Value!
        let metadata = j["metadata_bytes"]!.uint64Value!
        XCTAssertEqual(j["chunk_bytes"]!.uint64Value!, chunkBytes)
        XCTAssertLessThanOrEqual(Double(downloaded), 1.02 * Double(chunkBytes) + Double(metadata))
        XCTAssertLessThan(j["requests"]!.uint64Value!, j["chunks_fetched"]!.uint64Value! / 4)
        assertInstalled(dir + "/device", matches: v1)
        XCTAssertEqual(TestSupport.cli(["verify"], store: edge).status, 0)
    }

    func testUpdatePullFetchesExactlyWhatDiffPredicts() throws {
        XCTAssertEqual(pull("intent@2.1.0", to: dir + "/device").status, 0)
        let diff = try TestSupport.json(TestSupport.cli(["diff", "intent@2.1.0", "intent@2.2.0", "--json"], store: publisher))
        let before = nginx.accessLog.count
        let r = pull("intent@2.2.0", to: dir + "/device")
        XCTAssertEqual(r.status, 0, r.stderr)
        let j = try TestSupport.json(r)
        let toFetch = diff["bytes_to_fetch"]!.uint64Value!
        XCTAssertEqual(j["chunk_bytes"]!.uint64Value!, toFetch)
        XCTAssertEqual(j["chunks_fetched"]!.uint64Value!, diff["chunks_to_fetch"]!.uint64Value!)
        XCTAssertLessThanOrEqual(Double(j["range_bytes"]!.uint64Value!), 1.10 * Double(toFetch))
        let total = diff["total_raw_bytes"]!.uint64Value!
        XCTAssertLessThanOrEqual(Double(j["metadata_bytes"]!.uint64Value!), 0.01 * Double(total) + 256 * 1024)
        let rangeRequests = nginx.accessLog.dropFirst(before).filter { $0.contains(".pack") }.count
        XCTAssertLessThan(rangeRequests, diff["chunks_to_fetch"]!.arrayValue?.count ?? Int(diff["chunks_to_fetch"]!.uint64Value!))
        XCTAssertEqual(UInt64(nginx.accessLog.count - before), j["requests"]!.uint64Value!, "client and server agree on the request count")
        assertInstalled(dir + "/device", matches: v2)
    }

    func testDiffNamesTheChangedTensors() throws {
        let d = try TestSupport.json(TestSupport.cli(["diff", "intent@2.1.0", "intent@2.2.0", "--json"], store: publisher))
        let model = d["files"]!.arrayValue!.first { $0["path"]?.stringValue == "model.safetensors" }!
        XCTAssertEqual(model["status"]?.stringValue, "changed")
        let changed = model["changed_tensors"]!.arrayValue!
        XCTAssertFalse(changed.isEmpty)
        let (_, changedBytes) = SyntheticModel.llamaLike(targetBytes: 6 << 20).fineTuned(fraction: 0.10)
        XCTAssertEqual(changed.reduce(UInt64(0)) { $0 + $1["bytes"]!.uint64Value! }, UInt64(changedBytes))
        XCTAssertEqual(d["files"]!.arrayValue!.first { $0["path"]?.stringValue == "config.json" }?["status"]?.stringValue, "unchanged")
    }

    func testMetadataOnlyChangeIsReportedAsSuch() throws {
        let m = SyntheticModel.llamaLike(targetBytes: 2 << 20)
        let a = dir + "/ma", b = dir + "/mb"
        try FileSystem.makeDirectories(a); try FileSystem.makeDirectories(b)
        try m.write(to: a + "/model.safetensors")
        try m.withMetadata("note", "retagged").write(to: b + "/model.safetensors")
        TestSupport.cli(["add", "meta@1.0.0", a], store: publisher)
        TestSupport.cli(["add", "meta@1.0.1", b], store: publisher)
        let d = try TestSupport.json(TestSupport.cli(["diff", "meta@1.0.0", "meta@1.0.1", "--json"], store: publisher))
        let f = d["files"]!.arrayValue![0]
        XCTAssertEqual(f["metadata_only"]?.boolValue, true)
        XCTAssertEqual(f["changed_tensors"]?.arrayValue?.count, 0)
        XCTAssertLessThan(d["bytes_to_fetch"]!.uint64Value!, 128 * 1024)
    }

    func testPullResumesAfterSIGKILLWithoutRefetchingStoredChunks() throws {
        // Dies right after the first batch of verified chunks became durable.
        let killed = TestSupport.cli(["pull", nginx.url, "intent@2.1.0", "--to", dir + "/device", "--parallel", "1"],
                                     store: edge, environment: ["SLMSTORE_CRASH_AT": "pull-after-commit", "SLMSTORE_PULL_COMMIT_BYTES": "1048576"])
        XCTAssertEqual(killed.status, 9)
        XCTAssertEqual(TestSupport.cli(["verify"], store: edge).status, 0)
        XCTAssertFalse(FileSystem.exists(dir + "/device/current"), "nothing is installed by a killed pull")
        let r = pull("intent@2.1.0", to: dir + "/device")
        XCTAssertEqual(r.status, 0, r.stderr)
        let j = try TestSupport.json(r)
        let full = try versionCompressedBytes("intent@2.1.0")
        XCTAssertLessThan(j["chunk_bytes"]!.uint64Value!, full, "the resumed pull fetched only what the killed one had not stored")
        assertInstalled(dir + "/device", matches: v1)
    }

    /// A pull planned in windows keeps what earlier windows stored when it dies between two:
    /// the next pull plans only the rest.
    func testAPullKilledBetweenPlanningWindowsResumesWithTheRest() throws {
        let killed = TestSupport.cli(["pull", nginx.url, "intent@2.1.0", "--to", dir + "/device", "--parallel", "1"], store: edge,
                                     environment: ["SLMSTORE_CRASH_AT": "pull-after-window", "SLMSTORE_PULL_WINDOW_CHUNKS": "24",
                                                   "SLMSTORE_PULL_COMMIT_BYTES": "262144"])
        XCTAssertEqual(killed.status, 9, killed.stderr)
        XCTAssertEqual(TestSupport.cli(["verify"], store: edge).status, 0)
        XCTAssertFalse(FileSystem.exists(dir + "/device/current"), "nothing is installed by a killed pull")
        let r = pull("intent@2.1.0", to: dir + "/device")
        XCTAssertEqual(r.status, 0, r.stderr)
        let j = try TestSupport.json(r)
        XCTAssertGreaterThan(j["chunks_fetched"]!.uint64Value!, 0)
        XCTAssertLessThan(j["chunk_bytes"]!.uint64Value!, try versionCompressedBytes("intent@2.1.0"),
                          "the first window's chunks were kept")
        assertInstalled(dir + "/device", matches: v1)
    }

    func testTransientFaultsAreRetried() throws {
        for mode in ["drop", "error500", "truncate"] {
            let proxy = try FaultProxy(upstream: nginx.port, mode: mode, count: 2)
            let store = "\(dir)/edge-\(mode)"
            let r = TestSupport.cli(["pull", proxy.url, "intent@2.1.0", "--to", "\(dir)/dev-\(mode)"], store: store)
            XCTAssertEqual(r.status, 0, "\(mode): \(r.stderr)")
            XCTAssertSameBytes(TestSupport.read("\(dir)/dev-\(mode)/current/model.safetensors"), TestSupport.read(v1 + "/model.safetensors"), mode)
        }
    }

    /// Range bodies are verified as they stream in, so a connection cut halfway leaves the
    /// records before the cut verified; the retry asks for the rest of that range only.
    func testARangeCutMidwayIsResumedFromTheCutNotFromItsStart() throws {
        let log = dir + "/ranges.log"
        let proxy = try FaultProxy(upstream: nginx.port, mode: "drop", count: 1, log: log)
        let r = TestSupport.cli(["pull", proxy.url, "intent@2.1.0", "--to", dir + "/device"], store: edge)
        XCTAssertEqual(r.status, 0, r.stderr)
        assertInstalled(dir + "/device", matches: v1)
        // (path, first byte, last byte) of each range request, in the order they were made.
        let requests = String(decoding: TestSupport.read(log), as: UTF8.self).split(separator: "\n").map { line in
            let parts = line.split(separator: " ")
            let span = parts[1].dropFirst("bytes=".count).split(separator: "-").map { UInt64($0)! }
            return (String(parts[0]), span[0], span[1])
        }
        let resumed = requests.indices.contains { i in
            requests[(i + 1)...].contains { $0.0 == requests[i].0 && $0.2 == requests[i].2 && $0.1 > requests[i].1 }
        }
        XCTAssertTrue(resumed, "a later request asks for the tail of the cut range only: \(requests)")
        XCTAssertEqual(Set(requests.map { "\($0.0) \($0.1)" }).count, requests.count, "no range is asked for twice from its start: \(requests)")
    }

    func testHostileAnswersAreRefusedAndLeaveTheInstalledVersionIntact() throws {
        XCTAssertEqual(pull("intent@2.1.0", to: dir + "/device").status, 0)
        for (mode, message) in [("corrupt", "served bad data"), ("ignore-range", "ignored the Range header"),
                                ("oversize", "larger than"), ("redirect-loop", "redirect"), ("shift-range", "Content-Range")] {
            let proxy = try FaultProxy(upstream: nginx.port, mode: mode)
            let r = TestSupport.cli(["pull", proxy.url, "intent@2.2.0", "--to", dir + "/device"], store: edge)
            XCTAssertNotEqual(r.status, 0, mode)
            XCTAssertTrue(r.stderr.contains(message) && r.stderr.contains("127.0.0.1"), "\(mode): \(r.stderr)")
            XCTAssertEqual(InstallDirectory(root: dir + "/device").current(), "2.1.0", mode)
            assertInstalled(dir + "/device", matches: v1)
            XCTAssertEqual(TestSupport.cli(["verify"], store: edge).status, 0, mode)
        }
        // With an honest server the same pull now succeeds.
        XCTAssertEqual(pull("intent@2.2.0", to: dir + "/device").status, 0)
        assertInstalled(dir + "/device", matches: v2)
    }

    /// A second remote serves another (valid) pack index under one of this remote's pack ids:
    /// pulling from it fails, and pulls from this remote are unaffected, since cached indexes are
    /// kept per remote. gc empties the cache.
    func testAnotherRemotesIndexUnderTheSamePackIDCannotPoisonThisRemote() throws {
        let forged = dir + "/forged"
        try FileManager.default.copyItem(atPath: remote, toPath: forged)
        let ids = try FileSystem.listDirectory(forged + "/packs").filter { $0.hasSuffix(".idx") }.sorted()
        XCTAssertGreaterThanOrEqual(ids.count, 1)
        // Swap in an index that is valid on its own but describes another pack.
        let other = TestSupport.safetensors([("x", "BF16", [200_000], TestSupport.bf16Like(400_000, seed: 77))])
        TestSupport.write(other, to: dir + "/other/x.safetensors")
        let scratch = dir + "/scratch-store"
        XCTAssertEqual(TestSupport.cli(["add", "x@1.0.0", dir + "/other"], store: scratch).status, 0)
        let otherIdx = try XCTUnwrap(try FileSystem.listDirectory(scratch + "/packs").first { $0.hasSuffix(".idx") })
        for id in ids { TestSupport.write(TestSupport.read(scratch + "/packs/" + otherIdx), to: forged + "/packs/" + id) }
        XCTAssertNotEqual(TestSupport.cli(["pull", forged, "intent@2.1.0"], store: edge).status, 0)
        let r = pull("intent@2.1.0")
        XCTAssertEqual(r.status, 0, r.stderr)
        XCTAssertTrue(FileSystem.isDirectory(edge + "/cache/pack-indexes"))
        XCTAssertEqual(TestSupport.cli(["gc"], store: edge).status, 0)
        XCTAssertFalse(FileSystem.exists(edge + "/cache/pack-indexes"))
        XCTAssertEqual(pull("intent@2.2.0").status, 0)
        XCTAssertEqual(TestSupport.cli(["verify"], store: edge).status, 0)
    }

    /// One forged answer for an index from this same remote (a man in the middle): the manifest
    /// names each index's checksum, so the forged one is refused and never cached, and once the
    /// real one is served the pull succeeds.
    func testAForgedIndexFromTheSameRemoteIsRefusedByItsChecksumAndNotCached() throws {
        let manifest = try TestSupport.publishedManifest(remote)
        XCTAssertEqual(Set(manifest.packIndexChecksums.keys), Set(manifest.packs))
        let ids = try FileSystem.listDirectory(remote + "/packs").filter { $0.hasSuffix(".idx") }.sorted()
        let other = TestSupport.safetensors([("x", "BF16", [200_000], TestSupport.bf16Like(400_000, seed: 78))])
        TestSupport.write(other, to: dir + "/other/x.safetensors")
        let scratch = dir + "/scratch-store"
        XCTAssertEqual(TestSupport.cli(["add", "x@1.0.0", dir + "/other"], store: scratch).status, 0)
        let otherIdx = try XCTUnwrap(try FileSystem.listDirectory(scratch + "/packs").first { $0.hasSuffix(".idx") })
        var saved: [String: [UInt8]] = [:]
        for id in ids {
            saved[id] = TestSupport.read(remote + "/packs/" + id)
            TestSupport.write(TestSupport.read(scratch + "/packs/" + otherIdx), to: remote + "/packs/" + id)
        }
        let forged = pull("intent@2.1.0")
        XCTAssertEqual(forged.status, 6)
        XCTAssertTrue(forged.stderr.contains("the manifest lists"), forged.stderr)
        for (id, bytes) in saved { TestSupport.write(bytes, to: remote + "/packs/" + id) }
        let r = pull("intent@2.1.0")
        XCTAssertEqual(r.status, 0, r.stderr)
    }

    func testTreeWithEscapingPathOnTheRemoteIsRefused() throws {
        let store = try Store.open(at: remote)
        let entry = FileEntry(path: "../../escape.txt", size: 0, sha256: SHA256Hasher.hash([]), chunks: [], safetensors: nil)
        let treeID = try store.writeObject(TreeObject(files: [entry]).encoded())
        let v = VersionObject(name: "evil", version: try SemVer("1.0.0"), tree: treeID, parent: nil, created: Timestamp.now(), addedBy: "x", tool: "x")
        try store.writeRef(at: store.versionRefPath(try ModelName("evil"), v.version), id: try store.writeObject(v.encoded()))
        let r = pull("evil@1.0.0", to: dir + "/device")
        XCTAssertNotEqual(r.status, 0)
        XCTAssertTrue(r.stderr.contains("unsafe file path"), r.stderr)
        XCTAssertFalse(FileSystem.exists(dir + "/escape.txt"))
    }

    func testMissingVersionIsAClearError() {
        let r = pull("intent@9.0.0")
        XCTAssertEqual(r.status, 3)
        XCTAssertTrue(r.stderr.contains("has no intent@9.0.0") && r.stderr.contains("2.1.0, 2.2.0"), r.stderr)
    }

    func testPullFromAPathRemoteAndByStageOrRange() throws {
        let r = TestSupport.cli(["pull", remote, "intent@^2.1", "--json"], store: edge)
        XCTAssertEqual(r.status, 0, r.stderr)
        XCTAssertEqual(try TestSupport.json(r)["version"]?.stringValue, "2.2.0")
        XCTAssertEqual(TestSupport.cli(["checkout", "intent@2.2.0", dir + "/co"], store: edge).status, 0)
        XCTAssertSameBytes(TestSupport.read(dir + "/co/model.safetensors"), TestSupport.read(v2 + "/model.safetensors"))
    }

    func testSeedDirectoryAvoidsDownloadingChunksFromFilesOnDisk() throws {
        XCTAssertEqual(pull("intent@2.1.0", to: dir + "/device").status, 0)
        // The device's chunk store is lost; the installed files are still there.
        try FileManager.default.removeItem(atPath: edge)
        let r = pull("intent@2.2.0", to: dir + "/device")
        XCTAssertEqual(r.status, 0, r.stderr)
        let j = try TestSupport.json(r)
        XCTAssertGreaterThan(j["chunks_from_seeds"]!.uint64Value!, 0)
        // The device no longer holds 2.1.0 in its store, so it cannot apply deltas: it fetches
        // what diff counts without them.
        let diff = try TestSupport.json(TestSupport.cli(["diff", "intent@2.1.0", "intent@2.2.0", "--json", "--no-delta"], store: publisher))
        XCTAssertEqual(j["chunk_bytes"]!.uint64Value!, diff["bytes_to_fetch"]!.uint64Value!)
        assertInstalled(dir + "/device", matches: v2)
    }

    func testKeepPrunesOlderInstalledVersions() throws {
        let m3 = dir + "/v3"
        try FileSystem.makeDirectories(m3)
        TestSupport.write(TestSupport.random(1000, seed: 1), to: m3 + "/extra.bin")
        TestSupport.cli(["add", "intent@2.3.0", v2, m3 + "/extra.bin"], store: publisher)
        TestSupport.cli(["push", remote], store: publisher)
        for v in ["2.1.0", "2.2.0", "2.3.0"] { XCTAssertEqual(pull("intent@\(v)", to: dir + "/device", extra: ["--keep", "1"]).status, 0) }
        XCTAssertEqual(InstallDirectory(root: dir + "/device").installedVersions().sorted(), ["2.2.0", "2.3.0"])
    }

    func testConcurrentPushesOfDifferentVersionsKeepBoth() throws {
        let target = dir + "/shared-remote"
        var procs: [Process] = []
        for ref in ["intent@2.1.0", "intent@2.2.0"] {
            procs.append(try TestSupport.spawn(["push", target, ref], store: publisher))
        }
        for p in procs { p.waitUntilExit(); XCTAssertEqual(p.terminationStatus, 0) }
        let manifest = try TestSupport.publishedManifest(target)
        XCTAssertEqual(manifest.models["intent"]?.versions.map(\.version), ["2.1.0", "2.2.0"])
        XCTAssertEqual(TestSupport.cli(["verify"], store: target).status, 0)
    }

    func testPushWhilePullingFromTheSameRemote() throws {
        let p = try TestSupport.spawn(["pull", remote, "intent@2.2.0", "--to", dir + "/device"], store: edge)
        let m3 = dir + "/v3"
        TestSupport.write(TestSupport.random(300_000, seed: 5), to: m3 + "/extra.bin")
        XCTAssertEqual(TestSupport.cli(["add", "intent@2.3.0", m3], store: publisher).status, 0)
        XCTAssertEqual(TestSupport.cli(["push", remote], store: publisher).status, 0)
        p.waitUntilExit()
        XCTAssertEqual(p.terminationStatus, 0)
        assertInstalled(dir + "/device", matches: v2)
        XCTAssertEqual(pull("intent@2.3.0").status, 0)
    }

    func testPushRefusesANonStoreDirectoryAndANewerFormat() throws {
        TestSupport.write([1, 2, 3], to: dir + "/junk/file")
        let r = TestSupport.cli(["push", dir + "/junk"], store: publisher)
        XCTAssertNotEqual(r.status, 0)
        XCTAssertTrue(r.stderr.contains("not a slmstore store"), r.stderr)
        let newer = dir + "/newer"
        try FileSystem.makeDirectories(newer)
        TestSupport.write(Array(#"{"chunker":{"algorithm":"fastcdc2020","avg_size":65536,"max_size":262144,"min_size":16384,"normalization":1},"compression":{"codec":"zstd","level":3},"format":2,"type":"slmstore"}"#.utf8), to: newer + "/config")
        let r2 = TestSupport.cli(["push", newer], store: publisher)
        XCTAssertNotEqual(r2.status, 0)
        XCTAssertTrue(r2.stderr.contains("newer than this build"), r2.stderr)
    }

    /// Reads 1000 bytes through a proxy that sends 5 a second (200 s in all; no pause ever
    /// reaches the idle timeout) and expects `policy` to cut the request with `message` in time.
    func assertTrickleIsCut(_ policy: HTTPClient.Policy, _ message: String, within seconds: Double,
                            file: StaticString = #filePath, line: UInt = #line) throws {
        let proxy = try FaultProxy(upstream: nginx.port, mode: "trickle")
        let backend = HTTPBackend(base: URL(string: proxy.url)!, policy: policy)
        let pack = try FileSystem.listDirectory(remote + "/packs").first { $0.hasSuffix(".pack") }!
        let start = Date()
        XCTAssertThrowsError(try backend.readRange("packs/\(pack)", range: 0..<1000), file: file, line: line) { error in
            XCTAssertTrue("\(error)".contains(message), "\(error)", file: file, line: line)
        }
        XCTAssertLessThan(Date().timeIntervalSince(start), seconds, file: file, line: line)
    }

    func testARequestTricklingBytesIsCutAtItsDeadline() throws {
        var policy = HTTPClient.Policy()
        policy.deadline = 2
        try assertTrickleIsCut(policy, "no complete response within 2 s", within: 10)
    }

    /// Finding 7: below the minimum rate a request ends long before its deadline.
    func testATricklingServerIsCutByTheMinimumTransferRate() throws {
        var policy = HTTPClient.Policy()
        policy.rateWindow = 2
        policy.minimumRate = 100
        try assertTrickleIsCut(policy, "slower than 100 bytes/s", within: 6)
    }
}
