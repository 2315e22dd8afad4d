// Parsing and validation of a GGUF file's header (versions 2 and 3, little-endian, as ggml's
// docs/gguf.md lays it out): metadata key/values (skipped, but every length checked before it
// is read), tensor infos, alignment, data section. The result is a tensor table in the same shape
// as a safetensors header, so chunking, codecs, deltas, `show` and `diff` treat both alike.

/// Reading the tensor table of a GGUF file.
public enum GGUF {
    /// The four bytes a GGUF file starts with.
    public static let magic: [UInt8] = Array("GGUF".utf8)

    /// Elements per block and bytes per block of every ggml type this reader knows (numbering and
    /// sizes as in gguf-py's GGML_QUANT_SIZES).
    public static let types: [UInt32: (name: String, blockElements: UInt64, blockBytes: UInt64)] = [
        0: ("F32", 1, 4), 1: ("F16", 1, 2), 2: ("Q4_0", 32, 18), 3: ("Q4_1", 32, 20), 6: ("Q5_0", 32, 22), 7: ("Q5_1", 32, 24),
        8: ("Q8_0", 32, 34), 9: ("Q8_1", 32, 40), 10: ("Q2_K", 256, 84), 11: ("Q3_K", 256, 110), 12: ("Q4_K", 256, 144),
        13: ("Q5_K", 256, 176), 14: ("Q6_K", 256, 210), 15: ("Q8_K", 256, 292), 16: ("IQ2_XXS", 256, 66), 17: ("IQ2_XS", 256, 74),
        18: ("IQ3_XXS", 256, 98), 19: ("IQ1_S", 256, 50), 20: ("IQ4_NL", 32, 18), 21: ("IQ3_S", 256, 110), 22: ("IQ2_S", 256, 82),
        23: ("IQ4_XS", 256, 136), 24: ("I8", 1, 1), 25: ("I16", 1, 2), 26: ("I32", 1, 4), 27: ("I64", 1, 8), 28: ("F64", 1, 8),
        29: ("IQ1_M", 256, 56), 30: ("BF16", 1, 2), 34: ("TQ1_0", 256, 54), 35: ("TQ2_0", 256, 66), 39: ("MXFP4", 32, 17),
    ]

    static let maxTensors: UInt64 = 1 << 20
    static let maxKeyValues: UInt64 = 1 << 20
    static let maxString: UInt64 = 64 << 20
    static let maxDims: UInt32 = 8

    /// Whether `path` names a GGUF file by its suffix (the rule `add` follows, as for .safetensors).
    public static func isGGUFPath(_ path: String) -> Bool { path.hasSuffix(".gguf") }

    /// The tensor table of the GGUF file at `path`, every length and offset checked against the
    /// file.
    public static func read(path: String) throws -> SafetensorsHeader {
        let file = try FileDescriptor.openForReading(path)
        let size = try file.size()
        var r = StreamReader(file: file, size: size, path: path)
        func bad(_ p: String) -> SLMError { .input(path: path, problem: "invalid GGUF file: \(p)") }
        guard size >= 24, try r.bytes(4) == magic else { throw bad("no GGUF magic (\"GGUF\") at the start") }
        let version = try r.u32()
        guard version == 2 || version == 3 else {
            throw bad("version \(version) is not supported (this reader takes little-endian versions 2 and 3)")
        }
        let tensorCount = try r.u64(), kvCount = try r.u64()
        guard tensorCount <= maxTensors, kvCount <= maxKeyValues else { throw bad("\(tensorCount) tensors and \(kvCount) metadata keys exceed the limits") }
        var alignment: UInt64 = 32
        for _ in 0..<kvCount {
            let key = try r.string()
            let type = try r.u32()
            if key == Array("general.alignment".utf8) {
                guard type == 4 else { throw bad("general.alignment is not a uint32") }
                alignment = UInt64(try r.u32())
                guard alignment > 0, alignment % 8 == 0, alignment <= 1 << 20 else { throw bad("general.alignment \(alignment) is not a multiple of 8 up to 1 MiB") }
            } else {
                try r.skipValue(type: type, depth: 0)
            }
        }
        var tensors: [TensorInfo] = []
        var names = Set<[UInt8]>()
        for _ in 0..<tensorCount {
            let nameBytes = try r.string()
            guard nameBytes.count <= 65535, let name = String(validating: nameBytes, as: UTF8.self) else { throw bad("a tensor name is not UTF-8 or longer than 65535 bytes") }
            guard names.insert(nameBytes).inserted else { throw bad("tensor \"\(name)\" appears twice") }
            let nDims = try r.u32()
            guard nDims >= 1, nDims <= maxDims else { throw bad("tensor \"\(name)\" has \(nDims) dimensions") }
            var dims: [UInt64] = []
            var elements: UInt64 = 1
            var overflow = false
            for _ in 0..<nDims {
                let d = try r.u64()
                dims.append(d)
                let (m, o) = elements.multipliedReportingOverflow(by: d)
                elements = m
                overflow = overflow || o
            }
            let typeID = try r.u32()
            guard let type = types[typeID] else { throw bad("tensor \"\(name)\" has unknown ggml type \(typeID)") }
            let offset = try r.u64()
            guard !overflow, elements % type.blockElements == 0 else {
                throw bad("tensor \"\(name)\": \(elements) elements are not whole \(type.name) blocks of \(type.blockElements)")
            }
            let (bytes, o) = (elements / type.blockElements).multipliedReportingOverflow(by: type.blockBytes)
            guard !o, offset % alignment == 0, offset <= size, bytes <= size - offset else {
                throw bad("tensor \"\(name)\": offset \(offset) is unaligned or its \(bytes) bytes lie beyond the file")
            }
            tensors.append(TensorInfo(name: name, dtype: type.name, shape: dims, begin: offset, end: offset + bytes))
        }
        let dataStart = (r.position + alignment - 1) / alignment * alignment
        guard dataStart <= size else { throw bad("the data section would start at \(dataStart), beyond the file's \(size) bytes") }
        let dataLength = size - dataStart
        TensorInfo.sortInDataOrder(&tensors)
        var expected: UInt64 = 0
        for t in tensors {
            if t.begin < expected { throw bad("tensor \"\(t.name)\" overlaps the previous tensor (starts at \(t.begin), previous ends at \(expected))") }
            if t.begin - expected >= alignment { throw bad("\(t.begin - expected) bytes before tensor \"\(t.name)\" belong to no tensor") }
            expected = t.end
        }
        if expected > dataLength { throw bad("tensor data reaches byte \(expected) but the data section has only \(dataLength) bytes (truncated file?)") }
        if dataLength - expected >= alignment { throw bad("\(dataLength - expected) bytes after the last tensor belong to no tensor") }
        var header = SafetensorsHeader(headerLength: dataStart, tensors: tensors, metadata: [:])
        header.format = .gguf
        return header
    }

    /// Sequential reads of the header through a 1 MiB window: the metadata of a real model (its
    /// vocabulary) runs to megabytes, and none of it needs to be held.
    struct StreamReader {
        let file: FileDescriptor
        let size: UInt64
        let path: String
        var buffer: [UInt8] = []
        var bufferStart: UInt64 = 0
        var position: UInt64 = 0

        init(file: FileDescriptor, size: UInt64, path: String) {
            self.file = file
            self.size = size
            self.path = path
        }

        mutating func bytes(_ n: Int) throws -> [UInt8] {
            guard UInt64(n) <= size &- position, position <= size else {
                throw SLMError.input(path: path, problem: "invalid GGUF file: the header runs past the end of the file (at byte \(position))")
            }
            if position < bufferStart || position + UInt64(n) > bufferStart + UInt64(buffer.count) {
                let want = Int(min(max(UInt64(n), 1 << 20), size - position))
                buffer = try file.pread(count: want, at: position)
                bufferStart = position
            }
            let at = Int(position - bufferStart)
            position += UInt64(n)
            return Array(buffer[at..<at + n])
        }

        mutating func skip(_ n: UInt64) throws {
            guard n <= size &- position, position <= size else {
                throw SLMError.input(path: path, problem: "invalid GGUF file: the header runs past the end of the file (at byte \(position))")
            }
            position += n
        }

        mutating func u32() throws -> UInt32 { try bytes(4).readLE(UInt32.self, at: 0) }
        mutating func u64() throws -> UInt64 { try bytes(8).readLE(UInt64.self, at: 0) }

        mutating func string() throws -> [UInt8] {
            let n = try u64()
            guard n <= GGUF.maxString else { throw SLMError.input(path: path, problem: "invalid GGUF file: a string of \(n) bytes exceeds the limit") }
            return try bytes(Int(n))
        }

        mutating func skipValue(type: UInt32, depth: Int) throws {
            let fixed: [UInt32: UInt64] = [0: 1, 1: 1, 2: 2, 3: 2, 4: 4, 5: 4, 6: 4, 7: 1, 10: 8, 11: 8, 12: 8]
            if let n = fixed[type] { try skip(n); return }
            switch type {
            case 8:
                let n = try u64()
                guard n <= GGUF.maxString else { throw SLMError.input(path: path, problem: "invalid GGUF file: a string of \(n) bytes exceeds the limit") }
                try skip(n)
            case 9:
                guard depth < 4 else { throw SLMError.input(path: path, problem: "invalid GGUF file: arrays nested too deeply") }
                let elementType = try u32()
                let count = try u64()
                if let n = fixed[elementType] {
                    let (total, o) = count.multipliedReportingOverflow(by: n)
                    guard !o else { throw SLMError.input(path: path, problem: "invalid GGUF file: an array of \(count) elements is too long") }
                    try skip(total)
                } else {
                    // Each element takes at least 8 bytes (a string's length): bound the loop by what is left.
                    guard count <= (size - position) / 8 else { throw SLMError.input(path: path, problem: "invalid GGUF file: an array of \(count) elements runs past the end of the file") }
                    for _ in 0..<count { try skipValue(type: elementType, depth: depth + 1) }
                }
            default:
                throw SLMError.input(path: path, problem: "invalid GGUF file: unknown metadata value type \(type) at byte \(position)")
            }
        }
    }
}
