// Synthetic bf16 models of Llama-like layout and realistic next versions of them (fine-tune,
// LoRA merge, metadata change, inserted tensor), for the demo, the tests and the benchmarks.
// Values follow N(0, 0.02); every tensor's values derive from its name, so versions share bytes.

import SLMStoreKit
#if canImport(Glibc)
import Glibc
#endif

/// A synthetic weights file: named tensors whose values are generated, and the edits that make
/// later versions of it.
public struct SyntheticModel: Sendable {
    /// One tensor: its name and shape.
    public struct Tensor: Sendable {
        /// Its name in the file.
        public var name: String
        /// Its dimensions.
        public var shape: [Int]
        /// Bytes per element: 2 (BF16) or 4 (F32).
        public var elementSize = 2
        /// Elements in the tensor.
        public var elements: Int { shape.reduce(1, *) }
        /// Bytes in the tensor.
        public var bytes: Int { elements * elementSize }
        /// A BF16 tensor.
        public init(name: String, shape: [Int]) { self.name = name; self.shape = shape }
    }

    /// How a tensor's values are produced.
    public enum Edit: Sendable, Equatable {
        /// The base values, unchanged.
        case none
        /// Fine-tune: add N(0, scale) noise (in float) to every value.
        case fineTune(seed: UInt64, scale: Float)
        /// Merge a rank-r LoRA update B·A (2-D tensors only).
        case lora(seed: UInt64, rank: Int, scale: Float)
    }

    /// Every tensor stored as F32 instead of BF16 (same values before rounding).
    public func asF32() -> SyntheticModel {
        var m = self
        for i in m.tensors.indices { m.tensors[i].elementSize = 4 }
        return m
    }

    /// A full fine-tune: every tensor moved by gaussian noise of `scale` × its standard deviation
    /// (0.02 for every tensor of this generator), rounded back to the tensor's dtype.
    public func fullFineTune(scale: Float, seed: UInt64 = 21) -> SyntheticModel {
        var m = self
        for t in tensors { m.edits[t.name, default: []].append(.fineTune(seed: seed ^ t.name.hashValueStable, scale: scale * 0.02)) }
        return m
    }

    /// A merged LoRA: every 2-D weight plus B·A of `rank`, with entries of B·A of standard
    /// deviation `scale` × the tensor's (B and A entries ~ N(0, σ²): B·A has sd √rank·σ²).
    public func mergedLoRA(rank: Int = 8, scale: Float, seed: UInt64 = 31) -> SyntheticModel {
        var m = self
        let sigma = (scale * 0.02 / Float(rank).squareRoot()).squareRoot()
        for t in tensors where t.shape.count == 2 { m.edits[t.name, default: []].append(.lora(seed: seed ^ t.name.hashValueStable, rank: rank, scale: sigma)) }
        return m
    }

    /// The tensors, in file order.
    public var tensors: [Tensor]
    /// Edits per tensor, applied in order (a fine-tune of a fine-tune is two edits).
    public var edits: [String: [Edit]] = [:]
    /// The safetensors `__metadata__`.
    public var metadata: [String: String] = ["format": "pt"]

    /// A model of roughly `targetBytes`: hidden size, layers and vocabulary grow together.
    public static func llamaLike(targetBytes: Int) -> SyntheticModel {
        var hidden = 256
        var layers = 2
        func size(_ h: Int, _ l: Int) -> Int {
            let vocab = 8 * h
            let inter = (h * 8 / 3 + 63) / 64 * 64
            return 2 * (vocab * h + l * (4 * h * h + 3 * h * inter + 2 * h) + h)
        }
        while size(hidden, layers) < targetBytes {
            if layers < hidden / 64 { layers += 1 } else { hidden += 64 }
        }
        let vocab = 8 * hidden
        let inter = (hidden * 8 / 3 + 63) / 64 * 64
        var t: [Tensor] = [Tensor(name: "model.embed_tokens.weight", shape: [vocab, hidden])]
        for l in 0..<layers {
            let p = "model.layers.\(l)."
            t.append(Tensor(name: p + "input_layernorm.weight", shape: [hidden]))
            for proj in ["q_proj", "k_proj", "v_proj", "o_proj"] {
                t.append(Tensor(name: p + "self_attn.\(proj).weight", shape: [hidden, hidden]))
            }
            t.append(Tensor(name: p + "post_attention_layernorm.weight", shape: [hidden]))
            t.append(Tensor(name: p + "mlp.gate_proj.weight", shape: [inter, hidden]))
            t.append(Tensor(name: p + "mlp.up_proj.weight", shape: [inter, hidden]))
            t.append(Tensor(name: p + "mlp.down_proj.weight", shape: [hidden, inter]))
        }
        t.append(Tensor(name: "model.norm.weight", shape: [hidden]))
        return SyntheticModel(tensors: t)
    }

    /// Bytes of all tensors (the file is this plus its header).
    public var totalTensorBytes: Int { tensors.reduce(0) { $0 + $1.bytes } }

    // MARK: Next versions

    /// Fine-tunes whole tensors until `fraction` of the tensor bytes are changed; returns the
    /// new model and the bytes of the tensors that changed.
    public func fineTuned(fraction: Double, seed: UInt64 = 7) -> (SyntheticModel, Int) {
        var m = self
        var rng = SplitMix(seed)
        let goal = Int(Double(totalTensorBytes) * fraction)
        var changed = 0
        var order = Array(tensors.indices)
        for i in stride(from: order.count - 1, to: 0, by: -1) { order.swapAt(i, Int(rng.next() % UInt64(i + 1))) }
        for i in order where changed < goal {
            let t = tensors[i]
            guard t.shape.count == 2, changed + t.bytes <= goal + goal / 4 else { continue }
            m.edits[t.name, default: []].append(.fineTune(seed: rng.next(), scale: 0.002))
            changed += t.bytes
        }
        return (m, changed)
    }

    /// Merges a rank-8 LoRA into every q and v projection.
    public func loraMerged(rank: Int = 8, seed: UInt64 = 11) -> (SyntheticModel, Int) {
        var m = self
        var changed = 0
        for t in tensors where t.name.hasSuffix("q_proj.weight") || t.name.hasSuffix("v_proj.weight") {
            m.edits[t.name, default: []].append(.lora(seed: seed ^ UInt64(truncatingIfNeeded: t.name.hashValueStable), rank: rank, scale: 0.01))
            changed += t.bytes
        }
        return (m, changed)
    }

    /// The same model with `key` set in its metadata (a metadata-only change).
    public func withMetadata(_ key: String, _ value: String) -> SyntheticModel {
        var m = self
        m.metadata[key] = value
        return m
    }

    /// Inserts a new tensor after the first layer's attention block.
    public func withInsertedTensor() -> (SyntheticModel, Int) {
        var m = self
        let hidden = tensors[0].shape[1]
        let t = Tensor(name: "model.layers.0.self_attn.rotary_scale.weight", shape: [hidden, 64])
        let at = (tensors.firstIndex { $0.name == "model.layers.0.post_attention_layernorm.weight" } ?? 1)
        m.tensors.insert(t, at: at)
        return (m, t.bytes)
    }

    // MARK: Writing

    /// Writes the model as a safetensors file, streaming tensor by tensor.
    public func write(to path: String) throws {
        var entries: [String: JSONValue] = [:]
        var offset = 0
        for t in tensors {
            entries[t.name] = .object(["dtype": .string(t.elementSize == 4 ? "F32" : "BF16"), "shape": .array(t.shape.map { .int($0) }),
                                       "data_offsets": .array([.int(offset), .int(offset + t.bytes)])])
            offset += t.bytes
        }
        entries["__metadata__"] = .object(metadata.mapValues { .string($0) })
        var header = JSONValue.object(entries).canonicalBytes()
        while (8 + header.count) % 8 != 0 { header.append(0x20) }
        let file = try FileDescriptor(path: path, flags: O_WRONLY | O_CREAT | O_TRUNC)
        let length = UInt64(header.count)
        try file.write((0..<8).map { UInt8(truncatingIfNeeded: length >> (8 * $0)) } + header)
        for t in tensors {
            var data = [Float](repeating: 0, count: t.elements)
            fill(t, &data)
            if t.elementSize == 4 {
                try data.withUnsafeBytes { try file.write($0) }
            } else {
                let half = data.map { Self.bf16($0) }
                try half.withUnsafeBytes { try file.write($0) }
            }
        }
        try file.sync()
    }

    /// Writes the model as a GGUF (version 3, ggml types BF16 and F32, alignment 32), streaming
    /// tensor by tensor, so a benchmark can make one of any size.
    public func writeGGUF(to path: String) throws {
        let alignment = 32
        func aligned(_ n: Int) -> Int { (n + alignment - 1) / alignment * alignment }
        var h: [UInt8] = []
        func u32(_ v: UInt32) { withUnsafeBytes(of: v.littleEndian) { h.append(contentsOf: $0) } }
        func u64(_ v: UInt64) { withUnsafeBytes(of: v.littleEndian) { h.append(contentsOf: $0) } }
        func string(_ s: String) { u64(UInt64(s.utf8.count)); h.append(contentsOf: s.utf8) }
        h.append(contentsOf: Array("GGUF".utf8))
        u32(3)
        u64(UInt64(tensors.count))
        u64(2)
        string("general.architecture"); u32(8); string("llama")
        string("general.alignment"); u32(4); u32(UInt32(alignment))
        var offset = 0
        for t in tensors {
            string(t.name)
            u32(UInt32(t.shape.count))
            for d in t.shape.reversed() { u64(UInt64(d)) }  // ggml lists ne0 (the innermost) first
            u32(t.elementSize == 4 ? 0 : 30)
            u64(UInt64(offset))
            offset = aligned(offset + t.bytes)
        }
        h.append(contentsOf: [UInt8](repeating: 0, count: aligned(h.count) - h.count))
        let file = try FileDescriptor(path: path, flags: O_WRONLY | O_CREAT | O_TRUNC)
        try file.write(h)
        for t in tensors {
            var data = [Float](repeating: 0, count: t.elements)
            fill(t, &data)
            var bytes: [UInt8] = t.elementSize == 4 ? data.withUnsafeBytes { Array($0) } : data.map { Self.bf16($0) }.withUnsafeBytes { Array($0) }
            bytes.append(contentsOf: [UInt8](repeating: 0, count: aligned(t.bytes) - t.bytes))
            try file.write(bytes)
        }
        try file.sync()
    }

    /// A small config.json to go beside the weights.
    public var configJSON: [UInt8] {
        let hidden = tensors[0].shape[1]
        let layers = tensors.filter { $0.name.hasSuffix("q_proj.weight") }.count
        return JSONValue.object(["architectures": .array([.string("LlamaForCausalLM")]), "hidden_size": .int(hidden),
                                 "num_hidden_layers": .int(layers), "vocab_size": .int(tensors[0].shape[0]),
                                 "torch_dtype": .string("bfloat16")]).prettyString().utf8.map { $0 } + [0x0a]
    }

    /// Values of one tensor, already rounded to its dtype (kept as Float).
    private func fill(_ t: Tensor, _ out: inout [Float]) {
        var rng = SplitMix(UInt64(truncatingIfNeeded: t.name.hashValueStable))
        let isNorm = t.shape.count == 1
        let round: (Float) -> Float = t.elementSize == 4 ? { $0 } : { Self.float(Self.bf16($0)) }
        for i in 0..<out.count {
            out[i] = round(isNorm ? 1.0 + 0.02 * rng.gaussian() : 0.02 * rng.gaussian())
        }
        for edit in edits[t.name] ?? [] {
        switch edit {
        case .none: break
        case let .fineTune(seed, scale):
            var r = SplitMix(seed)
            for i in 0..<out.count { out[i] = round(out[i] + scale * r.gaussian()) }
        case let .lora(seed, rank, scale):
            guard t.shape.count == 2 else { break }
            let rows = t.shape[0], cols = t.shape[1]
            var r = SplitMix(seed)
            let b = (0..<rows * rank).map { _ in scale * r.gaussian() }
            let a = (0..<rank * cols).map { _ in scale * r.gaussian() }
            for i in 0..<rows {
                for j in 0..<cols {
                    var delta: Float = 0
                    for k in 0..<rank { delta += b[i * rank + k] * a[k * cols + j] }
                    out[i * cols + j] = round(out[i * cols + j] + delta)
                }
            }
        }
        }
    }

    /// `f` rounded to BF16 (round to nearest even).
    public static func bf16(_ f: Float) -> UInt16 {
        let bits = f.bitPattern
        let rounding = UInt32(0x7fff) + ((bits >> 16) & 1)
        return UInt16(truncatingIfNeeded: (bits &+ rounding) >> 16)
    }

    /// The BF16 value `b` as a Float.
    public static func float(_ b: UInt16) -> Float { Float(bitPattern: UInt32(b) << 16) }
}

/// SplitMix64: a small, fast, reproducible generator (the same numbers on every machine).
public struct SplitMix: Sendable {
    var state: UInt64
    /// A generator starting from `seed`.
    public init(_ seed: UInt64) { state = seed }

    /// The next 64 random bits.
    public mutating func next() -> UInt64 {
        state &+= 0x9E37_79B9_7F4A_7C15
        var z = state
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        return z ^ (z >> 31)
    }

    /// Approximately standard normal (sum of four uniforms, rescaled): cheap and deterministic.
    public mutating func gaussian() -> Float {
        let v = next()
        var s: Float = 0
        for k in 0..<4 { s += Float((v >> (16 * UInt64(k))) & 0xffff) / 65536 }
        return (s - 2) * 1.7320508  // variance of the sum is 4/12
    }
}

extension String {
    /// FNV-1a of the UTF-8 bytes: unlike hashValue, the same in every process.
    public var hashValueStable: UInt64 {
        var h: UInt64 = 0xcbf2_9ce4_8422_2325
        for b in utf8 { h = (h ^ UInt64(b)) &* 0x100_0000_01b3 }
        return h
    }
}
