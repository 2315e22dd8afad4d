import XCTest
@testable import SLMStoreKit
@testable import SLMFormats
@testable import SLMLocalStore
@testable import SLMRemote
@testable import SLMDevice
@testable import SLMPages
import SLMSynthetic
import SLMTestSupport

/// Tensor deltas end to end: add stores them, diff counts them, push publishes them against
/// the parent and staged versions, pull applies them on a device holding the base (and never on
/// one that does not), gc drops them with their base, and a tampered delta installs nothing.
final class DeltaTests: XCTestCase {
    var dir = ""
    var publisher = ""
    var remote = ""
    var v1 = "", v2 = "", v3 = ""

    override func setUpWithError() throws {
        dir = TestSupport.scratch()
        publisher = dir + "/publisher"
        remote = dir + "/remote"
        let m1 = SyntheticModel.llamaLike(targetBytes: 3 << 20)
        let m2 = m1.fullFineTune(scale: 0.001)
        let m3 = m2.fullFineTune(scale: 0.001, seed: 99)
        v1 = dir + "/v1"; v2 = dir + "/v2"; v3 = dir + "/v3"
        for (path, m) in [(v1, m1), (v2, m2), (v3, m3)] {
            try FileSystem.makeDirectories(path)
            try m.write(to: path + "/model.safetensors")
        }
    }

    func cli(_ args: [String], store: String? = nil, env: [String: String] = [:]) -> TestSupport.Run {
        TestSupport.cli(args, store: store ?? publisher, environment: env)
    }

    func add(_ ref: String, _ path: String, _ extra: [String] = []) throws -> JSONValue {
        let r = cli(["add", ref, path, "--json"] + extra)
        XCTAssertEqual(r.status, 0, r.stderr)
        return try TestSupport.json(r)
    }

    func pull(_ store: String, _ ref: String, _ extra: [String] = []) throws -> JSONValue {
        let r = cli(["pull", remote, ref, "--json"] + extra, store: store)
        XCTAssertEqual(r.status, 0, r.stderr)
        return try TestSupport.json(r)
    }

    func assertCheckout(_ store: String, _ ref: String, matches source: String, file: StaticString = #filePath, line: UInt = #line) {
        let out = "\(dir)/co-\(FileSystem.randomHex(4))"
        let r = cli(["checkout", ref, out], store: store)
        XCTAssertEqual(r.status, 0, r.stderr, file: file, line: line)
        XCTAssertSameBytes(TestSupport.read(out + "/model.safetensors"), TestSupport.read(source + "/model.safetensors"), ref, file: file, line: line)
    }

    /// #31: a fine-tune whose largest tensor moved to another shard (Hugging Face sharding,
    /// with model.safetensors.index.json) is still stored as tensor deltas: tensors are paired
    /// by name across the version's weight files, not only within the same path.
    func testATensorThatMovedToAnotherShardStillGetsDeltas() throws {
        let big = TestSupport.bf16Like(1_500_000, seed: 21), small = TestSupport.bf16Like(100_000, seed: 22)
        func tuned(_ b: [UInt8]) -> [UInt8] {
            var t = b
            for i in stride(from: 0, to: t.count, by: 16) { t[i] ^= 1 }
            return t
        }
        let (s1, s2) = ("model-00001-of-00002.safetensors", "model-00002-of-00002.safetensors")
        func write(_ dir: String, _ first: [(String, String, [Int], [UInt8])], _ second: [(String, String, [Int], [UInt8])]) {
            TestSupport.write(TestSupport.safetensors(first), to: "\(dir)/\(s1)")
            TestSupport.write(TestSupport.safetensors(second), to: "\(dir)/\(s2)")
            var map: [String: JSONValue] = [:]
            for (n, _, _, _) in first { map[n] = .string(s1) }
            for (n, _, _, _) in second { map[n] = .string(s2) }
            TestSupport.write(Array(JSONValue.object(["weight_map": .object(map)]).prettyString().utf8), to: dir + "/model.safetensors.index.json")
        }
        // v1: the big tensor in shard 1; v2: fine-tuned, and moved to shard 2.
        write(dir + "/shards1", [("a", "BF16", [50_000], small), ("big", "BF16", [750_000], big)], [("c", "BF16", [50_000], small)])
        write(dir + "/shards2", [("a", "BF16", [50_000], tuned(small))], [("big", "BF16", [750_000], tuned(big)), ("c", "BF16", [50_000], tuned(small))])
        _ = try add("m@1.0.0", dir + "/shards1")
        let r = try add("m@1.1.0", dir + "/shards2")
        let input = Double(r["input_bytes"]!.uint64Value!)
        XCTAssertGreaterThan(r["delta_chunks"]!.uint64Value!, 10)
        // Without pairing across shards the moved tensor (most of the bytes) is stored in full.
        XCTAssertLessThan(Double(r["stored_bytes"]!.uint64Value!), 0.4 * input)
        let out = dir + "/co-shards"
        XCTAssertEqual(cli(["checkout", "m@1.1.0", out]).status, 0)
        for f in [s1, s2, "model.safetensors.index.json"] {
            XCTAssertSameBytes(TestSupport.read(out + "/" + f), TestSupport.read(dir + "/shards2/" + f), f)
        }
        // A device holding 1.0.0 downloads the deltas, not the moved tensor's full records.
        XCTAssertEqual(cli(["push", remote]).status, 0)
        _ = try pull(dir + "/edge", "m@1.0.0")
        let update = try pull(dir + "/edge", "m@1.1.0")
        XCTAssertLessThan(Double(update["bytes_downloaded"]!.uint64Value!), 0.4 * input)
    }

    /// #31's writer bug: 1.2.0 has the bytes of 1.1.0, whose chunks are delta records against
    /// 1.0.0, so adding 1.2.0 wrote no delta set of its own. A fine-tune of it must still be
    /// stored as deltas (against 1.0.0, where full records are), not as full records.
    func testAddFindsABaseWithFullRecordsBehindAVersionAddedAgainWithoutADeltaSet() throws {
        _ = try add("m@1.0.0", v1)
        XCTAssertGreaterThan(try add("m@1.1.0", v2)["delta_chunks"]!.uint64Value!, 0)
        let again = try add("m@1.2.0", v2)
        XCTAssertEqual(again["delta_chunks"]?.uint64Value, 0)
        let r = try add("m@1.3.0", v3)
        XCTAssertEqual(r["delta_base"]?.stringValue, "m@1.0.0")
        XCTAssertGreaterThan(r["delta_chunks"]!.uint64Value!, 0)
        XCTAssertLessThan(Double(r["stored_bytes"]!.uint64Value!), 0.5 * Double(r["input_bytes"]!.uint64Value!))
        assertCheckout(publisher, "m@1.3.0", matches: v3)
        XCTAssertEqual(cli(["verify"]).status, 0)
    }

    func testAddStoresAFineTuneAsDeltasAgainstTheParent() throws {
        _ = try add("m@1.0.0", v1)
        let r = try add("m@1.1.0", v2)
        let input = r["input_bytes"]!.uint64Value!
        XCTAssertGreaterThan(r["delta_chunks"]!.uint64Value!, 0)
        XCTAssertLessThan(Double(r["delta_stored_bytes"]!.uint64Value!), 0.25 * Double(input))
        // Stored as deltas instead of full records, not beside them.
        XCTAssertLessThan(Double(r["stored_bytes"]!.uint64Value!), 0.3 * Double(input))
        XCTAssertEqual(r["delta_base"]?.stringValue, "m@1.0.0")
        XCTAssertEqual(cli(["verify"]).status, 0)
        assertCheckout(publisher, "m@1.1.0", matches: v2)
    }

    func testNoDeltaAndDeltaBaseChooseWhatAddStores() throws {
        _ = try add("m@1.0.0", v1)
        XCTAssertEqual(try add("m@1.1.0", v2, ["--no-delta"])["delta_chunks"]?.uint64Value, 0)
        let r = try add("m@1.2.0", v3, ["--delta-base", "m@1.0.0"])
        XCTAssertEqual(r["delta_base"]?.stringValue, "m@1.0.0")
        XCTAssertGreaterThan(r["delta_chunks"]!.uint64Value!, 0)
        let bad = cli(["add", "m@1.3.0", v3, "--delta-base", "m@9.9.9"])
        XCTAssertEqual(bad.status, 3, bad.stderr)
        XCTAssertEqual(cli(["ls", "m", "--json"]).stdout.contains("1.3.0"), false)
    }

    func testShowListsHowEachChunkIsStored() throws {
        _ = try add("m@1.0.0", v1)
        _ = try add("m@1.1.0", v2)
        let show = try TestSupport.json(cli(["show", "m@1.1.0", "--json"]))
        let chunks = show["files"]!.arrayValue!.flatMap { $0["chunks"]!.arrayValue! }
        let withDelta = chunks.filter { !($0["deltas"]?.arrayValue ?? []).isEmpty }
        XCTAssertFalse(withDelta.isEmpty)
        let d = withDelta[0]["deltas"]!.arrayValue![0]
        XCTAssertEqual(d["codec"]?.stringValue, "delta")
        XCTAssertEqual(d["base_version"]?.stringValue, "m@1.0.0")
        XCTAssertFalse(d["base_chunks"]!.arrayValue!.isEmpty)
        // Stored here only as the delta; its full record (what a device holding nothing gets) is larger.
        XCTAssertEqual(withDelta[0]["codec"]?.stringValue, "delta")
        XCTAssertEqual(d["stored_length"]?.uint64Value, withDelta[0]["stored_length"]?.uint64Value)
        XCTAssertLessThan(d["stored_length"]!.uint64Value!, withDelta[0]["full_stored_length"]!.uint64Value!)
    }

    func testARenamedSingleWeightsFileIsLinedUpWithTheOldOne() throws {
        _ = try add("m@1.0.0", v1 + "/model.safetensors")
        try FileSystem.makeDirectories(dir + "/renamed")
        try FileSystem.rename(v2 + "/model.safetensors", dir + "/renamed/model-ft.safetensors")
        XCTAssertGreaterThan(try add("m@1.1.0", dir + "/renamed/model-ft.safetensors")["delta_chunks"]!.uint64Value!, 0)
    }

    func testTensorsWhoseShapeOrDtypeChangedGetNoDelta() throws {
        let a = TestSupport.bf16Like(400_000, seed: 1), b = TestSupport.bf16Like(400_000, seed: 2)
        var a2 = a, b2 = b
        for i in stride(from: 0, to: a2.count, by: 8) { a2[i] ^= 1; b2[i] ^= 1 }
        TestSupport.write(TestSupport.safetensors([("a", "BF16", [200_000], a), ("b", "BF16", [200_000], b)]), to: dir + "/s1/m.safetensors")
        TestSupport.write(TestSupport.safetensors([("a", "BF16", [400, 500], a2), ("b", "F16", [200_000], b2)]), to: dir + "/s2/m.safetensors")
        _ = try add("s@1.0.0", dir + "/s1")
        XCTAssertEqual(try add("s@1.1.0", dir + "/s2")["delta_chunks"]?.uint64Value, 0)
    }

    func testDiffCountsDeltasBesideTheFullSize() throws {
        _ = try add("m@1.0.0", v1)
        _ = try add("m@1.1.0", v2)
        let d = try TestSupport.json(cli(["diff", "m@1.0.0", "m@1.1.0", "--json"]))
        let bytes = d["bytes_to_fetch"]!.uint64Value!, full = d["full_bytes_to_fetch"]!.uint64Value!
        XCTAssertGreaterThan(d["delta_chunks"]!.uint64Value!, 0)
        XCTAssertLessThan(Double(bytes), 0.3 * Double(full))
        let plain = try TestSupport.json(cli(["diff", "m@1.0.0", "m@1.1.0", "--json", "--no-delta"]))
        XCTAssertEqual(plain["delta_chunks"]?.uint64Value, 0)
        XCTAssertGreaterThan(plain["bytes_to_fetch"]!.uint64Value!, 3 * bytes)
        // Without a delta set in the store (the reverse direction), diff computes what push would write.
        let back = try TestSupport.json(cli(["diff", "m@1.1.0", "m@1.0.0", "--json"]))
        XCTAssertGreaterThan(back["delta_chunks"]!.uint64Value!, 0)
    }

    /// v1 holds production on the remote when v3 is pushed, so v3 gets deltas against v1 as well
    /// as against its parent v2: devices one or two releases behind both download deltas, a
    /// device holding nothing downloads full records only. Served by nginx.
    func testChainPulledByDevicesHoldingV1V2OrNothing() throws {
        _ = try add("m@1.0.0", v1)
        _ = try add("m@1.1.0", v2)
        XCTAssertEqual(cli(["promote", "m@1.0.0", "production", "--skip-staging"]).status, 0)
        XCTAssertEqual(cli(["push", remote]).status, 0)
        _ = try add("m@1.2.0", v3)
        let push = try TestSupport.json(cli(["push", remote, "m@1.2.0", "--json"]))
        XCTAssertEqual(Set(push["delta_sets"]!.arrayValue!.compactMap(\.stringValue)), ["m@1.2.0 <- m@1.1.0", "m@1.2.0 <- m@1.0.0"])
        let nginx = try NginxServer(serving: remote)
        defer { nginx.stop() }
        func pullHTTP(_ store: String, _ ref: String) throws -> JSONValue {
            let r = cli(["pull", nginx.url, ref, "--json"], store: store)
            XCTAssertEqual(r.status, 0, r.stderr)
            return try TestSupport.json(r)
        }
        let onV1 = dir + "/dev1", onV2 = dir + "/dev2", empty = dir + "/dev0"
        _ = try pullHTTP(onV1, "m@1.0.0")
        _ = try pullHTTP(onV2, "m@1.1.0")
        let fromV1 = try pullHTTP(onV1, "m@1.2.0"), fromV2 = try pullHTTP(onV2, "m@1.2.0"), fromNothing = try pullHTTP(empty, "m@1.2.0")
        XCTAssertGreaterThan(fromV1["chunks_from_deltas"]!.uint64Value!, 0)
        XCTAssertGreaterThan(fromV2["chunks_from_deltas"]!.uint64Value!, 0)
        XCTAssertEqual(fromNothing["chunks_from_deltas"]?.uint64Value, 0)
        let b1 = Double(fromV1["chunk_bytes"]!.uint64Value!), b2 = Double(fromV2["chunk_bytes"]!.uint64Value!)
        XCTAssertLessThanOrEqual(b1, 1.5 * b2)
        XCTAssertLessThan(b1, 0.5 * Double(fromNothing["chunk_bytes"]!.uint64Value!))
        for s in [onV1, onV2, empty] {
            XCTAssertEqual(cli(["verify"], store: s).status, 0)
            assertCheckout(s, "m@1.2.0", matches: v3)
        }
        // The device stores full records: v1 can go, and v1.2.0 still reads.
        XCTAssertEqual(cli(["rm", "m@1.0.0"], store: onV1).status, 0)
        XCTAssertEqual(cli(["gc"], store: onV1).status, 0)
        assertCheckout(onV1, "m@1.2.0", matches: v3)
    }

    func testPushDeltaFromAddsBasesAndNoDeltaWritesNone() throws {
        _ = try add("m@1.0.0", v1)
        _ = try add("m@1.1.0", v2)
        _ = try add("m@1.2.0", v3)
        XCTAssertEqual(cli(["push", remote, "m@1.0.0", "m@1.1.0"]).status, 0)
        let push = try TestSupport.json(cli(["push", remote, "m@1.2.0", "--delta-from", "m@1.0.0", "--json"]))
        XCTAssertEqual(Set(push["delta_sets"]!.arrayValue!.compactMap(\.stringValue)), ["m@1.2.0 <- m@1.1.0", "m@1.2.0 <- m@1.0.0"])
        let manifest = try TestSupport.publishedManifest(remote)
        XCTAssertEqual(manifest.models["m"]?.versions.first { $0.version == "1.2.0" }?.deltas.count, 2)
        let other = dir + "/remote2"
        let plain = try TestSupport.json(cli(["push", other, "--no-delta", "--json"]))
        XCTAssertEqual(plain["delta_sets"]?.arrayValue?.count, 0)
        XCTAssertFalse(FileSystem.exists(other + "/deltas"))
        // Every chunk still has a full record there: a device holding nothing gets every version.
        _ = try TestSupport.json(cli(["pull", other, "m@1.2.0", "--json"], store: dir + "/dev"))
        assertCheckout(dir + "/dev", "m@1.2.0", matches: v3)
        XCTAssertEqual(cli(["verify"], store: other).status, 0)
    }

    func testUpdatePullFetchesWhatDiffPredictsAndNoDeltaFetchesFullRecords() throws {
        _ = try add("m@1.0.0", v1)
        _ = try add("m@1.1.0", v2)
        XCTAssertEqual(cli(["push", remote]).status, 0)
        let diff = try TestSupport.json(cli(["diff", "m@1.0.0", "m@1.1.0", "--json"]))
        let a = dir + "/a", b = dir + "/b"
        _ = try pull(a, "m@1.0.0"); _ = try pull(b, "m@1.0.0")
        let withDeltas = try pull(a, "m@1.1.0")
        XCTAssertEqual(withDeltas["chunk_bytes"]?.uint64Value, diff["bytes_to_fetch"]?.uint64Value)
        let full = try pull(b, "m@1.1.0", ["--no-delta"])
        XCTAssertEqual(full["chunks_from_deltas"]?.uint64Value, 0)
        XCTAssertGreaterThan(full["chunk_bytes"]!.uint64Value!, 3 * withDeltas["chunk_bytes"]!.uint64Value!)
        assertCheckout(a, "m@1.1.0", matches: v2)
        assertCheckout(b, "m@1.1.0", matches: v2)
    }

    /// v1.1.0 is stored as deltas against v1.0.0: removing v1.0.0 keeps the base chunks those
    /// deltas need (and only those), and the set naming the removed version goes.
    func testGcAfterRemovingTheBaseKeepsTheBasesTheDependentVersionNeeds() throws {
        _ = try add("m@1.0.0", v1)
        _ = try add("m@1.1.0", v2)
        XCTAssertEqual(cli(["rm", "m@1.0.0", "--force"]).status, 0)
        let gc = try TestSupport.json(cli(["gc", "--json"]))
        XCTAssertEqual(try FileSystem.listDirectory(publisher + "/deltas"), [])
        XCTAssertEqual(cli(["verify"]).status, 0)
        assertCheckout(publisher, "m@1.1.0", matches: v2)
        XCTAssertGreaterThan(gc["live_chunks"]!.uint64Value!, 0)
        // A device pulling the version gets full records rebuilt from the kept bases.
        XCTAssertEqual(cli(["push", remote]).status, 0)
        _ = try pull(dir + "/dev", "m@1.1.0")
        assertCheckout(dir + "/dev", "m@1.1.0", matches: v2)
    }

    /// The same with gc's live set split into 64 id ranges: the delta records the dependent
    /// version needs and their bases are kept across ranges, and exactly as much is freed.
    func testGcWithASplitLiveSetKeepsDeltasAndTheirBasesLikeAWholeOne() throws {
        _ = try add("m@1.0.0", v1)
        _ = try add("m@1.1.0", v2)
        XCTAssertEqual(cli(["rm", "m@1.0.0", "--force"]).status, 0)
        let copy = dir + "/copy"
        TestSupport.copyTree(publisher, to: copy)
        let whole = try TestSupport.json(cli(["gc", "--json"]))
        let split = try TestSupport.json(cli(["gc", "--json"], store: copy, env: ["SLMSTORE_GC_LIVE_BUDGET": "1"]))
        for key in ["bytes_freed", "packs_deleted", "packs_rewritten", "live_chunks"] {
            XCTAssertEqual(whole[key]?.uint64Value, split[key]?.uint64Value, key)
        }
        XCTAssertEqual(cli(["verify"], store: copy).status, 0)
        assertCheckout(copy, "m@1.1.0", matches: v2)
    }

    func testKillDuringGcOfADeltaSetLeavesAVerifiableStore() throws {
        _ = try add("m@1.0.0", v1)
        _ = try add("m@1.1.0", v2)
        XCTAssertEqual(cli(["rm", "m@1.0.0", "--force"]).status, 0)
        for point in ["gc-after-delta-set", "gc-between-index-and-pack", "gc-after-rewrite"] {
            let r = cli(["gc"], env: ["SLMSTORE_CRASH_AT": point])
            XCTAssertTrue(r.status == 9 || r.status == 0, "\(point): \(r.stderr)")
            XCTAssertEqual(cli(["verify"]).status, 0, point)
            assertCheckout(publisher, "m@1.1.0", matches: v2)
        }
    }

    /// A remote whose delta records were tampered with: the device refuses with exit 5 naming
    /// the chunk, installs nothing, and records no version.
    func testTamperedDeltaRecordsOnTheRemoteInstallNothing() throws {
        _ = try add("m@1.0.0", v1)
        _ = try add("m@1.1.0", v2)
        XCTAssertEqual(cli(["push", remote]).status, 0)
        let s = try Store.open(at: remote)
        let set = try XCTUnwrap(try s.deltaSets().first)
        let pack = set.packs[0]
        let entry = try XCTUnwrap(try s.readPackIndex(pack).entries.first)
        let payloadAt = entry.offset + UInt64(PackFormat.recordHeaderSize)
        let original = TestSupport.read(s.packPath(pack))
        // Byte 16 starts the first base id; the base-length field follows it; the last byte is plane data.
        let tamper: [(String, UInt64)] = [("wrong base id", payloadAt + 16), ("wrong base length", payloadAt + 32),
                                          ("flipped plane byte", payloadAt + UInt64(entry.storedLength) - 1)]
        for (what, offset) in tamper {
            TestSupport.write(original, to: s.packPath(pack))
            TestSupport.flipByte(in: s.packPath(pack), at: offset)
            let device = "\(dir)/dev-\(FileSystem.randomHex(4))", install = device + "-install"
            _ = try pull(device, "m@1.0.0")
            let r = cli(["pull", remote, "m@1.1.0", "--to", install], store: device)
            XCTAssertEqual(r.status, 5, "\(what): \(r.stderr)")
            XCTAssertTrue(r.stderr.contains(entry.id.hex) || r.stderr.contains("delta"), "\(what): \(r.stderr)")
            XCTAssertFalse(FileSystem.exists(install + "/current"), what)
            XCTAssertFalse(cli(["ls", "m", "--json"], store: device).stdout.contains("1.1.0"), what)
            // Full records are intact: --no-delta still gets the version.
            XCTAssertEqual(cli(["pull", remote, "m@1.1.0", "--no-delta"], store: device).status, 0, what)
        }
    }
}
