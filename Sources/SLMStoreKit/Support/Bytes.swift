// Little-endian byte encoding and bounds-checked decoding for the binary formats
// (pack, pack index, tree). Every read is checked, since the bytes may be hostile.

struct ByteWriter {
    var bytes: [UInt8] = []

    init(capacity: Int = 0) { bytes.reserveCapacity(capacity) }

    mutating func u8(_ v: UInt8) { bytes.append(v) }
    mutating func u16(_ v: UInt16) { appendLE(v) }
    mutating func u32(_ v: UInt32) { appendLE(v) }
    mutating func u64(_ v: UInt64) { appendLE(v) }
    mutating func raw<C: Collection>(_ b: C) where C.Element == UInt8 { bytes.append(contentsOf: b) }

    private mutating func appendLE<T: FixedWidthInteger>(_ v: T) {
        var le = v.littleEndian
        withUnsafeBytes(of: &le) { bytes.append(contentsOf: $0) }
    }
}

/// Thrown by `ByteReader` when the input ends early or a value is out of range;
/// callers turn it into an `SLMError.damaged` naming the file.
struct ByteReaderError: Error { let message: String }

struct ByteReader {
    let bytes: [UInt8]
    private(set) var offset: Int

    init(_ bytes: [UInt8], offset: Int = 0) {
        self.bytes = bytes
        self.offset = offset
    }

    var remaining: Int { bytes.count - offset }
    var atEnd: Bool { offset == bytes.count }

    mutating func need(_ n: Int, _ what: String) throws {
        guard n >= 0, remaining >= n else {
            throw ByteReaderError(message: "truncated while reading \(what) at byte \(offset)")
        }
    }

    mutating func u8(_ what: String = "u8") throws -> UInt8 {
        try need(1, what)
        defer { offset += 1 }
        return bytes[offset]
    }
    mutating func u16(_ what: String = "u16") throws -> UInt16 { try le(what) }
    mutating func u32(_ what: String = "u32") throws -> UInt32 { try le(what) }
    mutating func u64(_ what: String = "u64") throws -> UInt64 { try le(what) }

    mutating func raw(_ n: Int, _ what: String) throws -> [UInt8] {
        try need(n, what)
        defer { offset += n }
        return Array(bytes[offset..<offset + n])
    }

    mutating func expect(_ magic: [UInt8], _ what: String) throws {
        let got = try raw(magic.count, what)
        guard got == magic else { throw ByteReaderError(message: "bad magic for \(what)") }
    }

    private mutating func le<T: FixedWidthInteger>(_ what: String) throws -> T {
        let size = MemoryLayout<T>.size
        try need(size, what)
        var v: T = 0
        for i in 0..<size { v |= T(bytes[offset + i]) << (8 * i) }
        offset += size
        return v
    }
}

extension Array where Element == UInt8 {
    func readLE<T: FixedWidthInteger>(_: T.Type, at offset: Int) -> T {
        var v: T = 0
        for i in 0..<MemoryLayout<T>.size { v |= T(self[offset + i]) << (8 * i) }
        return v
    }
}
