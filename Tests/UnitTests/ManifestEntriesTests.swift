import XCTest
@testable import SLMStoreKit
@testable import SLMFormats
@testable import SLMLocalStore
@testable import SLMRemote
@testable import SLMDevice
@testable import SLMPages
import SLMTestSupport

/// manifest.json format 2: one small top-level file, each model's versions in an entries file
/// named by its hash, read only by those who need that model (Format.md §9).
final class ManifestEntriesTests: XCTestCase {
    var dir = ""
    var store: Store!
    var remotePath: String { dir + "/remote" }
    var remote: LocalBackend!

    override func setUpWithError() throws {
        dir = TestSupport.scratch()
        store = try Store.create(at: dir + "/store")
        remote = LocalBackend(root: remotePath)
    }

    func add(_ ref: String, seed: UInt64, size: Int = 300_000) throws {
        TestSupport.write(TestSupport.random(size, seed: seed), to: "\(dir)/src-\(ref)/w.bin")
        guard case let .exact(name, version) = try VersionRef.parse(ref) else { fatalError() }
        _ = try store.add(name: name, version: version, inputs: try AddInputs.collect(["\(dir)/src-\(ref)"]))
    }

    func push(_ refs: String...) throws {
        _ = try store.push(to: remote, refs: try refs.map { try VersionRef.parse($0) }, options: PushOptions())
    }

    /// Pulls into a device store; returns what it installed, as "model@version".
    func pull(_ ref: String, into name: String = "device") throws -> String {
        let device = try FileSystem.exists(dir + "/" + name) ? Store.open(at: dir + "/" + name) : Store.create(at: dir + "/" + name)
        let r = try device.pull(from: remote, ref: try VersionRef.parse(ref), options: PullOptions())
        return "\(r.name)@\(r.version)"
    }

    func top() throws -> Manifest { try Manifest.decode(TestSupport.read(remotePath + "/manifest.json"), source: "manifest.json") }

    func entriesPath(_ model: String) throws -> String { remotePath + "/" + (try top().models[model]!.entriesFile!.path) }

    func testEachModelsVersionsAreInAFileNamedByItsHashAndManifestJSONOnlyCountsThem() throws {
        try add("a@1.0.0", seed: 1)
        try add("a@1.1.0", seed: 2)
        try add("b@1.0.0", seed: 3)
        try push("a@1.0.0", "a@1.1.0", "b@1.0.0")
        let m = try top()
        XCTAssertEqual(m.models["a"]?.versionCount, 2)
        XCTAssertEqual(m.models["a"]?.versionsDigest, Manifest.versionsDigest(["1.1.0", "1.0.0"]))
        XCTAssertEqual(m.models["a"]?.versionsLoaded, false)
        for name in ["a", "b"] {
            let file = m.models[name]!.entriesFile!
            let bytes = TestSupport.read(remotePath + "/" + file.path)
            XCTAssertEqual(SHA256Hasher.hash(bytes), file.sha256)
            XCTAssertEqual(UInt64(bytes.count), file.size)
        }
        let json = try JSONValue.parse(TestSupport.read(remotePath + "/manifest.json"))
        XCTAssertEqual(json["format"]?.uint64Value, 2)
        XCTAssertNil(json["models"]?["a"]?["versions"], "no version entries in manifest.json")
        XCTAssertEqual(json["models"]?["a"]?["latest"]?.stringValue, "1.1.0")
        let full = try TestSupport.publishedManifest(remotePath)
        XCTAssertEqual(full.models["a"]?.versions.map(\.version), ["1.0.0", "1.1.0"])
        XCTAssertFalse(full.models["a"]!.versions[1].packs.isEmpty)
    }

    func testPushingOneModelKeepsTheOthersEntriesWithoutReadingThem() throws {
        try add("a@1.0.0", seed: 1)
        try add("b@1.0.0", seed: 2)
        try push("a@1.0.0", "b@1.0.0")
        let bFile = try entriesPath("b")
        // Were b's entries read (or rebuilt), a missing file would fail the push or be written anew.
        FileSystem.remove(bFile)
        try add("a@1.1.0", seed: 3)
        try push("a@1.1.0")
        XCTAssertEqual(try entriesPath("b"), bFile)
        XCTAssertFalse(FileSystem.exists(bFile))
        XCTAssertEqual(try RemoteReader(remote: remote, cacheDirectory: nil).manifest(models: ["a"]).models["a"]?.versions.map(\.version), ["1.0.0", "1.1.0"])
    }

    func testAPullReadsOnlyTheEntriesFileOfTheModelItPulls() throws {
        try add("a@1.0.0", seed: 1)
        try add("b@1.0.0", seed: 2)
        try push("a@1.0.0", "b@1.0.0")
        FileSystem.remove(try entriesPath("b"))
        XCTAssertEqual(try pull("a@latest"), "a@1.0.0")
        XCTAssertThrowsError(try pull("b@latest", into: "other")) { error in
            guard case SLMError.remote(let url, let problem) = error else { return XCTFail("\(error)") }
            XCTAssertTrue(url.hasSuffix(".json") && problem.contains("missing"), "\(url): \(problem)")
        }
    }

    func testANewVersionOfAModelNobodyPushesNowIsStillListed() throws {
        // A concurrent publisher's ref, written without a manifest update of its own.
        try add("a@1.0.0", seed: 1)
        try add("b@1.0.0", seed: 2)
        try push("a@1.0.0", "b@1.0.0")
        let other = try Store.create(at: dir + "/other")
        TestSupport.write(TestSupport.random(200_000, seed: 9), to: dir + "/src-b2/w.bin")
        _ = try other.add(name: try ModelName("b"), version: try SemVer("1.1.0"), inputs: try AddInputs.collect([dir + "/src-b2"]))
        _ = try other.push(to: LocalBackend(root: dir + "/staging-remote"), refs: [try VersionRef.parse("b@1.1.0")], options: PushOptions())
        for sub in ["packs", "objects", "refs"] { TestSupport.copyTree("\(dir)/staging-remote/\(sub)/.", to: "\(remotePath)/\(sub)/") }
        try add("a@1.1.0", seed: 3)
        try push("a@1.1.0")
        XCTAssertEqual(try TestSupport.publishedManifest(remotePath).models["b"]?.versions.map(\.version), ["1.0.0", "1.1.0"])
        XCTAssertEqual(try pull("b@1.1.0"), "b@1.1.0")
    }

    func testAnEntriesFileThatIsNotTheOneListedIsRefused() throws {
        try add("a@1.0.0", seed: 1)
        try add("b@1.0.0", seed: 2)
        try push("a@1.0.0", "b@1.0.0")
        // Another valid entries file served under a's name.
        TestSupport.write(TestSupport.read(try entriesPath("b")), to: try entriesPath("a"))
        XCTAssertThrowsError(try pull("a@latest")) { error in
            guard case SLMError.remote(_, let problem) = error else { return XCTFail("\(error)") }
            XCTAssertTrue(problem.contains("size or SHA-256"), problem)
        }
        XCTAssertEqual(try Store.open(at: dir + "/device").versions(of: try ModelName("a")).count, 0)
        // A truncated one, too.
        let own = TestSupport.read(try entriesPath("b"))
        TestSupport.write(Array(own.prefix(own.count / 2)), to: try entriesPath("b"))
        XCTAssertThrowsError(try pull("b@latest")) { error in
            guard case SLMError.remote(_, let problem) = error else { return XCTFail("\(error)") }
            XCTAssertTrue(problem.contains("size or SHA-256"), problem)
        }
    }

    func testAnEntriesFileNamingAnotherModelOrOtherVersionsIsRefusedEvenWithAMatchingHash() throws {
        try add("a@1.0.0", seed: 1)
        try add("b@1.0.0", seed: 2)
        try push("a@1.0.0", "b@1.0.0")
        let manifestBytes = TestSupport.read(remotePath + "/manifest.json")
        // A hostile remote points a's entry at b's file, hash and size matching.
        func pointAtB(names: [String]) throws {
            guard case var .object(top) = try JSONValue.parse(manifestBytes), case var .object(models) = top["models"]!,
                  case var .object(a) = models["a"]! else { return XCTFail() }
            a["entries"] = try JSONValue.parse(manifestBytes)["models"]!["b"]!["entries"]!
            a["version_count"] = .int(names.count)
            a["versions_sha256"] = .string(Manifest.versionsDigest(names).hex)
            models["a"] = .object(a)
            top["models"] = .object(models)
            TestSupport.write(JSONValue.object(top).canonicalBytes(), to: remotePath + "/manifest.json")
        }
        try pointAtB(names: ["1.0.0"])
        XCTAssertThrowsError(try pull("a@latest")) { error in
            guard case SLMError.damaged(_, let problem) = error else { return XCTFail("\(error)") }
            XCTAssertTrue(problem.contains("not a"), problem)
        }
        try pointAtB(names: ["1.0.0", "9.0.0"])
        XCTAssertThrowsError(try pull("a@latest", into: "d2"))
    }

    func testAnEntriesFileLargerThanListedIsRefusedBeforeItIsReadWhole() throws {
        try add("a@1.0.0", seed: 1)
        try push("a@1.0.0")
        let path = try entriesPath("a")
        TestSupport.write(TestSupport.read(path) + [UInt8](repeating: 0x20, count: 1 << 20), to: path)
        XCTAssertThrowsError(try pull("a@latest"))
        // And a manifest that lists one above the bound is damaged as a whole.
        let text = String(decoding: TestSupport.read(remotePath + "/manifest.json"), as: UTF8.self)
        let size = try top().models["a"]!.entriesFile!.size
        TestSupport.write(Array(text.replacingOccurrences(of: "\"size\": \(size)", with: "\"size\": \(Manifest.maxEncodedSize + 1)").utf8),
                          to: remotePath + "/manifest.json")
        XCTAssertThrowsError(try top()) { error in
            guard case SLMError.damaged = error else { return XCTFail("\(error)") }
        }
    }

    func testAFormatOneManifestIsStillReadAndReplacedByFormatTwo() throws {
        try add("a@1.0.0", seed: 1)
        try push("a@1.0.0")
        try TestSupport.downgradeManifestToFormatOne(remotePath)
        XCTAssertEqual(try top().models["a"]?.versionsLoaded, true)
        XCTAssertEqual(try pull("a@latest"), "a@1.0.0")
        try add("a@1.1.0", seed: 2)
        try push("a@1.1.0")
        XCTAssertEqual(try JSONValue.parse(TestSupport.read(remotePath + "/manifest.json"))["format"]?.uint64Value, 2)
        XCTAssertEqual(try TestSupport.publishedManifest(remotePath).models["a"]?.versions.map(\.version), ["1.0.0", "1.1.0"])
    }

    func testManifestJSONDoesNotGrowWithTheVersions() throws {
        func entry(_ i: Int) -> Manifest.VersionEntry {
            Manifest.VersionEntry(version: "1.0.\(i)", id: SHA256Hasher.hash([UInt8(i & 255), UInt8(i >> 8)]), tree: SHA256Hasher.hash([1]),
                                  created: "2026-11-30T00:00:00Z", size: 1 << 30,
                                  files: [("model.safetensors", String(repeating: "a", count: 64), 1 << 30), ("config.json", String(repeating: "b", count: 64), 600)],
                                  dependencies: [], packs: [PackID(hex: String(repeating: "c", count: 32))!])
        }
        func sizes(_ versions: Int) -> (top: Int, entries: Int) {
            let m = Manifest(project: "p", lastUpdated: "", models: ["m": .init(versions: (0..<versions).map(entry), stages: [:])], packs: [])
            let (top, entries) = m.encodedFiles()
            return (top.count, entries[0].bytes.count)
        }
        let (top10, entries10) = sizes(10), (top1000, entries1000) = sizes(1000)
        XCTAssertLessThan(abs(top1000 - top10), 16, "manifest.json does not grow with the versions")
        XCTAssertGreaterThan(Double(entries1000 - entries10) / 990, 300, "the entries file holds the entries")
    }

    /// Pushes a@1.0.0, then a@1.1.0: the entries file the first push wrote, and the current one.
    func pushTwoVersions() throws -> (old: String, current: String) {
        try add("a@1.0.0", seed: 1)
        try push("a@1.0.0")
        let old = try entriesPath("a")
        try add("a@1.1.0", seed: 2)
        try push("a@1.1.0")
        return (old, try entriesPath("a"))
    }

    func testGCRemovesEntriesFilesTheManifestNoLongerNamesOnceAnHourOld() throws {
        let (old, current) = try pushTwoVersions()
        XCTAssertNotEqual(old, current)
        let remoteStore = try Store.open(at: remotePath)
        _ = try remoteStore.gc()
        try remoteStore.removeReplacedManifestEntries()
        XCTAssertTrue(FileSystem.exists(old), "a reader that read the manifest before may still fetch it")
        var times = [timespec(tv_sec: time(nil) - 7200, tv_nsec: 0), timespec(tv_sec: time(nil) - 7200, tv_nsec: 0)]
        XCTAssertEqual(utimensat(AT_FDCWD, old, &times, 0), 0)
        XCTAssertEqual(utimensat(AT_FDCWD, current, &times, 0), 0)
        _ = try remoteStore.gc()
        try remoteStore.removeReplacedManifestEntries()
        XCTAssertFalse(FileSystem.exists(old))
        XCTAssertTrue(FileSystem.exists(current))
        XCTAssertEqual(try pull("a@1.0.0"), "a@1.0.0")
    }

    func testADamagedManifestIsAnErrorAndNoEntriesFileIsRemoved() throws {
        let (old, _) = try pushTwoVersions()
        var times = [timespec(tv_sec: time(nil) - 7200, tv_nsec: 0), timespec(tv_sec: time(nil) - 7200, tv_nsec: 0)]
        XCTAssertEqual(utimensat(AT_FDCWD, old, &times, 0), 0)
        try FileSystem.writeAtomically(Array("{\"format\": ".utf8), to: "\(remotePath)/manifest.json")
        let remoteStore = try Store.open(at: remotePath)
        XCTAssertThrowsError(try remoteStore.removeReplacedManifestEntries()) { error in
            guard case SLMError.damaged? = (error as? SLMError)?.kind else { return XCTFail("\(error)") }
        }
        XCTAssertTrue(FileSystem.exists(old), "nothing is removed while the manifest cannot be read")
    }
}

extension ManifestEntriesTests {
    func testASyncDaemonRefusesASwappedEntriesFileAndKeepsWhatItRuns() throws {
        try add("a@1.0.0", seed: 1)
        try add("b@1.0.0", seed: 2)
        try push("a@1.0.0", "b@1.0.0")
        let device = dir + "/sync-device"
        let first = TestSupport.cli(["sync", remotePath, "--to", device, "--follow", "a@latest", "--once"])
        XCTAssertEqual(first.status, 0, first.stdout + first.stderr)
        try add("a@1.1.0", seed: 3)
        try push("a@1.1.0")
        TestSupport.write(TestSupport.read(try entriesPath("b")), to: try entriesPath("a"))
        let second = TestSupport.cli(["sync", remotePath, "--to", device, "--follow", "a@latest", "--once"])
        XCTAssertNotEqual(second.status, 0)
        XCTAssertTrue((second.stdout + second.stderr).contains("SHA-256"), second.stdout + second.stderr)
        XCTAssertEqual(try JSONValue.parse(TestSupport.read(device + "/.slmstore-sync.json"))["models"]?["a"]?["installed"]?.stringValue, "1.0.0")
    }
}
