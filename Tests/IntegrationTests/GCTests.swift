import XCTest
@testable import SLMStoreKit
@testable import SLMFormats
@testable import SLMLocalStore
@testable import SLMRemote
@testable import SLMDevice
@testable import SLMPages
import SLMSynthetic
import SLMTestSupport

/// gc keeps every chunk a ref reaches, frees the rest, survives SIGKILL, and waits for adds.
final class GCTests: XCTestCase {
    var dir = ""
    var store = ""

    override func setUp() {
        dir = TestSupport.scratch()
        store = dir + "/store"
    }

    func src(_ name: String, _ files: [String: [UInt8]]) -> String {
        for (f, b) in files { TestSupport.write(b, to: "\(dir)/\(name)/\(f)") }
        return "\(dir)/\(name)"
    }

    func cli(_ args: [String], env: [String: String] = [:]) -> TestSupport.Run { TestSupport.cli(args, store: store, environment: env) }

    func assertAllVersionsRead(_ expected: [String: String], file: StaticString = #filePath, line: UInt = #line) {
        XCTAssertEqual(cli(["verify"]).status, 0, file: file, line: line)
        for (ref, source) in expected {
            let out = "\(dir)/check-\(FileSystem.randomHex(4))"
            XCTAssertEqual(cli(["checkout", ref, out]).status, 0, ref, file: file, line: line)
            XCTAssertSameBytes(TestSupport.read(out + "/w.bin"), TestSupport.read(source + "/w.bin"), ref, file: file, line: line)
        }
    }

    /// m@1.0.0 and m@1.1.0 share their first 600 kB; 1.0.0 is removed, so its pack is 40% live.
    /// Returns the source of 1.1.0.
    func twoVersionsWithTheFirstRemoved() -> String {
        let shared = TestSupport.random(600_000, seed: 1)
        let a = src("a", ["w.bin": shared + TestSupport.random(900_000, seed: 2)])
        let b = src("b", ["w.bin": shared + TestSupport.random(900_000, seed: 3)])
        XCTAssertEqual(cli(["add", "m@1.0.0", a]).status, 0)
        XCTAssertEqual(cli(["add", "m@1.1.0", b]).status, 0)
        XCTAssertEqual(cli(["rm", "m@1.0.0", "--force"]).status, 0)
        return b
    }

    func testGcFreesChunksOfRemovedVersionsAndKeepsTheRest() throws {
        let b = twoVersionsWithTheFirstRemoved()
        let gc = try TestSupport.json(cli(["gc", "--json"]))
        XCTAssertGreaterThan(gc["bytes_freed"]!.uint64Value!, 800_000)
        assertAllVersionsRead(["m@1.1.0": b])
        let again = try TestSupport.json(cli(["gc", "--json"]))
        XCTAssertEqual(again["bytes_freed"]?.uint64Value, 0)
    }

    /// A store gc'ed with its live set held whole and a copy gc'ed with it split into 64 id
    /// ranges (a budget of one byte) free and keep exactly the same.
    func assertSplitLiveSetCollectsTheSame(_ checks: [String: String], file: StaticString = #filePath, line: UInt = #line) throws {
        let split = dir + "/split-store"
        TestSupport.copyTree(store, to: split)
        let whole = try TestSupport.json(cli(["gc", "--json"]))
        let ranged = try TestSupport.json(TestSupport.cli(["gc", "--json"], store: split, environment: ["SLMSTORE_GC_LIVE_BUDGET": "1"]))
        for key in ["bytes_freed", "packs_before", "packs_deleted", "packs_rewritten", "live_chunks"] {
            XCTAssertEqual(whole[key]?.uint64Value, ranged[key]?.uint64Value, key, file: file, line: line)
        }
        XCTAssertGreaterThan(ranged["bytes_freed"]?.uint64Value ?? 0, 0, file: file, line: line)
        assertAllVersionsRead(checks, file: file, line: line)
        let saved = store
        store = split
        assertAllVersionsRead(checks, file: file, line: line)
        store = saved
    }

    func testGcWithTheLiveSetSplitIntoRangesCollectsExactlyWhatItWouldWhole() throws {
        let b = twoVersionsWithTheFirstRemoved()
        let c = src("c", ["w.bin": TestSupport.random(700_000, seed: 5) + TestSupport.read(b + "/w.bin").prefix(400_000)])
        XCTAssertEqual(cli(["add", "n@1.0.0", c]).status, 0)
        try assertSplitLiveSetCollectsTheSame(["m@1.1.0": b, "n@1.0.0": c])
    }

    /// `ls` as it answers from cache/, and as it answers once the cache is gone.
    func listingCachedAndRecomputed() throws -> (cached: String, recomputed: String) {
        let cached = cli(["ls", "--json"]).stdout
        FileSystem.removeTree(store + "/cache")
        return (cached, cli(["ls", "--json"]).stdout)
    }

    func testGcKeepsTheListingFiguresOfLiveVersionsWhenTheyStillHold() throws {
        let shared = TestSupport.random(600_000, seed: 1)
        XCTAssertEqual(cli(["add", "m@1.0.0", src("a", ["w.bin": shared + TestSupport.random(900_000, seed: 2)])]).status, 0)
        XCTAssertEqual(cli(["add", "m@1.1.0", src("b", ["w.bin": shared + TestSupport.random(900_000, seed: 3)])]).status, 0)
        XCTAssertEqual(cli(["ls"]).status, 0)
        let ids = Dictionary(uniqueKeysWithValues: try Store.open(at: store).versions(of: try ModelName("m")).map { ($0.version.description, $0.id) })
        XCTAssertEqual(cli(["rm", "m@1.0.0", "--force"]).status, 0)
        XCTAssertEqual(try TestSupport.json(cli(["gc", "--json"]))["packs_rewritten"]?.uint64Value, 1)
        XCTAssertTrue(FileSystem.exists("\(store)/cache/version-stats/\(ids["1.1.0"]!.hex)"), "kept: its record was copied as it was")
        XCTAssertFalse(FileSystem.exists("\(store)/cache/version-stats/\(ids["1.0.0"]!.hex)"), "a removed version's figures go")
        XCTAssertFalse(FileSystem.exists(store + "/cache/.gc-stash"))
        let (cached, recomputed) = try listingCachedAndRecomputed()
        XCTAssertEqual(cached, recomputed)
    }

    func testGcDropsTheListingFiguresWhenALiveChunkHasASecondCopy() throws {
        XCTAssertEqual(cli(["add", "m@1.0.0", src("a", ["w.bin": TestSupport.random(900_000, seed: 2)])]).status, 0)
        XCTAssertEqual(cli(["ls"]).status, 0)
        // A second full copy of every chunk, under another pack id: valid (duplicate records are),
        // and after gc either copy may be the one the index finds first.
        let s = try Store.open(at: store)
        let pack = try s.packIDs()[0], copy = PackID.random()
        TestSupport.write(TestSupport.read(s.packPath(pack)), to: s.packPath(copy))
        TestSupport.write(TestSupport.read(s.packIndexPath(pack)), to: s.packIndexPath(copy))
        XCTAssertEqual(cli(["gc"]).status, 0)
        XCTAssertFalse(FileSystem.exists(store + "/cache/version-stats"))
        let (cached, recomputed) = try listingCachedAndRecomputed()
        XCTAssertEqual(cached, recomputed)
    }

    /// A pack 40% live is rewritten at the default threshold (0.5) but kept whole below 0.3.
    func testRewriteBelowSetsTheLiveShareUnderWhichAPackIsRewritten() throws {
        let b = twoVersionsWithTheFirstRemoved()
        let kept = try TestSupport.json(cli(["gc", "--rewrite-below", "0.3", "--json"]))
        XCTAssertEqual(kept["packs_rewritten"]?.uint64Value, 0)
        XCTAssertEqual(kept["bytes_freed"]?.uint64Value, 0)
        let rewritten = try TestSupport.json(cli(["gc", "--json"]))
        XCTAssertEqual(rewritten["packs_rewritten"]?.uint64Value, 1)
        XCTAssertGreaterThan(rewritten["bytes_freed"]!.uint64Value!, 800_000)
        assertAllVersionsRead(["m@1.1.0": b])
        let bad = cli(["gc", "--rewrite-below", "2"])
        XCTAssertEqual(bad.status, 2)
        XCTAssertTrue(bad.stderr.contains("--rewrite-below"), bad.stderr)
    }

    func testRemovingAVersionOthersDependOnIsRefused() throws {
        let a = src("a", ["w.bin": TestSupport.random(1000, seed: 1)])
        XCTAssertEqual(cli(["add", "base@1.0.0", a]).status, 0)
        let s = try Store.open(at: store)
        let base = try s.resolve("base@1.0.0")
        // A version that depends on base@^1.0 (as `add --depends` records it).
        let v = VersionObject(name: "lora", version: try SemVer("0.1.0"), tree: base.object.tree, parent: nil, created: Timestamp.now(),
                              addedBy: "t", tool: "t", dependencies: [Dependency(name: "base", range: "^1.0")])
        try s.writeRef(at: s.versionRefPath(try ModelName("lora"), v.version), id: try s.writeObject(v.encoded()))
        let r = cli(["rm", "base@1.0.0"])
        XCTAssertEqual(r.status, 4)
        XCTAssertTrue(r.stderr.contains("lora@0.1.0 depends on base@^1.0"), r.stderr)
    }

    /// Three versions in one pack each; removing one makes its pack dead. gc is killed at each
    /// crash point, then run to the end; every remaining version reads back after each step.
    func assertKilledGcLeavesAVerifiableStore(seed: UInt64, removing removed: Int, env: [String: String] = [:]) {
        var expected: [String: String] = [:]
        for i in 0..<3 {
            let s = src("v\(i)", ["w.bin": TestSupport.random(700_000, seed: seed + UInt64(i))])
            XCTAssertEqual(cli(["add", "m@1.0.\(i)", s]).status, 0)
            expected["m@1.0.\(i)"] = s
        }
        XCTAssertEqual(cli(["rm", "m@1.0.\(removed)", "--force"]).status, 0)
        expected["m@1.0.\(removed)"] = nil
        for point in ["gc-between-index-and-pack", "gc-after-rewrite"] {
            let r = cli(["gc"], env: env.merging(["SLMSTORE_CRASH_AT": point]) { a, _ in a })
            XCTAssertTrue(r.status == 9 || r.status == 0, "\(point): \(r.stderr)")
            assertAllVersionsRead(expected)
        }
        XCTAssertEqual(cli(["gc"], env: env).status, 0)
        assertAllVersionsRead(expected)
    }

    func testKillDuringGcLeavesAVerifiableStore() throws {
        assertKilledGcLeavesAVerifiableStore(seed: 10, removing: 0)
    }

    func testKillDuringGcWithASplitLiveSetLeavesAVerifiableStore() throws {
        assertKilledGcLeavesAVerifiableStore(seed: 20, removing: 1, env: ["SLMSTORE_GC_LIVE_BUDGET": "1"])
    }

    func testKillDuringGcOrMaintenanceWithAMultiPackIndexLeavesAVerifiableStore() throws {
        var expected: [String: String] = [:]
        for i in 0..<3 {
            let s = src("v\(i)", ["w.bin": TestSupport.random(700_000, seed: UInt64(20 + i))])
            XCTAssertEqual(cli(["add", "m@1.0.\(i)", s]).status, 0)
            expected["m@1.0.\(i)"] = s
        }
        let m = try TestSupport.json(cli(["maintenance", "--json"]))
        XCTAssertEqual(m["packs"]?.uint64Value, 3)
        XCTAssertEqual(m["packs_outside_before"]?.uint64Value, 3)
        XCTAssertEqual(cli(["rm", "m@1.0.0", "--force"]).status, 0)
        expected["m@1.0.0"] = nil
        // gc deletes a pack the multi-pack index lists, then is killed before or while writing it again.
        for point in ["gc-between-index-and-pack", "multi-pack-index-before-rename"] {
            let r = cli(["gc"], env: ["SLMSTORE_CRASH_AT": point])
            XCTAssertEqual(r.status, 9, "\(point): \(r.stderr)")
            assertAllVersionsRead(expected)
        }
        let r = cli(["maintenance"], env: ["SLMSTORE_CRASH_AT": "multi-pack-index-before-rename"])
        XCTAssertEqual(r.status, 9, r.stderr)
        assertAllVersionsRead(expected)
        let again = try TestSupport.json(cli(["maintenance", "--json"]))
        XCTAssertEqual(again["packs"]?.uint64Value, 2)
        let verify = try TestSupport.json(cli(["verify", "--json"]))
        XCTAssertEqual(verify["ok"], .bool(true))
        XCTAssertEqual(try FileSystem.listDirectory(store + "/tmp").filter { !$0.hasPrefix(".") }, [], "the killed writers' working directories are gone")
    }

    func testGcBesideAConcurrentAddNeverCollectsItsChunks() throws {
        let big = src("big", ["w.bin": TestSupport.bf16Like(10_000_000, seed: 9)])
        let small = src("small", ["w.bin": TestSupport.random(200_000, seed: 8)])
        XCTAssertEqual(cli(["add", "s@1.0.0", small]).status, 0)
        XCTAssertEqual(cli(["rm", "s@1.0.0"]).status, 0)
        let p = try TestSupport.spawn(["add", "big@1.0.0", big], store: store)
        usleep(100_000)
        XCTAssertEqual(cli(["gc"]).status, 0)
        p.waitUntilExit()
        XCTAssertEqual(p.terminationStatus, 0)
        assertAllVersionsRead(["big@1.0.0": big])
    }
}
