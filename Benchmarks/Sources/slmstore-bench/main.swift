// Benchmark helper: generates the synthetic model and its next versions, and measures
// in-process chunking speed. Driven by Benchmarks/run.

import Foundation
import SLMStoreKit
import SLMSynthetic

/// Prints a measurement as one line of JSON with sorted keys, for the harness to read.
func printJSON(_ object: Any) throws {
    print(String(decoding: try JSONSerialization.data(withJSONObject: object, options: [.sortedKeys]), as: UTF8.self))
}

func fail(_ m: String) -> Never {
    FileHandle.standardError.write("slmstore-bench: \(m)\n".data(using: .utf8)!)
    exit(2)
}

@MainActor func gen(_ dir: String, size: Int) throws {
    let base = SyntheticModel.llamaLike(targetBytes: size)
    let (fine, fineBytes) = base.fineTuned(fraction: 0.10)
    let (lora, loraBytes) = base.loraMerged()
    let meta = base.withMetadata("description", "re-tagged release, weights unchanged")
    let (insert, insertBytes) = base.withInsertedTensor()
    var changed: [String: JSONValue] = [:]
    for (name, model, bytes) in [("v1", base, 0), ("finetune", fine, fineBytes), ("lora", lora, loraBytes),
                                 ("metadata", meta, 0), ("insert", insert, insertBytes)] {
        let d = "\(dir)/\(name)"
        try FileSystem.makeDirectories(d)
        if !FileSystem.exists(d + "/model.safetensors") {
            try model.write(to: d + "/model.safetensors")
            try FileSystem.writeAtomically(model.configJSON, to: d + "/config.json")
        }
        changed[name] = .int(bytes)
    }
    print(JSONValue.object(["changed_tensor_bytes": .object(changed), "tensor_bytes": .int(base.totalTensorBytes)]).canonicalString())
}

/// The large-file case: one base file, its plain 10% fine-tune, and (with `shards` > 1) the
/// base split as Hugging Face shards `model-0000N-of-0000M.safetensors` with their index.
/// `mode`: "all", "no-update" (no fine-tune), "shards-only" (only the shards, where the disk
/// cannot hold the whole file and its shards at once) or "gguf-only" (the base as one GGUF).
@MainActor func genSizes(_ dir: String, size: Int, shards: Int, mode: String) throws {
    let base = SyntheticModel.llamaLike(targetBytes: size)
    let (fine, _) = base.fineTuned(fraction: 0.10)
    if mode == "gguf-only" {
        try FileSystem.makeDirectories("\(dir)/gguf")
        if !FileSystem.exists("\(dir)/gguf/model.gguf") { try base.writeGGUF(to: "\(dir)/gguf/model.gguf") }
        return
    }
    let whole: [(String, SyntheticModel)] = mode == "shards-only" ? [] : mode == "no-update" ? [("v1", base)] : [("v1", base), ("ft", fine)]
    for (name, model) in whole {
        try FileSystem.makeDirectories("\(dir)/\(name)")
        if !FileSystem.exists("\(dir)/\(name)/model.safetensors") { try model.write(to: "\(dir)/\(name)/model.safetensors") }
    }
    guard shards > 1 else { return }
    // Shards of about equal bytes, tensors kept in file order.
    let goal = base.totalTensorBytes / shards + 1
    var groups: [[SyntheticModel.Tensor]] = [[]]
    var bytes = 0
    for t in base.tensors {
        if bytes >= goal && groups.count < shards { groups.append([]); bytes = 0 }
        groups[groups.count - 1].append(t)
        bytes += t.bytes
    }
    let d = "\(dir)/sharded"
    try FileSystem.makeDirectories(d)
    var weightMap: [String: JSONValue] = [:]
    for (i, g) in groups.enumerated() {
        let file = String(format: "model-%05d-of-%05d.safetensors", i + 1, groups.count)
        var part = base
        part.tensors = g
        if !FileSystem.exists("\(d)/\(file)") { try part.write(to: "\(d)/\(file)") }
        for t in g { weightMap[t.name] = .string(file) }
    }
    let index = JSONValue.object(["metadata": .object(["total_size": .int(base.totalTensorBytes)]), "weight_map": .object(weightMap)])
    try FileSystem.writeAtomically(Array(index.canonicalString().utf8), to: "\(d)/model.safetensors.index.json")
}

/// The fine-tune derivations of the tensor-delta issue: every float tensor moved by noise of
/// S × its standard deviation (S = 0.001, 0.01), a merged rank-8 LoRA, and F32 versions.
@MainActor func genDelta(_ dir: String, size: Int) throws {
    let base = SyntheticModel.llamaLike(targetBytes: size)
    // F32 at half the tensors, so both models have the same bytes (zstd --patch-from stops at 2 GB).
    let f32 = SyntheticModel.llamaLike(targetBytes: size / 2).asF32()
    let sets: [(String, SyntheticModel)] = [
        ("v1", base), ("ft001", base.fullFineTune(scale: 0.001)), ("ft01", base.fullFineTune(scale: 0.01)),
        ("lora", base.mergedLoRA(rank: 8, scale: 0.01)),
        // v3 of the chain v1 -> ft001 -> ft001b: a second fine-tune step on top of the first.
        ("ft001b", base.fullFineTune(scale: 0.001).fullFineTune(scale: 0.001, seed: 99)),
        ("f32v1", f32), ("f32ft001", f32.fullFineTune(scale: 0.001)),
    ]
    for (name, model) in sets {
        let d = "\(dir)/\(name)"
        try FileSystem.makeDirectories(d)
        if !FileSystem.exists(d + "/model.safetensors") {
            try model.write(to: d + "/model.safetensors")
        }
    }
    print(JSONValue.object(["tensor_bytes": .int(base.totalTensorBytes)]).canonicalString())
}

/// A release chain r0 -> r1 -> ... -> rN-1: each a full fine-tune step (every float tensor moved
/// by noise of 0.001 × its standard deviation) on top of the one before, as weekly releases are.
@MainActor func genChain(_ dir: String, size: Int, count: Int) throws {
    var model = SyntheticModel.llamaLike(targetBytes: size)
    for k in 0..<count {
        if k > 0 { model = model.fullFineTune(scale: 0.001, seed: UInt64(100 + k)) }
        let d = "\(dir)/r\(k)"
        try FileSystem.makeDirectories(d)
        if !FileSystem.exists(d + "/model.safetensors") { try model.write(to: d + "/model.safetensors") }
    }
}

/// A realistic next version of real weights: every F32 tensor (or, with `bf16`, the model cast
/// to BF16 first) moved by gaussian noise of `scale` × that tensor's standard deviation and
/// rounded back to the output dtype; tensors of other dtypes are copied unchanged.
func derive(_ input: String, _ output: String, scale: Float, bf16: Bool, seed: UInt64) throws {
    let header = try SafetensorsHeader.read(path: input)
    let file = try FileDescriptor.openForReading(input)
    var entries: [String: JSONValue] = [:]
    var offset = 0
    var plan: [(TensorInfo, String)] = []
    for t in header.tensors {
        let outType = (t.dtype == "F32" && bf16) ? "BF16" : t.dtype
        let bytes = outType == "BF16" && t.dtype == "F32" ? Int(t.byteCount) / 2 : Int(t.byteCount)
        entries[t.name] = .object(["dtype": .string(outType), "shape": .array(t.shape.map { .int($0) }),
                                   "data_offsets": .array([.int(offset), .int(offset + bytes)])])
        offset += bytes
        plan.append((t, outType))
    }
    if !header.metadata.isEmpty { entries["__metadata__"] = .object(header.metadata.mapValues { .string($0) }) }
    var json = JSONValue.object(entries).canonicalBytes()
    while (8 + json.count) % 8 != 0 { json.append(0x20) }
    let out = try FileDescriptor(path: output, flags: O_WRONLY | O_CREAT | O_TRUNC)
    try out.write((0..<8).map { UInt8(truncatingIfNeeded: UInt64(json.count) >> (8 * $0)) } + json)
    for (t, outType) in plan {
        let raw = try file.pread(count: Int(t.byteCount), at: header.dataStart + t.begin)
        guard t.dtype == "F32" else { try out.write(raw); continue }
        var values = raw.withUnsafeBytes { Array($0.bindMemory(to: Float.self)) }
        if bf16 { values = values.map { SyntheticModel.float(SyntheticModel.bf16($0)) } }
        if scale > 0 && !values.isEmpty {
            let mean = values.reduce(0, +) / Float(values.count)
            let sd = (values.reduce(0) { $0 + ($1 - mean) * ($1 - mean) } / Float(values.count)).squareRoot()
            var rng = SplitMix(seed ^ t.name.hashValueStable)
            for i in values.indices { values[i] += scale * sd * rng.gaussian() }
        }
        if outType == "BF16" {
            let half = values.map { SyntheticModel.bf16($0) }
            try half.withUnsafeBytes { try out.write($0) }
        } else {
            try values.withUnsafeBytes { try out.write($0) }
        }
    }
    try out.sync()
}

/// Chunking throughput on one core over an in-memory buffer, best of `runs`.
func chunkSpeed(_ bytes: [UInt8], runs: Int) -> Double {
    let cdc = FastCDC(.default)
    var best = 0.0
    for _ in 0..<runs {
        let t = Timestamp.monotonicSeconds()
        var n = 0
        bytes.withUnsafeBytes { buf in
            var off = 0
            while off < buf.count {
                off += cdc.cut(UnsafeRawBufferPointer(rebasing: buf[off...]))
                n += 1
            }
        }
        let dt = Timestamp.monotonicSeconds() - t
        precondition(n > 0)
        best = max(best, Double(bytes.count) / dt / 1e9)
    }
    return best
}

let args = Array(CommandLine.arguments.dropFirst())
switch args.first {
case "gen":
    guard args.count >= 3, let size = Int(args[2]) else { fail("usage: slmstore-bench gen DIR BYTES") }
    do { try gen(args[1], size: size) } catch { fail("\(error)") }
case "gen-sizes":
    guard args.count >= 3, let size = Int(args[2]) else { fail("usage: slmstore-bench gen-sizes DIR BYTES [SHARDS] [all|no-update|shards-only|gguf-only]") }
    do {
        try genSizes(args[1], size: size, shards: args.count > 3 ? Int(args[3]) ?? 1 : 1, mode: args.count > 4 ? args[4] : "all")
    } catch { fail("\(error)") }
case "gen-delta":
    guard args.count >= 3, let size = Int(args[2]) else { fail("usage: slmstore-bench gen-delta DIR BYTES") }
    do { try genDelta(args[1], size: size) } catch { fail("\(error)") }
case "gen-chain":
    guard args.count >= 4, let size = Int(args[2]), let count = Int(args[3]), count >= 1 else { fail("usage: slmstore-bench gen-chain DIR BYTES COUNT") }
    do { try genChain(args[1], size: size, count: count) } catch { fail("\(error)") }
case "derive":
    // derive IN OUT SCALE [bf16] [SEED]
    guard args.count >= 4, let scale = Float(args[3]) else { fail("usage: slmstore-bench derive IN OUT SCALE [bf16|f32] [SEED]") }
    let cast = args.count > 4 && args[4] == "bf16"
    let seed = args.count > 5 ? UInt64(args[5]) ?? 1 : 1
    do { try derive(args[1], args[2], scale: scale, bf16: cast, seed: seed) } catch { fail("\(error)") }
case "delta-entropy":
    // delta-entropy BASE NEW: the order-0 bound of NEW's tensor deltas against BASE, as JSON.
    guard args.count >= 3 else { fail("usage: slmstore-bench delta-entropy BASE.safetensors NEW.safetensors") }
    do {
        let r = try deltaEntropy(base: args[1], new: args[2])
        try printJSON(r)
    } catch { fail("\(error)") }
case "rebuild":
    // rebuild STORE MODEL@VERSION: the speed of decoding the version's delta records, as JSON.
    guard args.count >= 3 else { fail("usage: slmstore-bench rebuild STORE MODEL@VERSION") }
    do {
        let r = try rebuildSpeed(store: args[1], version: args[2])
        try printJSON(r)
    } catch { fail("\(error)") }
case "large-store":
    // large-store DIR CHUNKS [MODELS VERSIONS_PER_MODEL]
    guard args.count >= 3, let chunks = Int(args[2]) else { fail("usage: slmstore-bench large-store DIR CHUNKS [MODELS VERSIONS]") }
    var spec = LargeStoreSpec(chunks: chunks)
    if args.count >= 5, let m = Int(args[3]), let v = Int(args[4]) { spec.models = m; spec.versionsPerModel = v }
    do {
        let r = try makeLargeStore(at: args[1], spec)
        try printJSON(r)
    } catch { fail("\(error)") }
case "manifest-remote":
    // manifest-remote DIR MODELS VERSIONS_PER_MODEL FORMAT [PACKS]
    guard args.count >= 5, let m = Int(args[2]), let v = Int(args[3]), let f = Int(args[4]), f == 1 || f == 2 else {
        fail("usage: slmstore-bench manifest-remote DIR MODELS VERSIONS 1|2 [PACKS]")
    }
    do {
        let r = try makeManifestRemote(at: args[1], models: m, versions: v, format: f, packs: args.count > 5 ? Int(args[5]) ?? 1 : 1)
        try printJSON(r)
    } catch { fail("\(error)") }
case "hostile-tree":
    // hostile-tree REMOTE-DIR NAME@VERSION CHUNKS: a version listing CHUNKS random chunk ids.
    guard args.count >= 4, let n = Int(args[3]) else { fail("usage: slmstore-bench hostile-tree REMOTE-DIR NAME@VERSION CHUNKS") }
    do { try printJSON(try makeHostileTree(remote: args[1], label: args[2], chunks: n)) } catch { fail("\(error)") }
case "chunk":
    let size = args.count > 1 ? Int(args[1]) ?? (256 << 20) : (256 << 20)
    var rng = SplitMix(1)
    var random = [UInt8](repeating: 0, count: size)
    random.withUnsafeMutableBytes { b in
        let p = b.bindMemory(to: UInt64.self)
        for i in 0..<p.count { p[i] = rng.next() }
    }
    var bf16 = [UInt8](repeating: 0, count: size)
    bf16.withUnsafeMutableBytes { b in
        let p = b.bindMemory(to: UInt16.self)
        for i in 0..<p.count { p[i] = UInt16(truncatingIfNeeded: (Float(0.02) * rng.gaussian()).bitPattern >> 16) }
    }
    let r = chunkSpeed(random, runs: 3), f = chunkSpeed(bf16, runs: 3)
    print(JSONValue.object(["random_gb_s": .double((r * 1000).rounded() / 1000), "bf16_gb_s": .double((f * 1000).rounded() / 1000)]).canonicalString())
default:
    fail("usage: slmstore-bench gen DIR BYTES | chunk [BYTES]")
}
