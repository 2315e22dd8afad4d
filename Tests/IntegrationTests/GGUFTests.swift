import XCTest
@testable import SLMStoreKit
@testable import SLMFormats
@testable import SLMLocalStore
@testable import SLMRemote
@testable import SLMDevice
@testable import SLMPages
import SLMSynthetic
import SLMTestSupport

/// GGUF files written by llama.cpp's own writer: tensors start segments and get the float codecs
/// and deltas, `show` and `diff` name them, and updates cost what changed.
final class GGUFTests: XCTestCase {
    var dir = ""
    var store = ""

    override func setUpWithError() throws {
        dir = TestSupport.scratch()
        store = dir + "/store"
    }

    func model(_ name: String, _ type: String, seed: Int = 1, _ extra: [String] = []) throws -> String {
        let src = "\(dir)/\(name)"
        try ReferenceGGUF.write(src + "/model.gguf", type: type, seed: seed, extra: extra)
        return src
    }

    func add(_ ref: String, _ src: String, _ extra: [String] = []) throws -> JSONValue {
        let r = TestSupport.cli(["add", ref, src, "--json"] + extra, store: store)
        XCTAssertEqual(r.status, 0, r.stderr)
        return try TestSupport.json(r)
    }

    /// Stored bytes of the chunks of `file` in `ref` that lie in its data section, and of those
    /// inside the named tensors.
    func storedBytes(_ ref: String, tensors: Set<String> = []) throws -> (data: UInt64, tensors: UInt64) {
        let s = try Store.open(at: store)
        let v = try s.resolve(ref)
        let f = try s.readTree(v.object.tree).files.first { $0.safetensors != nil }!
        let st = f.safetensors!
        let index = try s.loadChunkIndex()
        var offset: UInt64 = 0, data: UInt64 = 0, inTensors: UInt64 = 0
        for c in try f.chunks.refs() {
            let stored = UInt64(index.location(of: c.id)!.storedLength)
            if offset >= st.dataStart { data += stored }
            if st.tensors.contains(where: { tensors.contains($0.name) && st.dataStart + $0.begin <= offset && offset < st.dataStart + $0.end }) {
                inTensors += stored
            }
            offset += UInt64(c.rawLength)
        }
        return (data, inTensors)
    }

    func testGGUFTensorsAreListedByShowWithTheirGGMLTypes() throws {
        _ = try add("m@1.0.0", try model("q8", "q8_0"))
        let show = try TestSupport.json(TestSupport.cli(["show", "m@1.0.0", "--json"], store: store))
        let text = show.canonicalString()
        XCTAssertTrue(text.contains("\"blk.0.attn_q.weight\"") && text.contains("\"Q8_0\"") && text.contains("\"output_norm.weight\""), text)
        let tree = try Store.open(at: store).readTree(try Store.open(at: store).resolve("m@1.0.0").object.tree)
        XCTAssertEqual(tree.files[0].kind, .gguf)
        XCTAssertEqual(tree.files[0].safetensors?.tensors.count, 14)
        XCTAssertEqual(TestSupport.cli(["verify"], store: store).status, 0)
    }

    /// Goal: a new chat template (metadata only) costs at most 128 KiB of new bytes.
    func testAMetadataOnlyChangeCostsAtMost128KiB() throws {
        for type in ["f16", "q8_0"] {
            _ = try add("m-\(type)@1.0.0", try model("\(type)-a", type))
            let template = "{{ bos_token }}{% for m in messages %}<|{{ m.role }}|>\n{{ m.content }}<|end|>{% endfor %}"
            let j = try add("m-\(type)@1.1.0", try model("\(type)-b", type, ["--template", template]))
            XCTAssertLessThanOrEqual(j["stored_bytes"]!.uint64Value!, 128 << 10, type)
            let diff = TestSupport.cli(["diff", "m-\(type)@1.0.0", "m-\(type)@1.1.0"], store: store)
            XCTAssertFalse(diff.stdout.contains("weight"), diff.stdout)
        }
    }

    /// Goal: changing k of n tensors costs at most 1.05× those tensors' stored bytes, and diff
    /// names exactly them.
    func testChangingTwoTensorsCostsAtMostThoseTensorsStoredBytes() throws {
        for type in ["f16", "q8_0"] {
            _ = try add("m-\(type)@1.0.0", try model("\(type)-a", type))
            let j = try add("m-\(type)@1.1.0", try model("\(type)-b", type, ["--changed", "2"]), ["--no-delta"])
            let changed: Set<String> = ["token_embd.weight", "blk.0.attn_q.weight"]
            let (_, tensorBytes) = try storedBytes("m-\(type)@1.1.0", tensors: changed)
            XCTAssertLessThanOrEqual(Double(j["stored_bytes"]!.uint64Value!), 1.05 * Double(tensorBytes), type)
            let diff = try TestSupport.json(TestSupport.cli(["diff", "m-\(type)@1.0.0", "m-\(type)@1.1.0", "--json"], store: store))
            let names = Set(diff.canonicalString().components(separatedBy: "\"name\":\"").dropFirst().map { String($0.prefix { $0 != "\"" }) })
            XCTAssertEqual(names.intersection(["token_embd.weight", "blk.0.attn_q.weight", "blk.0.attn_k.weight", "blk.1.attn_q.weight"]), changed, type)
        }
    }

    /// Goal: F16 tensors in GGUF store at or below the same tensors in safetensors (planes codec).
    func testF16GGUFStoresNoLargerThanTheSameTensorsInSafetensors() throws {
        let src = try model("f16", "f16")
        _ = try add("g@1.0.0", src)
        let header = try GGUF.read(path: src + "/model.gguf")
        let bytes = TestSupport.read(src + "/model.gguf")
        let tensors = header.tensors.map { t in
            (t.name, t.dtype, t.shape.reversed().map { Int($0) }, Array(bytes[Int(header.dataStart + t.begin)..<Int(header.dataStart + t.end)]))
        }
        TestSupport.write(TestSupport.safetensors(tensors), to: dir + "/st/model.safetensors")
        _ = try add("s@1.0.0", dir + "/st")
        let gguf = try storedBytes("g@1.0.0").data, safetensors = try storedBytes("s@1.0.0").data
        XCTAssertLessThanOrEqual(gguf, safetensors)
        XCTAssertLessThan(Double(gguf), 0.95 * Double(header.tensors.reduce(0) { $0 + $1.byteCount }), "the planes codec compresses f16")
    }

    /// A fine-tune that nudges every weight of an F16 GGUF is stored as tensor deltas.
    func testAFineTuneOfAnF16GGUFIsStoredAsDeltas() throws {
        _ = try add("m@1.0.0", try model("a", "f16"))
        let b = try model("b", "f16", ["--changed", "13"])
        let delta = try add("m@1.1.0", b)
        XCTAssertEqual(TestSupport.cli(["checkout", "m@1.1.0", dir + "/out"], store: store).status, 0)
        XCTAssertSameBytes(TestSupport.read(dir + "/out/model.gguf"), TestSupport.read(b + "/model.gguf"))
        store = dir + "/full-store"
        _ = try add("m@1.0.0", dir + "/a")
        let full = try add("m@1.1.0", b, ["--no-delta"])
        XCTAssertGreaterThan(delta["delta_chunks"]!.uint64Value!, 0)
        XCTAssertLessThan(delta["stored_bytes"]!.uint64Value!, full["stored_bytes"]!.uint64Value!)
    }

    /// Hand-made hostile headers: each refused with one line naming the file, the store unchanged.
    func testMalformedGGUFFilesAreRefusedAndLeaveTheStoreUnchanged() throws {
        _ = try add("m@1.0.0", try model("ok", "q8_0"))
        let before = TestSupport.snapshot(store)
        func header(version: UInt32 = 3, tensors: [(String, [UInt64], UInt32, UInt64)], kv: [UInt8] = [], kvCount: UInt64 = 0,
                    data: Int = 64) -> [UInt8] {
            var b = Array("GGUF".utf8)
            func u32(_ v: UInt32) { withUnsafeBytes(of: v.littleEndian) { b += $0 } }
            func u64(_ v: UInt64) { withUnsafeBytes(of: v.littleEndian) { b += $0 } }
            u32(version); u64(UInt64(tensors.count)); u64(kvCount)
            b += kv
            for (name, dims, type, offset) in tensors {
                u64(UInt64(name.utf8.count)); b += Array(name.utf8); u32(UInt32(dims.count))
                for d in dims { u64(d) }
                u32(type); u64(offset)
            }
            while b.count % 32 != 0 { b.append(0) }
            return b + [UInt8](repeating: 0, count: data)
        }
        var hugeString: [UInt8] = []
        withUnsafeBytes(of: UInt64(1 << 40).littleEndian) { hugeString += $0 }
        let cases: [(String, [UInt8])] = [
            ("no GGUF magic", Array("GGUX".utf8) + [UInt8](repeating: 0, count: 60)),
            ("version 1 is not supported", header(version: 1, tensors: [])),
            ("unknown ggml type 99", header(tensors: [("w", [16], 99, 0)])),
            ("not whole Q8_0 blocks", header(tensors: [("w", [16], 8, 0)])),
            ("unaligned", header(tensors: [("w", [4], 0, 8)])),
            ("overlaps", header(tensors: [("a", [8], 0, 0), ("b", [8], 0, 0)])),
            ("lie beyond the file", header(tensors: [("w", [1 << 20], 0, 0)])),
            ("exceeds the limit", header(tensors: [], kv: hugeString, kvCount: 1)),
            ("appears twice", header(tensors: [("w", [8], 0, 0), ("w", [8], 0, 32)])),
            ("belong to no tensor", header(tensors: [("w", [8], 0, 0)], data: 200)),
        ]
        for (problem, bytes) in cases {
            TestSupport.write(bytes, to: dir + "/bad/model.gguf")
            let r = TestSupport.cli(["add", "bad@1.0.0", dir + "/bad"], store: store)
            XCTAssertEqual(r.status, 1, problem)
            XCTAssertTrue(r.stderr.contains("model.gguf") && r.stderr.contains(problem), "\(problem): \(r.stderr)")
            XCTAssertEqual(r.stderr.split(separator: "\n").count, 1, r.stderr)
            XCTAssertEqual(TestSupport.snapshot(store), before, problem)
        }
    }
}
