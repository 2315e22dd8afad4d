// Parsing and validation of a safetensors header: 8-byte little-endian length, then a JSON
// object of tensors (dtype, shape, data_offsets) and an optional __metadata__ map.

/// One tensor of a weights file: its name, type, shape and where its bytes are.
public struct TensorInfo: Equatable, Sendable {
    /// The tensor's name in the file.
    public var name: String
    /// The element type as the file names it (BF16, F32, or a ggml type name for GGUF).
    public var dtype: String
    /// The dimensions, as the file lists them.
    public var shape: [UInt64]
    /// Byte range relative to the start of the data area (after the header), as in the file.
    public var begin: UInt64
    /// End of the byte range (exclusive), relative like `begin`.
    public var end: UInt64

    /// The tensor's size in bytes.
    public var byteCount: UInt64 { end - begin }

    /// Data order: by begin, then end, then name as unsigned UTF-8 bytes (never Swift's
    /// Unicode-aware String order, which would equate NFC and NFD spellings).
    public static func sortInDataOrder(_ tensors: inout [TensorInfo]) {
        tensors.sort { a, b in
            if a.begin != b.begin { return a.begin < b.begin }
            if a.end != b.end { return a.end < b.end }
            return Array(a.name.utf8).lexicographicallyPrecedes(Array(b.name.utf8))
        }
    }
}

/// Which file format a tensor table was read from.
public enum TensorFileFormat: Sendable {
    /// A safetensors file (tree kind 1).
    case safetensors
    /// A GGUF file (tree kind 2).
    case gguf
}

/// The tensor table of a weights file (safetensors or GGUF): what chunking, codecs and deltas align
/// to.
public struct SafetensorsHeader: Equatable, Sendable {
    /// Length of the JSON header (the N of the 8-byte prefix).
    public var headerLength: UInt64
    /// Tensors in data order (by begin offset, then name).
    public var tensors: [TensorInfo]
    /// The `__metadata__` map of a safetensors file (empty for GGUF).
    public var metadata: [String: String]
    /// For GGUF, `headerLength` is the offset of the data section (everything before it is
    /// header), tensor dtypes are ggml type names and shapes are GGUF's dims (ne0 first).
    public var format: TensorFileFormat = .safetensors

    /// A table from its parts.
    public init(headerLength: UInt64, tensors: [TensorInfo], metadata: [String: String]) {
        self.headerLength = headerLength
        self.tensors = tensors
        self.metadata = metadata
    }

    /// Offset in the file where tensor data starts.
    public var dataStart: UInt64 { format == .gguf ? headerLength : 8 + headerLength }

    /// A weights file's tensor table, by its suffix: safetensors or GGUF; nil for anything else.
    public static func read(weightsFile path: String, treePath: String) throws -> SafetensorsHeader? {
        if treePath.hasSuffix(".safetensors") { return try read(path: path) }
        if GGUF.isGGUFPath(treePath) { return try GGUF.read(path: path) }
        return nil
    }

    /// Largest header accepted; the reference implementation uses the same bound.
    public static let maxHeaderLength: UInt64 = 100 * 1024 * 1024
    /// Most tensors one file may list. Real checkpoints list hundreds to a few thousand per file
    /// (sharded MoE models included); 850,000 zero-size tensors in a 96 MB header once made a
    /// tree larger than any store accepts, and an 848 MiB parse. Counted before anything is built.
    public static let maxTensors = 65_536

    /// Bits per element of every dtype the format defines.
    public static let dtypeBits: [String: UInt64] = [
        "BOOL": 8, "U8": 8, "I8": 8, "F8_E5M2": 8, "F8_E4M3": 8, "F8_E8M0": 8, "F4": 4, "F6_E2M3": 6, "F6_E3M2": 6,
        "I16": 16, "U16": 16, "F16": 16, "BF16": 16,
        "I32": 32, "U32": 32, "F32": 32, "I64": 64, "U64": 64, "F64": 64, "C64": 64,
    ]

    /// Reads and validates the header of the safetensors file at `path`.
    public static func read(path: String) throws -> SafetensorsHeader {
        let file = try FileDescriptor.openForReading(path)
        let size = try file.size()
        guard size >= 8 else { throw SLMError.input(path: path, problem: "truncated safetensors file: \(size) bytes, need at least 8") }
        let prefix = try file.pread(count: 8, at: 0)
        let n = prefix.readLE(UInt64.self, at: 0)
        guard n <= maxHeaderLength else {
            throw SLMError.input(path: path, problem: "safetensors header length \(n) exceeds the \(maxHeaderLength)-byte limit")
        }
        guard 8 + n <= size else {
            throw SLMError.input(path: path, problem: "safetensors header length \(n) exceeds the file size \(size)")
        }
        let json = try file.pread(count: Int(n), at: 8)
        return try parse(headerJSON: json, headerLength: n, fileSize: size, path: path)
    }

    /// Parses and checks the JSON header of a safetensors file of `fileSize` bytes: every tensor
    /// inside the data area, none overlapping.
    public static func parse(headerJSON json: [UInt8], headerLength: UInt64, fileSize: UInt64, path: String) throws -> SafetensorsHeader {
        func bad(_ problem: String) -> SLMError { .input(path: path, problem: "invalid safetensors header: \(problem)") }
        // A tensor entry is about seven values; metadata may add as many again.
        let values = JSONValue.approximateValueCount(json)
        guard values <= 16 * maxTensors + 65_536 else {
            throw bad("about \(values) JSON values, more than a header of \(maxTensors) tensors holds")
        }
        let value: JSONValue
        do { value = try JSONValue.parse(json) } catch let e as JSONValue.ParseError {
            throw bad("not valid JSON (\(e.message) at byte \(8 + e.offset))")
        }
        // Members, not a dictionary: tensor names that differ only in normalization are two tensors.
        guard let members = value.memberList else { throw bad("the header is not a JSON object") }
        guard members.count <= maxTensors + 1 else { throw bad("\(members.count) entries, more than the \(maxTensors) tensors a file may list") }
        let entries = members.map { (key: $0.key, value: $0.value) }
        var tensors: [TensorInfo] = []
        var metadata: [String: String] = [:]
        for (name, entry) in entries {
            if name == "__metadata__" {
                guard let m = entry.memberList else { throw bad("__metadata__ is not an object") }
                for (k, v) in m.map({ ($0.key, $0.value) }) {
                    guard case let .string(s) = v else { throw bad("__metadata__ value for \"\(k)\" is not a string") }
                    metadata[k] = s
                }
                continue
            }
            guard let t = entry.objectValue else { throw bad("tensor \"\(name)\" is not an object") }
            guard name.utf8.count <= 65535 else { throw bad("a tensor name is longer than 65535 bytes") }
            guard let dtype = t["dtype"]?.stringValue else { throw bad("tensor \"\(name)\" has no dtype string") }
            guard let bits = dtypeBits[dtype] else { throw bad("tensor \"\(name)\" has unknown dtype \"\(dtype)\"") }
            guard let shapeValues = t["shape"]?.arrayValue else { throw bad("tensor \"\(name)\" has no shape list") }
            guard shapeValues.count <= 255 else { throw bad("tensor \"\(name)\" has more than 255 dimensions") }
            var shape: [UInt64] = []
            var elements: UInt64 = 1
            var overflow = false
            for d in shapeValues {
                guard let dim = d.uint64Value else { throw bad("tensor \"\(name)\" has a shape entry that is not a non-negative integer") }
                shape.append(dim)
                let (m, o) = elements.multipliedReportingOverflow(by: dim)
                elements = m
                overflow = overflow || o
            }
            guard let offsets = t["data_offsets"]?.arrayValue, offsets.count == 2,
                  let begin = offsets[0].uint64Value, let end = offsets[1].uint64Value else {
                throw bad("tensor \"\(name)\" has no data_offsets [begin, end]")
            }
            guard begin <= end else { throw bad("tensor \"\(name)\" has data_offsets with begin \(begin) after end \(end)") }
            let (totalBits, o2) = elements.multipliedReportingOverflow(by: bits)
            guard !overflow, !o2, totalBits % 8 == 0, totalBits / 8 == end - begin else {
                throw bad("tensor \"\(name)\": dtype \(dtype) × shape \(shape) does not match its \(end - begin)-byte range")
            }
            tensors.append(TensorInfo(name: name, dtype: dtype, shape: shape, begin: begin, end: end))
        }
        TensorInfo.sortInDataOrder(&tensors)
        let dataLength = fileSize - 8 - headerLength
        var expected: UInt64 = 0
        for t in tensors {
            if t.begin < expected { throw bad("tensor \"\(t.name)\" overlaps the previous tensor (starts at \(t.begin), previous ends at \(expected))") }
            if t.begin > expected { throw bad("gap before tensor \"\(t.name)\" (bytes \(expected)..<\(t.begin) are not covered)") }
            expected = t.end
        }
        if expected > dataLength { throw bad("data_offsets reach byte \(expected) but the data area has only \(dataLength) bytes (truncated file?)") }
        if expected < dataLength { throw bad("\(dataLength - expected) bytes after the last tensor are not covered by any tensor") }
        return SafetensorsHeader(headerLength: headerLength, tensors: tensors, metadata: metadata)
    }
}
