// Benchmark helper: generates the synthetic model and its next versions, and measures
// in-process chunking speed. Driven by Benchmarks/run.

import Foundation
import SLMStoreKit
import SLMSynthetic

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

/// The fine-tune derivations of the tensor-delta issue: every float tensor moved by noise of
/// S × its standard deviation (S = 0.001, 0.01), a merged rank-8 LoRA, and F32 versions.
@MainActor func genDelta(_ dir: String, size: Int) throws {
    let base = SyntheticModel.llamaLike(targetBytes: size)
    let f32 = base.asF32()
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
case "gen-delta":
    guard args.count >= 3, let size = Int(args[2]) else { fail("usage: slmstore-bench gen-delta DIR BYTES") }
    do { try genDelta(args[1], size: size) } catch { fail("\(error)") }
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
