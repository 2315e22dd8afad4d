// A chunk's name: XXH3-128 of its uncompressed bytes, in xxHash's canonical (big-endian) byte order.

import CXXHash

/// A chunk's id: the XXH3-128 of its uncompressed bytes.
public struct ChunkID: Hashable, Comparable, Sendable, CustomStringConvertible {
    /// The high 64 bits (written first).
    public let high: UInt64
    /// The low 64 bits.
    public let low: UInt64

    /// The id with these two halves.
    public init(high: UInt64, low: UInt64) {
        self.high = high
        self.low = low
    }

    /// The id of these bytes.
    public init(of buffer: UnsafeRawBufferPointer) {
        let h = XXH3_128bits(buffer.baseAddress, buffer.count)
        self.init(high: h.high64, low: h.low64)
    }

    /// The id of these bytes.
    public init(of bytes: [UInt8]) {
        self = bytes.withUnsafeBytes { ChunkID(of: $0) }
    }

    /// From the 16 canonical bytes (high 64 bits first, each big-endian).
    public init?(canonical b: ArraySlice<UInt8>) {
        guard b.count == 16 else { return nil }
        var hi: UInt64 = 0, lo: UInt64 = 0
        let s = b.startIndex
        for i in 0..<8 { hi = hi << 8 | UInt64(b[s + i]) }
        for i in 8..<16 { lo = lo << 8 | UInt64(b[s + i]) }
        self.init(high: hi, low: lo)
    }

    /// The id spelled by 32 hex digits (canonical byte order), or nil.
    public init?(hex: String) {
        guard hex.utf8.count == 32, let b = Hex.decode(hex) else { return nil }
        self.init(canonical: b[...])
    }

    /// The 16 canonical bytes: high 64 bits first, each big-endian (how packs, indexes and trees
    /// store it).
    public var canonicalBytes: [UInt8] {
        var out = [UInt8](repeating: 0, count: 16)
        for i in 0..<8 {
            out[i] = UInt8(truncatingIfNeeded: high >> (56 - 8 * UInt64(i)))
            out[8 + i] = UInt8(truncatingIfNeeded: low >> (56 - 8 * UInt64(i)))
        }
        return out
    }

    /// The canonical bytes as 32 lowercase hex digits.
    public var hex: String { Hex.encode(canonicalBytes) }
    /// The hex digits.
    public var description: String { hex }

    /// Ids in canonical byte order (the order of pack index entries).
    public static func < (a: ChunkID, b: ChunkID) -> Bool {
        a.high != b.high ? a.high < b.high : a.low < b.low
    }
}
