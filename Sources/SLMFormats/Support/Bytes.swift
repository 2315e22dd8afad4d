// Little-endian byte encoding and bounds-checked decoding for the binary formats
// (pack, pack index, tree). Every read is checked, since the bytes may be hostile.

/// Builds little-endian binary formats into a byte array.
package struct ByteWriter {
    /// What was written.
    package var bytes: [UInt8] = []

    /// A writer with room for `capacity` bytes.
    package init(capacity: Int = 0) { bytes.reserveCapacity(capacity) }

    /// Appends one byte.
    package mutating func u8(_ v: UInt8) { bytes.append(v) }
    mutating func u16(_ v: UInt16) { appendLE(v) }
    /// Appends a little-endian u32.
    package mutating func u32(_ v: UInt32) { appendLE(v) }
    /// Appends a little-endian u64.
    package mutating func u64(_ v: UInt64) { appendLE(v) }
    /// Appends bytes as they are.
    package mutating func raw<C: Collection>(_ b: C) where C.Element == UInt8 { bytes.append(contentsOf: b) }

    private mutating func appendLE<T: FixedWidthInteger>(_ v: T) {
        var le = v.littleEndian
        withUnsafeBytes(of: &le) { bytes.append(contentsOf: $0) }
    }
}

/// Thrown by `ByteReader` when the input ends early or a value is out of range;
/// callers turn it into an `SLMError.damaged` naming the file.
struct ByteReaderError: Error { let message: String }

/// What a decoder of a binary format reads from: bytes in memory (`ByteReader`) or a file read
/// a block at a time (`FileByteReader`), so one decoder serves both. Every read is checked.
protocol ByteSource {
    var offset: Int { get }
    var remaining: Int { get }
    mutating func need(_ n: Int, _ what: String) throws
    /// Hands the next `n` bytes to `body` and moves past them.
    mutating func take<T>(_ n: Int, _ what: String, _ body: (ArraySlice<UInt8>) -> T) throws -> T
}

extension ByteSource {
    var atEnd: Bool { remaining == 0 }

    mutating func u8(_ what: String = "u8") throws -> UInt8 { try take(1, what) { $0[$0.startIndex] } }
    mutating func u16(_ what: String = "u16") throws -> UInt16 { try le(what) }
    mutating func u32(_ what: String = "u32") throws -> UInt32 { try le(what) }
    mutating func u64(_ what: String = "u64") throws -> UInt64 { try le(what) }

    mutating func raw(_ n: Int, _ what: String) throws -> [UInt8] { try take(n, what) { Array($0) } }

    mutating func expect(_ magic: [UInt8], _ what: String) throws {
        guard try raw(magic.count, what) == magic else { throw ByteReaderError(message: "bad magic for \(what)") }
    }

    /// A 16-byte chunk id in canonical byte order, without an intermediate array.
    mutating func chunkID(_ what: String) throws -> ChunkID { try take(16, what) { ChunkID(canonical: $0)! } }

    private mutating func le<T: FixedWidthInteger>(_ what: String) throws -> T {
        try take(MemoryLayout<T>.size, what) { b in
            var v: T = 0
            for i in 0..<MemoryLayout<T>.size { v |= T(b[b.startIndex + i]) << (8 * i) }
            return v
        }
    }
}

struct ByteReader: ByteSource {
    let bytes: [UInt8]
    private(set) var offset: Int

    init(_ bytes: [UInt8], offset: Int = 0) {
        self.bytes = bytes
        self.offset = offset
    }

    var remaining: Int { bytes.count - offset }

    mutating func need(_ n: Int, _ what: String) throws {
        guard n >= 0, remaining >= n else {
            throw ByteReaderError(message: "truncated while reading \(what) at byte \(offset)")
        }
    }

    mutating func take<T>(_ n: Int, _ what: String, _ body: (ArraySlice<UInt8>) -> T) throws -> T {
        try need(n, what)
        defer { offset += n }
        return body(bytes[offset..<offset + n])
    }
}

extension Array where Element == UInt8 {
    // Inlinable so callers in other modules get it specialized: unspecialized, the generic shifts
    // went through witness tables, and opening a multi-pack index (65,536 fan-out words) showed.
    /// The little-endian integer at `offset` (which must lie within the array).
    @inlinable package func readLE<T: FixedWidthInteger>(_: T.Type, at offset: Int) -> T {
        precondition(offset >= 0 && offset + MemoryLayout<T>.size <= count)
        return withUnsafeBytes { T(littleEndian: $0.loadUnaligned(fromByteOffset: offset, as: T.self)) }
    }
}

/// Reads a file front to back through one fixed buffer, hashing every byte it loads when asked
/// to, so a large object is decoded and checked against its id in one pass without being held.
struct FileByteReader: ByteSource {
    let file: FileDescriptor
    let size: Int
    let hasher: SHA256Hasher?
    private var buffer: [UInt8] = []
    private var bufferStart = 0
    private var position = 0
    private let blockSize: Int

    init(_ file: FileDescriptor, hashing: Bool, blockSize: Int = 1 << 20) throws {
        self.file = file
        size = Int(try file.size())
        hasher = hashing ? SHA256Hasher() : nil
        self.blockSize = blockSize
    }

    var offset: Int { bufferStart + position }
    var remaining: Int { size - offset }

    mutating func need(_ n: Int, _ what: String) throws {
        guard n >= 0, remaining >= n else { throw ByteReaderError(message: "truncated while reading \(what) at byte \(offset)") }
        guard buffer.count - position < n else { return }
        // Keep the unread tail and load the next block behind it (never a byte twice, so the
        // hash sees the file exactly once, in order).
        let loadedEnd = bufferStart + buffer.count
        let more = min(max(blockSize, n), size - loadedEnd)
        var next = [UInt8](repeating: 0, count: more)
        try next.withUnsafeMutableBytes { try file.pread(into: $0, count: more, at: UInt64(loadedEnd)) }
        next.withUnsafeBytes { hasher?.update($0) }
        buffer = Array(buffer[position...]) + next
        bufferStart += position
        position = 0
    }

    mutating func take<T>(_ n: Int, _ what: String, _ body: (ArraySlice<UInt8>) -> T) throws -> T {
        try need(n, what)
        defer { position += n }
        return body(buffer[position..<position + n])
    }
}
